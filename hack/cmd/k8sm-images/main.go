// Command k8sm-images writes the images of k8sm's control parts — the
// kube-scheduler with the MesosOffers plugin, and the broker carrying the
// executor it serves to agents — as tarballs to load into a node's
// container runtime or push to a registry (`make images`).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/k8sm/k8sm/hack/ociimage"
)

// nonroot is the uid/gid the programs run as: neither needs root (the
// broker only talks to the API server, ZooKeeper and Mesos).
const nonroot = "65532:65532"

func main() {
	bin := flag.String("bin-dir", "_output/bin/images", "the static (CGO_ENABLED=0) kube-scheduler, k8sm-broker and k8sm-executor")
	out := flag.String("out-dir", "_output/images", "where the image tarballs go")
	repo := flag.String("repository", "k8sm", "the images' repository, as manifests/kustomization.yaml names them")
	tag := flag.String("tag", "latest", "the images' tag")
	flag.Parse()
	if err := run(*bin, *out, *repo, *tag); err != nil {
		fmt.Fprintln(os.Stderr, "k8sm-images:", err)
		os.Exit(1)
	}
}

func run(bin, out, repo, tag string) error {
	for _, p := range []string{"kube-scheduler", "k8sm-broker", "k8sm-executor"} {
		if _, err := os.Stat(filepath.Join(bin, p)); err != nil {
			return fmt.Errorf("%s is not built: run `make images`, which builds it static into %s", p, bin)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	// /etc/passwd names the nonroot user; CA certificates let the broker
	// reach an https:// Mesos master.
	passwd := []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
	common := func(s ociimage.Spec) ociimage.Spec {
		s.Dirs = []string{"etc/", "etc/ssl/", "etc/ssl/certs/", "tmp/"}
		s.Data = map[string][]byte{"etc/passwd": passwd, "etc/group": []byte("root:x:0:\nnonroot:x:65532:\n")}
		if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
			s.Files["etc/ssl/certs/ca-certificates.crt"] = "/etc/ssl/certs/ca-certificates.crt"
		}
		s.User = nonroot
		return s
	}
	images := map[string]ociimage.Spec{
		"kube-scheduler.tar": common(ociimage.Spec{
			Ref:        repo + "/kube-scheduler:" + tag,
			Files:      map[string]string{"kube-scheduler": filepath.Join(bin, "kube-scheduler")},
			Entrypoint: []string{"/kube-scheduler"},
		}),
		"k8sm-broker.tar": common(ociimage.Spec{
			Ref: repo + "/k8sm-broker:" + tag,
			// The broker serves /k8sm-executor to agents (--executor-binary).
			Files: map[string]string{
				"k8sm-broker":   filepath.Join(bin, "k8sm-broker"),
				"k8sm-executor": filepath.Join(bin, "k8sm-executor"),
			},
			Entrypoint: []string{"/k8sm-broker"},
		}),
	}
	for file, s := range images {
		p := filepath.Join(out, file)
		if err := ociimage.Write(p, s); err != nil {
			return err
		}
		fmt.Printf("%s\t%s\n", s.Ref, p)
	}
	return nil
}
