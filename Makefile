# cache-buster policy. The two commands of the README:
#   make run    build the policy and the runner, evaluate a sample request
#   make test   formatting, lints, unit tests and the e2e suite
# Target names follow Kubewarden's policy Makefiles.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
# The binary the e2e suite evaluates the policy with: kwctl, or kwrun.
KWRUN := $(CURDIR)/target/tools/kwrun
KWCTL ?= $(KWRUN)
# The module the e2e suite evaluates: the annotated one, as released.
E2E_POLICY ?= annotated-policy.wasm
# Annotation is kwctl's job where kwctl is installed (on PATH, or unpacked
# from the reference toolbox by `make toolbox`), kwrun's elsewhere.
KWCTL_ON_PATH := $(shell command -v kwctl 2>/dev/null)
ANNOTATOR = $(or $(KWCTL_ON_PATH),$(wildcard $(CURDIR)/target/toolbox/kwctl),$(KWRUN))
LAUNCHER := $(CURDIR)/target/tools/cache-buster-launcher

POLICY_SOURCES := $(wildcard src/*.rs) Cargo.toml Cargo.lock
RUNNER_SOURCES := $(wildcard runner/src/*.rs) runner/Cargo.toml Cargo.lock

.PHONY: bench-cluster all setup toolbox run test fmt lint unit-tests e2e-tests e2e-tests-kwctl wasm-tests \
	manifest-tests cluster-tests launcher bench fuzz clean

all: policy.wasm

setup:
	@scripts/setup.sh

policy.wasm: $(POLICY_SOURCES)
	$(CARGO) build --locked --target wasm32-wasip1 --release
	cp target/wasm32-wasip1/release/cache_buster.wasm policy.wasm

annotated-policy.wasm: policy.wasm policy-metadata.yml README.md $(KWRUN)
	$(ANNOTATOR) annotate --metadata-path policy-metadata.yml --usage-path README.md --output-path $@ policy.wasm

$(KWRUN): $(RUNNER_SOURCES)
	$(CARGO) build --locked --workspace --profile tools --bin kwrun

kwrun: $(KWRUN)

run: setup policy.wasm $(KWRUN)
	@scripts/run-sample.sh $(KWRUN) policy.wasm

test: setup toolbox fmt lint unit-tests e2e-tests e2e-tests-kwctl wasm-tests manifest-tests cluster-tests

# The real programs (kwctl, policy-server, kube-apiserver, …) from their
# variables or the reference toolbox; see scripts/toolbox.sh.
toolbox:
	@scripts/toolbox.sh kwctl >/dev/null

fmt:
	$(CARGO) fmt --all -- --check

# Lints, unit tests, the runner, the launcher and the cluster tests share the
# `tools` profile and the workspace's features (`--workspace` everywhere), so
# the large dependencies (wasmtime, kube) are compiled once.
lint:
	$(CARGO) clippy --locked --workspace --all-targets --profile tools -- -D warnings

unit-tests:
	$(CARGO) test --locked --workspace --profile tools

e2e-tests: $(E2E_POLICY) $(if $(filter $(KWRUN),$(KWCTL)),$(KWRUN))
	KWCTL="$(KWCTL)" POLICY="$(abspath $(E2E_POLICY))" bats e2e-tests

# The same suite with the real kwctl (KWCTL, else the toolbox's).
e2e-tests-kwctl: $(E2E_POLICY)
	kwctl="$$(scripts/toolbox.sh kwctl)"; \
	if [ -n "$$kwctl" ]; then $(MAKE) --no-print-directory e2e-tests KWCTL="$$kwctl"; fi

$(LAUNCHER): $(wildcard launcher/src/*.rs) launcher/Cargo.toml $(POLICY_SOURCES)
	$(CARGO) build --locked --workspace --profile tools --bin cache-buster-launcher

launcher: $(LAUNCHER)

# The product on a real control plane (e2e-cluster/): etcd, kube-apiserver,
# kube-controller-manager, an OCI registry, kwctl push, policy-server and the
# launcher. The programs come from scripts/toolbox.sh's variables.
cluster-tests: annotated-policy.wasm $(LAUNCHER)
	LAUNCHER="$(LAUNCHER)" POLICY="$(abspath annotated-policy.wasm)" \
	  $(CARGO) test --locked --workspace --profile tools --test scenarios

# The chain measured on the test cluster (docs/development.md, "The chain, measured"):
# ReplicaSet available → purge, apply → Job, the launcher with 1,000 sites.
# Prints figures, asserts nothing. ROLLOUTS=10 SITES=1000 by default.
bench-cluster: annotated-policy.wasm $(LAUNCHER)
	LAUNCHER="$(LAUNCHER)" POLICY="$(abspath annotated-policy.wasm)" \
	  $(CARGO) bench --locked --workspace --profile tools --bench chain

# Tests of the built modules themselves (annotation, limits), through kwrun.
wasm-tests: policy.wasm annotated-policy.wasm
	$(CARGO) test --locked --workspace --profile tools --test real_policy -- --include-ignored

# Every manifest against the official Kubernetes schemas (kubernetes-validate).
manifest-tests: policy.wasm $(KWRUN)
	scripts/validate-manifests.sh $(KWRUN) policy.wasm

# Speed of the decision, native (criterion) and in Wasm (kwrun bench).
bench: policy.wasm $(KWRUN)
	scripts/bench.sh $(KWRUN) policy.wasm

# Fuzzing (nightly toolchain, cargo-fuzz): FUZZ_SECONDS in all, default 1800.
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	rustup toolchain install nightly --profile minimal >/dev/null
	fuzz/run.sh

clean:
	$(CARGO) clean
	rm -f policy.wasm annotated-policy.wasm
