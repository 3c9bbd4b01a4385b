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
# The module the e2e suite evaluates.
E2E_POLICY ?= $(CURDIR)/policy.wasm

POLICY_SOURCES := $(wildcard src/*.rs) Cargo.toml Cargo.lock
RUNNER_SOURCES := $(wildcard runner/src/*.rs) runner/Cargo.toml Cargo.lock

.PHONY: all setup run test fmt lint unit-tests e2e-tests bench clean

all: policy.wasm

setup:
	@scripts/setup.sh

policy.wasm: $(POLICY_SOURCES)
	$(CARGO) build --locked --target wasm32-wasip1 --release
	cp target/wasm32-wasip1/release/cache_buster.wasm policy.wasm

$(KWRUN): $(RUNNER_SOURCES)
	$(CARGO) build --locked --profile tools -p kwrun

kwrun: $(KWRUN)

run: setup policy.wasm $(KWRUN)
	@scripts/run-sample.sh $(KWRUN) policy.wasm

test: setup fmt lint unit-tests e2e-tests

fmt:
	$(CARGO) fmt --all -- --check

# Lints, unit tests and the runner share the `tools` profile, so the large
# dependencies (wasmtime) are compiled once.
lint:
	$(CARGO) clippy --locked --workspace --all-targets --profile tools -- -D warnings

unit-tests:
	$(CARGO) test --locked --workspace --profile tools

e2e-tests: $(E2E_POLICY) $(if $(filter $(KWRUN),$(KWCTL)),$(KWRUN))
	KWCTL="$(KWCTL)" POLICY="$(E2E_POLICY)" bats e2e-tests

clean:
	$(CARGO) clean
	rm -f policy.wasm annotated-policy.wasm
