# The one way in: `make run` (the service locally), `make test` (every test), `make lint`.
SHELL := /bin/bash
VENV := .venv
EMULATOR := $(VENV)/bin/webhooks-emulator
SAM_VENV := .venv-sam
FUZZ_VENV := .venv-fuzz
export SAM_CLI_TELEMETRY := 0

.PHONY: run test bench smoke load fuzz lint fmt emulator browser build template-lint sam-build clean

## The whole service on 127.0.0.1:$${PORT:-3000}, with the local AWS emulator. Ctrl-C stops it.
run: emulator
	cargo build -p tools --bin webhooks-local
	./target/debug/webhooks-local

## Every test: the docs' links (scripts/check-docs), no import cycle in the library
## (scripts/check-imports), the template as the SAM transform
## renders it (scripts/check-template), unit,
## handler and end-to-end (against the emulator on a free port, every binary of functions/
## invoked through a local Lambda Runtime API), the portal's in headless Chromium
## (installed from Debian's packages when missing). The fairness tests, which time one
## tenant's deliveries while another floods, run last, one at a time, on an emulator of
## their own, so that they measure the deliver function's scheduling rather than the
## emulator's throughput (one Python process) with other tests on two cores.
test: emulator browser $(SAM_VENV)/bin/sam
	scripts/check-docs
	scripts/check-imports
	$(SAM_VENV)/bin/python scripts/check-template
	cargo build --workspace --bins --tests
	rm -f target/e2e-service.log target/e2e-secrets.txt
	./scripts/with-emulator cargo test --workspace -- --test-threads 8 --skip fairness::
	./scripts/with-emulator cargo test -p e2e --test e2e -- --test-threads 1 fairness::
	./scripts/check-logs

## The benchmarks of SPEC §8 on release builds: prints a table, writes target/bench.json.
bench: emulator
	cargo build --release --workspace --bins
	./target/release/webhooks-bench

## The whole path checked from outside: against a deployed stack with SMOKE_API_URL,
## SMOKE_API_KEY and SMOKE_RECEIVER_URL (deploy with SmokeReceiver=true), else against a
## local stack it starts.
smoke: emulator
	cargo build -p tools --bin webhooks-smoke
	./target/debug/webhooks-smoke

## A bounded load run on loopback: 50 clients, 5,000 mixed requests; no 5xx, no lost delivery.
load: emulator
	cargo build -p tools --bin webhooks-local -p bench --bin webhooks-bench
	./target/debug/webhooks-bench load

## Schemathesis against openapi.yaml and the live local stack (bounded; see scripts/fuzz).
fuzz: emulator $(FUZZ_VENV)/bin/schemathesis
	cargo build -p tools --bin webhooks-local
	./scripts/fuzz

$(FUZZ_VENV)/bin/schemathesis: scripts/fuzz-requirements.txt
	python3 -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/pip install --quiet --disable-pip-version-check -r scripts/fuzz-requirements.txt
	touch $@

## Formatting, clippy with warnings as errors, and the template's linters.
lint: template-lint
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

## Debian's chromium and chromium-driver, for the portal's browser tests.
browser:
	./scripts/install-browser

## The local AWS emulator (moto's server mode) in the ignored .venv/.
emulator: $(EMULATOR)

$(EMULATOR): scripts/emulator-requirements.txt scripts/emulator.py
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r scripts/emulator-requirements.txt
	{ echo '#!$(abspath $(VENV))/bin/python'; cat scripts/emulator.py; } > $@.tmp
	chmod +x $@.tmp
	mv $@.tmp $@

## cfn-lint and `sam validate --lint`, each from PyPI in its own virtualenv.
template-lint: $(SAM_VENV)/bin/sam
	$(SAM_VENV)/bin/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --lint --region us-east-1

$(SAM_VENV)/bin/sam: scripts/sam-requirements.txt
	python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check -r scripts/sam-requirements.txt
	touch $@

## The deployable artifacts: cargo-lambda and zig from PyPI, plus the Rust target for arm64.
sam-build: $(SAM_VENV)/bin/sam $(SAM_VENV)/bin/cargo-lambda
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(SAM_VENV)/bin/sam build

$(SAM_VENV)/bin/cargo-lambda: $(SAM_VENV)/bin/sam scripts/build-requirements.txt
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check -r scripts/build-requirements.txt
	touch $@

clean:
	cargo clean
	rm -rf $(VENV) $(SAM_VENV) $(FUZZ_VENV) .aws-sam
