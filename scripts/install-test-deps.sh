#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain: from Debian OpenSSL's command line
# (key interoperability), opentracker and aria2 (BitTorrent interoperability), clang and lld
# (the C example module), rustc 1.63 and libstd-rust-dev-wasm32 (the Rust example module,
# built by /usr/bin/rustc: rustup's comes first on PATH), iproute2 (network namespaces), wrk (HTTP load), chromium and
# nodejs (the explorer's browser tests), systemd (systemd-analyze checks docs/swarmvm.service); from PyPI PyJWT and jwcrypto (tokens, thumbprints),
# libtorrent (BitTorrent) and prometheus-client; from npm playwright-core and terser, pinned by
# tests/browser/package-lock.json (it drives Debian's chromium; it downloads no browser).
# Debian's python3-* packages serve only Debian's own python3, hence pip. Idempotent; skips
# what is already there. Needs root for apt-get.
set -euo pipefail

apt_packages=(openssl opentracker aria2 wrk iproute2 python3 clang lld rustc libstd-rust-dev-wasm32 chromium systemd)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# cargo-nextest runs the tests (the machine image has it; install it where it is missing).
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

if ! python3 -c 'import jwt, jwcrypto, cryptography, libtorrent, prometheus_client' 2>/dev/null; then
  echo "installing PyPI packages: pyjwt[crypto] jwcrypto libtorrent prometheus-client"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    'pyjwt[crypto]>=2.8' 'jwcrypto>=1.5' 'libtorrent>=2.0.9' 'prometheus-client>=0.20'
fi

# Node.js with npm (the machine image has them; Debian's nodejs and npm otherwise).
if ! command -v npm >/dev/null 2>&1; then
  echo "installing Debian packages: nodejs npm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
browser_tests="$(dirname "$0")/../tests/browser"
if [ ! -d "$browser_tests/node_modules/playwright-core" ] || [ ! -d "$browser_tests/node_modules/terser" ]; then
  echo "installing npm packages in tests/browser: playwright-core terser"
  (cd "$browser_tests" && npm ci --no-audit --no-fund --loglevel=error)
fi
