# braid: every target installs what it lacks (hack/deps.sh), so a fresh
# Debian machine needs nothing done by hand. Run as root.

GO       ?= go
BIN      := $(CURDIR)/bin
TOOLS    := $(BIN)/tools
PLUGINS  := veth-ebpf vxlan-tunnel native-route sock-lb dsr
CNI_BIN_DIR ?= /opt/cni/bin
# Reference plugins the benchmarks and chaining tests compare against.
CNI_PLUGINS_VERSION := v1.9.1
CNITOOL_VERSION     := v1.3.1
# The datapath plugin interface's generated code (core/datapathrpc).
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
# The linter beside vet and gofmt (v0.8.2 is the 2026.2 release: go1.26).
STATICCHECK_VERSION := v0.8.2

export PATH := $(TOOLS):$(PATH)

.PHONY: all deps k8s-bins lint-tools proto-tools proto generate check-generated build install test unit integration fuzz fuzz-short bench bench-agent demo lint clean

all: build

deps:
	@hack/deps.sh
	@test -x $(TOOLS)/cnitool || GOBIN=$(TOOLS) $(GO) install github.com/containernetworking/cni/cnitool@$(CNITOOL_VERSION)
	@test -x $(TOOLS)/cni/ptp || GOBIN=$(TOOLS)/cni $(GO) install \
		github.com/containernetworking/plugins/plugins/main/ptp@$(CNI_PLUGINS_VERSION) \
		github.com/containernetworking/plugins/plugins/main/bridge@$(CNI_PLUGINS_VERSION) \
		github.com/containernetworking/plugins/plugins/ipam/host-local@$(CNI_PLUGINS_VERSION)

# The real Kubernetes binaries integration/kubernetes runs (hack/k8s-build.sh
# builds them from hack/k8s at one pinned release, once: a fresh machine pays
# about 7 minutes, later runs find them cached). Tests find them through
# BRAID_K8S_BIN; under CI=true a missing one fails the suite.
export BRAID_CACHE ?= /var/cache/braid
K8S_RELEASE := $(shell awk '$$1=="require" && $$2=="k8s.io/kubernetes" {print $$3}' hack/k8s/go.mod)
export BRAID_K8S_BIN ?= $(BRAID_CACHE)/k8s/$(K8S_RELEASE)/bin
K8S_TEST_BINS ?= kube-apiserver

k8s-bins:
	@hack/k8s-build.sh $(K8S_TEST_BINS) >/dev/null

generate: deps proto
	$(GO) generate ./plugins/...

proto-tools:
	@test -x $(TOOLS)/protoc-gen-go || GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@test -x $(TOOLS)/protoc-gen-go-grpc || GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# core/datapathrpc from its .proto; the output is committed.
proto: deps proto-tools
	cd core/datapathrpc && protoc --go_out=paths=source_relative:. --go-grpc_out=paths=source_relative:. datapath.proto

# Fails when a committed bpf2go output differs from what bpf/ compiles to.
check-generated: deps proto-tools
	@hack/check-generated.sh

# Every binary reports this in Info and `braid_plugin_info`.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/braid-cni/braid/core/plugin.stampedVersion=$(VERSION)

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/braid ./cmd/braid
	@for p in $(PLUGINS); do $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/$$p ./plugins/$$p || exit 1; done

install: build
	install -d $(CNI_BIN_DIR)
	@for p in $(PLUGINS); do install -m 0755 $(BIN)/$$p $(CNI_BIN_DIR)/$$p; done
	install -m 0755 $(BIN)/braid /usr/local/bin/braid

# Unit and integration tests; the integration suites need root.
test: deps check-generated build k8s-bins
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	@$(MAKE) --no-print-directory fuzz-short

# Every fuzz target runs its seed corpus in `go test`; fuzz-short (in make
# test) then fuzzes each of them (hack/fuzz.sh finds them all) for
# FUZZ_SHORT_TIME from its seeds, under two minutes in all on 2 cores
# (RELIABILITY.md); make fuzz fuzzes each for FUZZTIME.
FUZZTIME ?= 1m
FUZZ_SHORT_TIME ?= 2s
fuzz-short:
	FUZZTIME=$(FUZZ_SHORT_TIME) FUZZ_FRESH=1 hack/fuzz.sh

fuzz: deps
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

# Each benchmark runs braid and its baselines side by side and writes its
# own section of BENCHMARKS.md (BENCH_SUITES picks some).
BENCH_SUITES ?= samenode crossnode services agent kubeproxy
bench: deps build
	@hack/k8s-build.sh kube-apiserver kube-proxy >/dev/null  # bench/kubeproxy's control plane and baseline
	@for s in $(BENCH_SUITES); do $(GO) run ./bench/$$s -out BENCHMARKS.md || exit 1; done

# braid agent with etcd alone: service add and node join to traffic, agent
# cost at 100 simulated nodes and 10,000 services.
bench-agent: deps build
	$(GO) run ./bench/agent -out BENCHMARKS.md

demo: deps build
	@hack/demo.sh

lint-tools:
	@test -x $(TOOLS)/staticcheck || GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: lint-tools
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(TOOLS)/staticcheck ./...

clean:
	rm -rf $(BIN)
