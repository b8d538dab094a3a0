# k8sm: Kubernetes on Apache Mesos.
#   make up      bring up the local cluster (README.md says what it runs)
#   make test    every test: unit, integration, end to end
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

OUT      := _output
BIN      := $(OUT)/bin
# One set of flags for every build and test, so that binaries and test
# binaries share Go's build cache (-trimpath is part of a package's cache key).
export GOFLAGS := -buildvcs=false -trimpath
export PATH := /usr/local/go/bin:$(PATH)

# Upstream programs built from the pinned k8s.io/kubernetes module.
UPSTREAM := k8s.io/kubernetes/cmd/kube-apiserver \
            k8s.io/kubernetes/cmd/kube-controller-manager \
            k8s.io/kubernetes/cmd/kubectl
# Our programs: every main package under a cmd/ directory.
OURS := $(shell go list -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' ./... 2>/dev/null | grep -v '/hack/images/' | grep '/cmd/')
# The static programs that the local container images are made of.
IMAGES := ./hack/images/pause ./hack/images/webapp
# CoreDNS, the cluster DNS, is a module of its own (hack/images/coredns) so
# that its dependencies never move the main module's.
COREDNS := hack/images/coredns

# Packages whose tests run under the race detector. Packages that link the
# kubelet or the scheduler are left out: their race build alone would cost
# CI half an hour on two cores.
RACE_DIRS := $(wildcard ./broker ./pkg ./proto ./hack/mesos-sim)
RACE_PKGS := $(addsuffix /...,$(RACE_DIRS))
UNIT_PKGS := $(shell go list ./... 2>/dev/null | grep -v -e /test/ $(foreach d,$(RACE_DIRS),-e $(patsubst ./%,github.com/k8sm/k8sm/%,$(d))))
TEST_FLAGS ?= -count=1 -timeout=30m

.PHONY: build deps verify-deps test test-unit test-integration e2e chaos bench bench-big up down generate verify-generate lint clean images

# Stamp the release the binaries are built from, as upstream's build does:
# without it they report v0.0.0-master+$Format:%H$, which `kubectl version`
# cannot parse and which makes kubelets' Nodes show no version.
K8S_VERSION := $(shell go list -m -f '{{.Version}}' k8s.io/kubernetes 2>/dev/null)
K8S_MINOR   := $(word 2,$(subst ., ,$(K8S_VERSION)))
VERSION_LDFLAGS := $(foreach pkg,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
  -X $(pkg).gitVersion=$(K8S_VERSION) -X $(pkg).gitMajor=1 -X $(pkg).gitMinor=$(K8S_MINOR) -X $(pkg).gitTreeState=clean)

build:
	@mkdir -p $(BIN)/images
	go build -ldflags '$(VERSION_LDFLAGS)' -o $(BIN)/ $(UPSTREAM) $(OURS)
	CGO_ENABLED=0 go build -ldflags=-s -o $(BIN)/images/ $(IMAGES)
	CGO_ENABLED=0 go -C $(COREDNS) build -ldflags=-s -o $(abspath $(BIN))/images/ .

# Debian packages: install-deps installs what hack/deps/deps.list names,
# verify-deps fails naming the package of anything still missing.
deps:
	@hack/install-deps.sh
	@hack/verify-deps.sh

verify-deps:
	@hack/verify-deps.sh

test: deps build lint test-unit test-integration e2e

test-unit: deps
	$(if $(RACE_DIRS),go test -race $(TEST_FLAGS) $(RACE_PKGS))
	go test $(TEST_FLAGS) $(UNIT_PKGS)

# Integration tests start the real components (etcd, kube-apiserver,
# kube-controller-manager, ZooKeeper, containerd) through hack/cluster.
test-integration: deps build
	K8SM_BIN_DIR=$(abspath $(BIN)) go test -tags integration -p 1 $(TEST_FLAGS) -v ./test/integration/...

# End-to-end tests drive the local cluster as a user does (make up/down).
e2e: deps build
	K8SM_BIN_DIR=$(abspath $(BIN)) go test -tags e2e -p 1 $(TEST_FLAGS) -v ./test/e2e/...

# The long chaos suite (docs/reliability.md): every fault CHAOS_ROUNDS times
# (default 20; about 15 s per injection on 2 cores) on a cluster of its own,
# printing the table; make e2e runs its short form. CHAOS_FAULTS=a,b picks
# faults, CHAOS_SEED replays an order.
CHAOS_ROUNDS ?= 20
chaos: deps build
	K8SM_CHAOS=1 K8SM_CHAOS_ROUNDS=$(CHAOS_ROUNDS) K8SM_CHAOS_FAULTS=$(CHAOS_FAULTS) K8SM_CHAOS_SEED=$(CHAOS_SEED) \
	    K8SM_CHAOS_TABLE=$(abspath $(OUT))/chaos-table.md K8SM_BIN_DIR=$(abspath $(BIN)) \
	    go test -tags e2e -p 1 -count=1 -timeout=0 -v -run '^TestChaos$$' ./test/e2e/

# Benchmarks (docs/benchmarks.md): hack/cmd/k8sm-bench runs k8sm and the stock
# scheduler side by side on a real control plane with mesos-sim's hollow
# agents, prints a table and writes $(OUT)/bench/results.json (under 20 min on
# 2 cores). BENCH_GO=1 adds the broker's Go micro-benchmarks (about 2 min more).
# The big sizes (scheduler_perf's reference is 5,000 nodes and 10,000 pods)
# are `make bench-big`: an hour or more on 2 cores, never part of make test.
bench: deps
	go build -o $(BIN)/ k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
	    ./hack/cmd/etcd ./plugin/cmd/kube-scheduler ./hack/cmd/k8sm-bench
	$(BIN)/k8sm-bench --bin-dir=$(abspath $(BIN)) --out=$(abspath $(OUT))/bench $(BENCH_FLAGS)
	$(if $(BENCH_GO),go test -run '^$$' -bench . -benchmem ./broker/offers ./broker/grpcserver ./broker/framework)

bench-big:
	$(MAKE) bench BENCH_FLAGS="--agents=5000,10000 --pods=10000 --paced-pods=1000 --variations=false --nodes-timeout=10m --phase-timeout=15m $(BENCH_FLAGS)"

# Images of the control parts for a real cluster (docs/deploy.md): the
# k8sm kube-scheduler, and the broker carrying the executor it serves to the
# agents, as tarballs in _output/images (ctr images import, docker load, or
# crane push). Static builds: the images hold nothing but the programs.
images: deps
	CGO_ENABLED=0 go build -ldflags '-s $(VERSION_LDFLAGS)' -o $(BIN)/images/ ./plugin/cmd/kube-scheduler ./broker/cmd/k8sm-broker ./executor/cmd/k8sm-executor
	go run ./hack/cmd/k8sm-images --bin-dir=$(BIN)/images --out-dir=$(OUT)/images

up: deps build
	$(BIN)/local-cluster up

down:
	@if [ -x $(BIN)/local-cluster ]; then $(BIN)/local-cluster down; else go run ./hack/cmd/local-cluster down; fi

generate:
	hack/update-codegen.sh

verify-generate:
	hack/verify-codegen.sh

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	go vet ./...
	@if [ -x hack/verify-codegen.sh ]; then hack/verify-codegen.sh; fi

clean:
	rm -rf $(OUT)/bin
