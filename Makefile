# cache-buster policy. The two commands of the README:
#   make run    build the policy and the runner, evaluate a sample request
#   make test   every suite, then a summary of what ran and what was skipped
# Target names follow Kubewarden's policy Makefiles. Every step of the GitHub
# workflows is one of these targets.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
# The real programs that no registry has (kwctl, policy-server, the control
# plane) come from their variables: KWCTL, POLICY_SERVER, KUBEBUILDER_ASSETS,
# KUBE_CONTROLLER_MANAGER. After `make tools`, target/tools.mk sets those
# that are not set already. REQUIRE_REAL_TOOLS=1 makes a missing one a
# failure instead of a skip (the GitHub workflow sets it).
-include target/tools.mk
KWRUN := $(CURDIR)/target/tools/kwrun
# The binary the e2e suite evaluates the policy with: kwrun by default;
# e2e-tests-kwctl runs the same suite with the real kwctl.
E2E_KWCTL ?= $(KWRUN)
E2E_SUITE ?= e2e-tests
# The module the e2e suite evaluates: the annotated one, as released.
E2E_POLICY ?= annotated-policy.wasm
# Annotation is kwctl's job where the real kwctl is found, kwrun's elsewhere.
REAL_KWCTL := $(shell scripts/toolbox.sh kwctl 2>/dev/null)
ANNOTATOR = $(or $(REAL_KWCTL),$(KWRUN))
LAUNCHER := $(CURDIR)/target/tools/cache-buster
# The project's one image, as an OCI layout (make image, scripts/image.sh).
IMAGE_LAYOUT := $(CURDIR)/target/image/oci
# The Python programs of scripts/requirements.txt, in .venv.
VENV_STAMP := .venv/.requirements.sha256
SUITE := scripts/suite.sh

