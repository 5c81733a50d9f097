# Two commands (README Quick start): `make demo` and `make test`. Both install what is missing
# first (scripts/bootstrap.sh is idempotent). Builds go to a target directory outside the
# clone so repeated runs and fresh clones on the same machine reuse compiled dependencies.

SHELL := /bin/bash
CARGO ?= cargo
JOBS ?= 2
export CARGO_TARGET_DIR ?= $(HOME)/.cache/idv/target
export IDV_S3S_FS ?= $(HOME)/.cache/idv/tools/bin/s3s-fs
DATA_DIR ?= ./data

.PHONY: demo test bootstrap lint unit bench bench-load fuzz clean-demo

## Run the main job on the embedded defaults (SQLite + local blobs under ./data).
demo: bootstrap
	$(CARGO) build --release -j$(JOBS) --bin idv
	$(CARGO_TARGET_DIR)/release/idv --data-dir $(DATA_DIR) demo

## The whole suite: formatting, clippy -D warnings, every crate's tests on both DB and both
## blob backends (the S3 tests start s3s-fs on loopback; PostgreSQL on 127.0.0.1:5432).
test: bootstrap lint unit

bootstrap:
	@scripts/bootstrap.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -j$(JOBS) -- -D warnings

unit:
	IDV_REQUIRE_S3=1 $(CARGO) test --workspace -j$(JOBS)

## Benches: seal/open vs raw aes-gcm vs ring (criterion), and the mux vs ffmpeg + AES-GCM.
bench: bootstrap
	$(CARGO) bench -j$(JOBS) -p idv-benches
	@python3 benches/ratios.py "$(CARGO_TARGET_DIR)/criterion"
	$(CARGO) build --release -j$(JOBS) -p idv -p idv-benches --bins
	python3 benches/mux_vs_ffmpeg.py "$(CARGO_TARGET_DIR)/release" --minutes 10 --runs 3 --memory-minutes 60

## Ingest load: N simulated agents (camera + screen, TLS, durable acks) against one
## `idv serve`; loss, ack latency, CPU and memory per agent (benches/README.md). Writes about
## 125 MB/s at 1000 agents to a data directory under $TMPDIR, removed after each run.
LOAD_AGENTS ?= 50 200 1000
bench-load: bootstrap
	$(CARGO) build --release -j$(JOBS) -p idv -p idv-benches --bins
	python3 benches/ingest_load.py "$(CARGO_TARGET_DIR)/release" --agents $(LOAD_AGENTS)

## Fuzz the parsers: sealed archives, agent media frames, screen-codec payloads (cargo-fuzz;
## FUZZ_SECONDS=60 each).
fuzz: bootstrap
	scripts/fuzz.sh $${FUZZ_SECONDS:-60}

clean-demo:
	rm -rf $(DATA_DIR)
