#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain: OpenSSL's command line (key
# interoperability) and, from PyPI, PyJWT and jwcrypto (token and thumbprint
# interoperability). Idempotent; skips what is already there. Needs root for apt-get.
set -euo pipefail

apt_packages=(openssl)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import jwt, jwcrypto, cryptography' 2>/dev/null; then
  echo "installing PyPI packages: pyjwt[crypto] jwcrypto"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    'pyjwt[crypto]>=2.8' 'jwcrypto>=1.5'
fi