POLICY_SOURCES := $(wildcard src/*.rs src/*/*.rs purge/src/*.rs purge/src/*/*.rs) Cargo.toml purge/Cargo.toml Cargo.lock
RUNNER_SOURCES := $(wildcard runner/src/*.rs) runner/Cargo.toml Cargo.lock

.PHONY: FORCE bench-cluster bench-content bench-official bench-image bench-instructions bench-purge bench-sites all setup setup-tests tools tools-pin run test fmt lint lint-workflows unit-tests \
	e2e-tests e2e-tests-kwctl wasm-tests manifest-tests cluster-tests cluster-host launcher image image-test-hooks image-tests bench fuzz clean \
	release-check release-policy release-image release-image-merge release-github \
	release-verify-policy release-verify-image

all: policy.wasm

setup:
	@scripts/setup.sh

setup-tests:
	@scripts/setup.sh --tests

$(VENV_STAMP): scripts/requirements.txt
	@scripts/setup.sh --tests

# wasm-opt -O3 (binaryen) after rustc and LLVM: 12% fewer bytes and 3-5%
# fewer instructions per evaluation (README, Performance). The features are
# those rustc enables for wasm32-wasip1.
WASM_OPT_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals
policy.wasm: $(POLICY_SOURCES)
	$(CARGO) build --locked --target wasm32-wasip1 --release
	wasm-opt -O3 $(WASM_OPT_FEATURES) target/wasm32-wasip1/release/cache_buster.wasm -o policy.wasm

annotated-policy.wasm: policy.wasm policy-metadata.yml README.md $(KWRUN)
	$(ANNOTATOR) annotate --metadata-path policy-metadata.yml --usage-path README.md --output-path $@ policy.wasm

$(KWRUN): $(RUNNER_SOURCES)
	$(CARGO) build --locked --workspace --profile tools --bin kwrun

kwrun: $(KWRUN)

run: setup policy.wasm $(KWRUN)
	@scripts/run-sample.sh $(KWRUN) policy.wasm

# Every suite, even after one fails, then the summary (scripts/summary.sh).
SUITES := fmt lint unit-tests image-tests e2e-tests e2e-tests-kwctl wasm-tests manifest-tests cluster-tests
# The names they record under (scripts/suite.sh; lint records four): one
# that records nothing never ran, because a step it needs (a build) failed.
SUITE_RECORDS := fmt workflows clippy clippy-release clippy-purge-table unused-deps unit-tests image-tests e2e-tests \
  e2e-tests-kwctl wasm-tests manifest-tests cluster-tests
test: setup-tests
	@scripts/summary.sh --reset
	@$(MAKE) --no-print-directory --keep-going $(SUITES) || { scripts/summary.sh $(SUITE_RECORDS); exit 1; }
	@scripts/summary.sh $(SUITE_RECORDS)

# Downloads kwctl, policy-server and the control plane from their official
# releases, verified, into target/tools-cache (scripts/tools.sh); the
# versions are pinned in scripts/tools.versions. KUBERNETES_VERSION chooses
# the control plane.
tools:
	@scripts/tools.sh

# The same, and print the sha256 pins of kwctl for scripts/tools.versions.
tools-pin:
	@scripts/tools.sh --pin

fmt:
	@$(SUITE) fmt $(CARGO) fmt --all -- --check

# Lints, unit tests, the runner, the launcher and the cluster tests share the
# `tools` profile and the workspace's features (`--workspace` everywhere), so
# the large dependencies (wasmtime, kube) are compiled once.
lint: lint-workflows
	@$(SUITE) clippy $(CARGO) clippy --locked --workspace --all-targets --profile tools --features cache-buster-cli/test-hooks -- -D warnings
	@$(SUITE) clippy-release $(CARGO) clippy --locked -p cache-buster-cli --profile tools -- -D warnings
	@$(SUITE) clippy-purge-table $(CARGO) clippy --locked -p cache-buster-purge --profile tools -- -D warnings
	@$(SUITE) unused-deps cargo machete --skip-target-dir

# The GitHub workflows: GitHub's workflow schema, and zizmor's audit with no
# finding of medium severity or worse.
lint-workflows: $(VENV_STAMP)
	@$(SUITE) workflows bash -c '.venv/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml \
	  && .venv/bin/zizmor --offline --min-severity medium .github/workflows'

unit-tests:
	@SUITE_NOTE="the ignored tests need the built modules: wasm-tests runs them" \
	  $(SUITE) unit-tests $(CARGO) test --locked --workspace --profile tools --features cache-buster-cli/test-hooks

e2e-tests: $(E2E_POLICY) $(if $(filter $(KWRUN),$(E2E_KWCTL)),$(KWRUN))
	@KWCTL="$(E2E_KWCTL)" POLICY="$(abspath $(E2E_POLICY))" $(SUITE) $(E2E_SUITE) bats e2e-tests

# The same suite with the real kwctl (KWCTL, else PATH), or a skip that says why.
e2e-tests-kwctl: $(E2E_POLICY)
	@kwctl="$$(scripts/toolbox.sh kwctl 2>target/kwctl-missing.txt)"; \
	if [ -n "$$kwctl" ]; then \
	  $(MAKE) --no-print-directory e2e-tests E2E_KWCTL="$$kwctl" E2E_SUITE=e2e-tests-kwctl; \
	else \
	  $(SUITE) --skipped e2e-tests-kwctl "$$(sed 's/^skipped: //' target/kwctl-missing.txt)"; \
	fi

# Cargo decides what is stale (every module of the launcher, the purge and
# the policy it links): make always asks it, and it rebuilds only what changed.
$(LAUNCHER): FORCE
	$(CARGO) build --locked --workspace --profile tools --bin cache-buster

FORCE:

launcher: $(LAUNCHER)

# The image users run (cli/Containerfile): the program static (musl)
# and stripped, FROM scratch, no base image to pull; an OCI layout under
# target/image/oci. Prints its compressed size.
image: FORCE
	@scripts/image.sh

# The same image with the program's test hooks (the CDN double's CA and
# address), for the suites that purge against the doubles: never released.
TEST_HOOKS_LAYOUT := $(CURDIR)/target/image-test-hooks/oci
image-test-hooks: FORCE
	@IMAGE_FEATURES=test-hooks IMAGE_OUT=target/image-test-hooks scripts/image.sh

# The image's compressed size and its program's start (scripts/bench-image.sh).
bench-image: image
	@scripts/bench-image.sh

# The image unpacked and run as a runtime would (e2e-cluster/tests/image.rs).
image-tests: image image-test-hooks
	@IMAGE_LAYOUT="$(IMAGE_LAYOUT)" TEST_HOOKS_LAYOUT="$(TEST_HOOKS_LAYOUT)" $(SUITE) image-tests \
	  $(CARGO) test --locked --profile tools -p cache-buster-e2e-cluster --test image

# The product on a real control plane (e2e-cluster/): etcd, kube-apiserver,
# kube-controller-manager, an OCI registry, kwctl push, policy-server and the
# launcher. The programs come from their variables (e2e-cluster/src/tools.rs);
# a missing one skips the scenarios with a line that names it.
cluster-tests: annotated-policy.wasm image-test-hooks
	@IMAGE_LAYOUT="$(TEST_HOOKS_LAYOUT)" POLICY="$(abspath annotated-policy.wasm)" \
	  $(SUITE) cluster-tests $(CARGO) test --locked --workspace --profile tools --test scenarios

# The chain measured on the test cluster (docs/development.md, "The chain, measured"):
# ReplicaSet available → purge, apply → Job, the launcher with 1,000 sites.
# Prints figures, asserts nothing. ROLLOUTS=10 SITES=1000 by default.
bench-cluster: annotated-policy.wasm image-test-hooks
	IMAGE_LAYOUT="$(TEST_HOOKS_LAYOUT)" POLICY="$(abspath annotated-policy.wasm)" \
	  $(CARGO) bench --locked --workspace --profile tools --bench chain

# Tests of the built modules themselves (annotation, limits), through kwrun.
wasm-tests: policy.wasm annotated-policy.wasm
	@$(SUITE) wasm-tests $(CARGO) test --locked --workspace --profile tools --test real_policy -- --include-ignored

# Every manifest, and deploy/ and the example site as kubectl kustomize renders
# them, against the official Kubernetes schemas (kubernetes-validate).
manifest-tests: policy.wasm $(KWRUN) $(VENV_STAMP)
	@$(SUITE) manifest-tests scripts/validate-manifests.sh $(KWRUN) policy.wasm

# Prepares a non-root machine for the cluster tests (the GitHub runner).
cluster-host:
	@scripts/cluster-host.sh

# The release workflow's steps (scripts/release.sh; VERSION, POLICY_REPOSITORY
# and IMAGE say where to): check the tag, push and sign the module with its
# SBOM, build and sign the image per platform, merge it, the GitHub release.
release-check:
	@scripts/release.sh check

release-policy: annotated-policy.wasm
	@scripts/release.sh policy

release-image:
	@scripts/release.sh image $(PLATFORM)

release-image-merge:
	@scripts/release.sh image-merge

release-github:
	@scripts/release.sh github

release-verify-policy:
	@scripts/release.sh verify-policy

release-verify-image:
	@scripts/release.sh verify-image

# Speed of the decision, native (criterion) and in Wasm (kwrun bench).
bench: policy.wasm $(KWRUN)
	scripts/bench.sh $(KWRUN) policy.wasm

# The real kwctl's bench, side by side with the official pod-privileged and
# user-group-psp policies on the same requests; prints the ratios
# (scripts/bench-official.sh: KWCTL, POD_PRIVILEGED_POLICY, USER_GROUP_PSP_POLICY).
bench-official: policy.wasm $(KWRUN)
	@scripts/bench-official.sh policy.wasm $(KWRUN)

# Instructions per evaluation (callgrind) and the stamped Job's size.
bench-instructions:
	scripts/instructions.sh

# The purge program's peak memory and size.
bench-purge: $(LAUNCHER)
	scripts/purge-memory.sh $(LAUNCHER)

# The content purge's diff on a 20,000-file site over a 40 MB base (SPEC §9):
# the bytes it reads, its time and peak heap (purge/benches/content_diff.rs).
bench-content:
	$(CARGO) bench --locked --profile tools -p cache-buster-purge --features client --bench content_diff

# Bytes the launcher's caches retain per site, at SITES=1000,10000
# (cli/benches/site_memory.rs, a counting allocator).
bench-sites:
	$(CARGO) bench --locked --profile tools -p cache-buster-cli --bench site_memory

# Fuzzing (nightly toolchain, cargo-fuzz): FUZZ_SECONDS in all, default 1800.
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	rustup toolchain install nightly --profile minimal >/dev/null
	fuzz/run.sh

clean:
	$(CARGO) clean
	rm -f policy.wasm annotated-policy.wasm
