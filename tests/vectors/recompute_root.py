#!/usr/bin/env python3
"""Recomputes swarmvm state roots from docs/format.md alone, with hashlib.

    recompute_root.py state < state.json   # `swarmvm state show --json`: prints its root
    recompute_root.py trie trie.json       # every case of the trie vectors: prints its roots
    add --flat to hash nodes as rules 1 and 2 did (`state`; `trie` prints both roots)

Nothing here comes from the Rust code: the entries are rebuilt from the JSON view of the
state ("State as JSON"), encoded as "State" says, and hashed into the trie "State root"
describes. CI runs it against the Rust implementation (crates/swarmvm/tests/it/vectors.rs).
"""

import hashlib
import json
import struct
import sys

TAGS = {
    "operation": 1,
    "wallet": 2,
    "nonce": 3,
    "student": 4,
    "course": 5,
    "enrollment": 6,
    "proposal": 7,
    "vote": 8,
    "nft": 9,
    "wasm": 10,
    "authority": 11,
    "revocation": 12,
    "token": 13,
}


def u32(n):
    return struct.pack("<I", n)


def u64(n):
    return struct.pack("<Q", n)


def string(s):
    b = s.encode("utf-8")
    return u32(len(b)) + b


def canonical_json(value):
    """Members sorted by key, no spaces, integers only, RFC 8785's minimal escapes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry(table, ident, record):
    """(storage key, leaf hash) of one entry; `record` is its encoded fields."""
    tag = bytes([TAGS[table]])
    key = tag + ident.encode("utf-8")
    leaf = hashlib.sha256(b"\x00" + tag + string(ident) + record).digest()
    return key, leaf


def shown_bytes(text):
    """A key or value as state JSON shows it: text, or "hex:" and lowercase hex."""
    if text.startswith("hex:"):
        return bytes.fromhex(text[4:])
    return text.encode("utf-8")


def entries_of_state(state):
    out = []
    for action, handler in state["operations"].items():
        if isinstance(handler, dict):
            # A WebAssembly operation: "wasm", the module's 32 bytes, the fuel.
            record = string("wasm") + bytes.fromhex(handler["wasm"]) + u64(handler["fuel"])
            out.append(entry("operation", action, record))
        else:
            out.append(entry("operation", action, string(handler)))
    for wallet, w in state["wallets"].items():
        # The key field is the RFC 7638 thumbprint input: the JWK's members, sorted.
        out.append(entry("wallet", wallet, string(w["label"]) + string(canonical_json(w["jwk"]))))
    for wallet, last in state["nonces"].items():
        out.append(entry("nonce", wallet, u64(last)))
    for sid, s in state["students"].items():
        out.append(entry("student", sid, string(s["name"]) + string(s["department"])))
        for course in s["courses"]:
            out.append(entry("enrollment", sid + "/" + course, b""))
    for cid, c in state["courses"].items():
        out.append(entry("course", cid, string(c["name"]) + string(c["department"])))
    for pid, p in state["proposals"].items():
        out.append(entry("proposal", pid, string(p["description"]) + u64(p["votes"])))
        for voter in p["voters"]:
            out.append(entry("vote", pid + "/" + voter, b""))
    for nid, n in state["nfts"].items():
        record = string(n["name"]) + string(canonical_json(n["metadata"])) + string(n["owner"])
        out.append(entry("nft", nid, record))
    for action, values in state.get("wasm", {}).items():
        for key, value in values.items():
            value = shown_bytes(value)
            ident = action + "/" + shown_bytes(key).hex()
            out.append(entry("wasm", ident, u32(len(value)) + value))
    for ident, aset in state.get("authorities", {}).items():
        # The set in force as canonical JSON: {"authorities":[public JWKs],"threshold":K}.
        out.append(entry("authority", ident, string(canonical_json(aset))))
    for ident in state.get("revocations", {}):
        out.append(entry("revocation", ident, b""))
    for ident in state.get("tokens", {}):
        out.append(entry("token", ident, b""))
    return out


def common_prefix(a, b):
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return a[:n]


def children_root(children):
    """Rules 3: a node's children, (first byte, hash) in byte order, as a binary tree split
    at the first bit where their first bytes differ; one child stands for itself."""
    if len(children) == 1:
        return children[0][1]
    diff = children[0][0] ^ children[-1][0]
    depth = 8 - diff.bit_length()
    bit = 0x80 >> depth
    at = next(i for i, (b, _) in enumerate(children) if b & bit)
    left, right = children_root(children[:at]), children_root(children[at:])
    return hashlib.sha256(b"\x02" + bytes([depth]) + left + right).digest()


def node_hash(segment, depth, items, flat):
    """The node whose full path is items' common first `depth` bytes; `segment` is the
    part of that path below its parent. `items` are (key, leaf), sorted by key."""
    value = b"\x00"
    children = []
    rest = []
    for key, leaf in items:
        if len(key) == depth:
            value = b"\x01" + leaf
        else:
            rest.append((key, leaf))
    i = 0
    while i < len(rest):
        first = rest[i][0][depth]
        j = i
        while j < len(rest) and rest[j][0][depth] == first:
            j += 1
        group = rest[i:j]
        prefix = group[0][0]
        for key, _ in group[1:]:
            prefix = common_prefix(prefix, key)
        children.append((first, node_hash(prefix[depth:], len(prefix), group, flat)))
        i = j
    head = b"\x01" + u32(len(segment)) + segment + value
    if flat:
        body = head + u32(len(children)) + b"".join(h for _, h in children)
    elif children:
        body = head + b"\x01" + children_root(children)
    else:
        body = head + b"\x00"
    return hashlib.sha256(body).digest()


def root(entries, flat=False):
    items = sorted(entries)
    keys = [k for k, _ in items]
    if len(set(keys)) != len(keys):
        raise SystemExit("duplicate keys")
    if not items:
        return hashlib.sha256(b"").digest()
    return node_hash(b"", 0, items, flat)


def main():
    args = [a for a in sys.argv[1:] if a != "--flat"]
    flat = len(args) < len(sys.argv) - 1
    if args == ["state"]:
        state = json.load(sys.stdin)
        print(root(entries_of_state(state), flat).hex())
    elif len(args) == 2 and args[0] == "trie":
        with open(args[1], encoding="utf-8") as f:
            vectors = json.load(f)
        for case in vectors["cases"]:
            removed = {bytes.fromhex(k) for k in case.get("remove", [])}
            entries = [
                (bytes.fromhex(k), bytes.fromhex(v))
                for k, v in case["entries"]
                if bytes.fromhex(k) not in removed
            ]
            print(case["name"], root(entries, True).hex(), root(entries).hex())
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
