# Local and CI commands are the same: .ci/run calls these targets.
.PHONY: test test-deps lint fmt bench demo

# Every test, on a fresh machine: installs the external tools first.
test: test-deps
	cargo nextest run --workspace --profile ci
	cargo test --workspace --doc

test-deps:
	bash scripts/install-test-deps.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

bench:
	cargo bench --workspace

demo:
	bash scripts/demo.sh
