#!/usr/bin/env bash
# The design note's registration step, end to end with the swarmvm CLI: an authority and
# three peer wallets, the operations and wallets tokens written one a line to
# registration_tokens.txt, and every peer verifying them against the authority's public key.
# (Until `swarmvm demo` runs the whole scenario over BitTorrent.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p swarmvm
swarmvm="$PWD/target/debug/swarmvm"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "== wallets"
"$swarmvm" wallet new --out authority.pem >/dev/null
"$swarmvm" wallet public authority.pem > authority.pub
for i in 1 2 3; do
  echo "peer$i: $("$swarmvm" wallet new --out "peer$i.pem")"
done
echo "authority: $("$swarmvm" wallet show authority.pub --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"

echo "== registration tokens"
cat > ops.json <<'JSON'
{"register_student": "register_student", "add_course": "add_course",
 "vote_proposal": "vote_proposal", "generate_nft": "generate_nft"}
JSON
"$swarmvm" token issue operations --key authority.pem --ops ops.json > registration_tokens.txt
"$swarmvm" token issue wallets --key authority.pem \
  --wallet peer1.pem --wallet peer2.pem --wallet peer3.pem >> registration_tokens.txt
wc -c registration_tokens.txt

echo "== every peer verifies"
for i in 1 2 3; do
  "$swarmvm" token verify registration_tokens.txt --trust authority.pub --json >/dev/null
  echo "peer$i: both tokens verify"
done
"$swarmvm" token verify registration_tokens.txt --trust authority.pub

echo "== a forged token is refused"
sed '1s/.$/A/' registration_tokens.txt | head -1 > forged.txt
if "$swarmvm" token verify forged.txt --trust authority.pub; then
  echo "forged token accepted" >&2
  exit 1
fi
echo "ok"
