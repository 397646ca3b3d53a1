#!/usr/bin/env bash
# Rebuilds crates/swarmvm-node/explorer/vendor/ from the npm registry: uPlot's prebuilt
# files (the explorer's chart), at the version given (default: the one recorded in
# vendor/README.md). The files are committed, so `cargo build` needs no npm.
set -euo pipefail
version="${1:-1.6.32}"
vendor="$(cd "$(dirname "$0")/../crates/swarmvm-node/explorer/vendor" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "uplot@$version" >/dev/null && tar xzf "uplot-$version.tgz")
cp "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" "$vendor/"
cp "$work/package/LICENSE" "$vendor/LICENSE-uPlot"
sha256sum "$vendor/uPlot.iife.min.js" "$vendor/uPlot.min.css"
