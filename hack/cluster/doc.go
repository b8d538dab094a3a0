// Package cluster runs k8sm's local, real control plane: etcd, kube-apiserver,
// kube-controller-manager, ZooKeeper and containerd, each as its own process
// on loopback, under one state directory.
//
// It is a library in the way etcd's embed package is: `make up` drives it
// through hack/cmd/local-cluster, and integration tests drive the very same
// code, so what the tests prove is what a user starts. Processes are detached
// and recorded in pid files so that a later `down` (or a second `up` after a
// crash) finds them again.
package cluster
