#!/usr/bin/env bash
# The design note's whole scenario, one `swarmvm` command at a time, as a script would run
# it (`swarmvm demo` does the same in one process): an authority and three peer wallets; the
# operations and wallets tokens; every peer verifying them; the note's contracts signed by
# the peers; a bundle (tokens, contracts, signed manifest) and its torrent seeded by the
# authority over BitTorrent on 127.0.0.1; every peer fetching it, applying it to its own
# ledger and showing its state; the peers' state roots compared, each ledger verified, and a
# forged token refused. Contacts nothing beyond 127.0.0.1 (no DHT, no trackers).
#
# SWARMVM=path/to/swarmvm uses that binary; otherwise the debug build is made first.
# WORK=DIR keeps the files in DIR (new or empty) instead of a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SWARMVM:-}" ]; then
  cargo build --quiet -p swarmvm
  SWARMVM="$PWD/target/debug/swarmvm"
fi
swarmvm() { "$SWARMVM" "$@"; }
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

if [ -n "${WORK:-}" ]; then
  mkdir -p "$WORK"
  work=$(cd "$WORK" && pwd)
else
  work=$(mktemp -d)
fi
seeder=""
cleanup() {
  if [ -n "$seeder" ]; then
    kill "$seeder" 2>/dev/null || true
    wait "$seeder" 2>/dev/null || true
  fi
  if [ -z "${WORK:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
cd "$work"

echo "== wallets"
swarmvm wallet new --out authority.pem >/dev/null
swarmvm wallet public authority.pem > authority.pub
network=$(swarmvm wallet show authority.pub --json | json_field id)
echo "authority (the network): $network"
for i in 1 2 3; do
  echo "peer$i: $(swarmvm wallet new --out "peer$i.pem")"
done

echo "== registration tokens"
cat > ops.json <<'JSON'
{"register_student": "register_student", "add_course": "add_course",
 "vote_proposal": "vote_proposal", "generate_nft": "generate_nft"}
JSON
swarmvm token issue operations --key authority.pem --ops ops.json > registration_tokens.txt
swarmvm token issue wallets --key authority.pem \
  --wallet peer1.pem --wallet peer2.pem --wallet peer3.pem >> registration_tokens.txt
for i in 1 2 3; do
  swarmvm token verify registration_tokens.txt --trust authority.pub --json >/dev/null
  echo "peer$i: both tokens verify"
done

echo "== a forged token is refused"
# The first character of the signature changed: its first six bits differ.
head -1 registration_tokens.txt | python3 -c '
import sys
h, p, s = sys.stdin.read().strip().split(".")
print(".".join([h, p, ("B" if s[0] == "A" else "A") + s[1:]]))' > forged.txt
if swarmvm token verify forged.txt --trust authority.pub 2>forged.err; then
  echo "forged token accepted" >&2
  exit 1
fi
cat forged.err

echo "== contracts, signed by the peers"
cat > c1.json <<'JSON'
{"actions": [{"action": "register_student", "student": {"id": "S001", "name": "John Doe", "department": "Computer Science"}}]}
JSON
cat > c2.json <<'JSON'
{"actions": [{"action": "add_course", "course": {"id": "C001", "name": "Blockchain Technology", "department": "Computer Science"}}]}
JSON
cat > c3.json <<'JSON'
{"actions": [{"action": "vote_proposal", "proposal": {"id": "P001", "description": "Increase Research Funding"}}]}
JSON
cat > c4.json <<'JSON'
{"actions": [{"action": "generate_nft", "nft": {"id": "NFT001", "name": "RareArt", "metadata": {"artist": "Alice", "creation_date": "2024-11-23", "description": "A rare piece of digital art."}}}]}
JSON
: > contracts.jsonl
n=0
for c in c1 c2 c3 c4; do
  n=$((n + 1))
  swarmvm contract sign "$c.json" --wallet peer1.pem --network authority.pub --nonce "$n" >> contracts.jsonl
done
for i in 2 3; do
  swarmvm contract sign c3.json --wallet "peer$i.pem" --network authority.pub --nonce 1 >> contracts.jsonl
done
echo "$(wc -l < contracts.jsonl) contracts"

echo "== the bundle, seeded by the authority"
swarmvm bundle create bundle-1 --key authority.pem \
  --tokens registration_tokens.txt --contracts contracts.jsonl
# The binary itself in the background (not the shell function), so that $! is its pid and
# the cleanup stops it.
"$SWARMVM" bundle seed bundle-1.torrent --dir bundle-1 --no-dht --listen 127.0.0.1:0 --json \
  > seeder.json 2> seeder.log &
seeder=$!
listen=""
for _ in $(seq 1 300); do
  listen=$(head -1 seeder.json 2>/dev/null | json_field listen 2>/dev/null || true)
  [ -n "$listen" ] && break
  kill -0 "$seeder" 2>/dev/null || { cat seeder.log >&2; exit 1; }
  sleep 0.1
done
[ -n "$listen" ] || { echo "the seeder did not start" >&2; exit 1; }
echo "seeding on $listen"

echo "== every peer fetches, verifies and applies it"
for i in 1 2 3; do
  swarmvm bundle fetch bundle-1.torrent --out "peer$i/downloads" --peer "$listen" \
    --no-dht --listen 127.0.0.1:0 --timeout 60s >/dev/null
  swarmvm node apply "peer$i/downloads/bundle-1" --data-dir "peer$i" --trust authority.pub
done

echo "== state"
swarmvm state show --data-dir peer1
roots=""
for i in 1 2 3; do
  root=$(swarmvm state root --data-dir "peer$i")
  swarmvm ledger verify --data-dir "peer$i" >/dev/null
  echo "peer$i: state root $root (ledger verified)"
  roots="$roots$root"$'\n'
done
if [ "$(printf '%s' "$roots" | sort -u | wc -l)" -ne 1 ]; then
  echo "the peers' state roots differ" >&2
  exit 1
fi
echo "all three peers agree"
