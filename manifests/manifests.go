// Package manifests embeds the shipped manifests, so that programs
// (hack/cluster, behind `make up`) apply exactly the files of this
// directory, wherever they run from.
package manifests

import "embed"

// FS holds *.yaml and examples/*.yaml.
//
//go:embed *.yaml examples/*.yaml
var FS embed.FS
