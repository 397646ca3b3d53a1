#!/bin/sh
# Builds sdk/rust's tally module with Debian's rustc (1.63) and its wasm32 standard library
# (package libstd-rust-dev-wasm32): pure WebAssembly 1.0, a 16 KiB stack, no paths of this
# machine inside. Prints the module's path. Usage: sdk/rust/build.sh OUT_DIR
set -eu
out=${1:?usage: sdk/rust/build.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
rustc=/usr/bin/rustc   # by full path: rustup's rustc comes first on PATH and has no wasm32 std
mkdir -p "$out"
flags="--edition 2021 --target wasm32-unknown-unknown -C opt-level=s -C target-cpu=mvp
  -C panic=abort -C codegen-units=1 -C debuginfo=0 --remap-path-prefix $here=sdk"
$rustc $flags --crate-type rlib --crate-name swarmvm_sdk \
  -o "$out/libswarmvm_sdk.rlib" "$here/swarmvm-sdk/src/lib.rs"
$rustc $flags --crate-type cdylib --crate-name tally \
  -C link-arg=-zstack-size=16384 -C link-arg=--strip-all \
  --extern swarmvm_sdk="$out/libswarmvm_sdk.rlib" -L "$out" \
  -o "$out/tally.wasm" "$here/tally/src/lib.rs"
echo "$out/tally.wasm"
