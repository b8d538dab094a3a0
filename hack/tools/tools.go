//go:build tools

// Package tools records the upstream programs that the Makefile builds from
// the pinned module graph (kube-apiserver, kube-controller-manager, kubectl,
// and the code generators), so that `go mod tidy` keeps their dependencies.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"

	// protoc plugins for proto/broker/v1 (hack/update-codegen.sh).
	_ "google.golang.org/grpc/cmd/protoc-gen-go-grpc"
	_ "google.golang.org/protobuf/cmd/protoc-gen-go"
)
