#!/usr/bin/env python3
"""Verifies a swarmvm proof document from docs/format.md alone, with hashlib.

    verify_proof.py DOC.json [--root HEX]

DOC.json is what `GET /v1/proof/{table}/{id}` or `swarmvm state prove` prints. The entry (its
`value`, or its absence when `value` is null) is checked against the proof, and the proof
against a state root: the one given with --root, else the document's `root`, else the
`state_root` claim of its head. This script checks no signature: a head's signatures and
expiry are `swarmvm proof verify`'s part (or any JOSE library's). Prints `present` or `absent`
and the root; exits 1 with a one-line reason when the proof does not hold.
"""

import base64
import hashlib
import json
import struct
import sys

# Table name in the routes -> (tag, fields in order as (name, type)); docs/format.md, "State".
TABLES = {
    "operations": (1, None),  # a handler name, or "wasm" with module and fuel
    "wallets": (2, [("label", "str"), ("key", "str")]),
    "nonces": (3, [("last", "u64")]),
    "students": (4, [("name", "str"), ("department", "str")]),
    "courses": (5, [("name", "str"), ("department", "str")]),
    "enrollments": (6, []),
    "proposals": (7, [("description", "str"), ("votes", "u64")]),
    "votes": (8, []),
    "nfts": (9, [("name", "str"), ("metadata", "str"), ("owner", "str")]),
    "wasm": (10, [("value", "shown")]),
    "authorities": (11, [("set", "str")]),
    "revocations": (12, []),
    "tokens": (13, []),
}


class Refused(Exception):
    pass


def u32(n):
    return struct.pack("<I", n)


def string(b):
    return u32(len(b)) + b


def field(value, kind):
    if kind == "str":
        if not isinstance(value, str):
            raise Refused("a text field is not a string")
        return string(value.encode("utf-8"))
    if kind == "u64":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
            raise Refused("a number field is not a u64")
        return struct.pack("<Q", value)
    if kind == "shown":
        if not isinstance(value, str):
            raise Refused("a byte field is not a string")
        if value.startswith("hex:"):
            return string(bytes.fromhex(value[4:]))
        return string(value.encode("utf-8"))
    raise AssertionError(kind)


def record(table, value):
    """The record's bytes from the document's `value`: exactly the table's fields."""
    if not isinstance(value, dict):
        raise Refused("a value is a JSON object")
    tag, fields = TABLES[table]
    if fields is None:
        if value.get("handler") == "wasm":
            fields = [("handler", "str"), ("module", "hash"), ("fuel", "u64")]
        else:
            fields = [("handler", "str")]
    if set(value) != {name for name, _ in fields}:
        raise Refused(f"the value's members are not those of {table}")
    out = b""
    for name, kind in fields:
        if kind == "hash":
            module = bytes.fromhex(value[name])
            if len(module) != 32:
                raise Refused("a module hash is not 32 bytes")
            out += module
        else:
            out += field(value[name], kind)
    return out


def h(*parts):
    return hashlib.sha256(b"".join(parts)).digest()


def node_hash(segment, leaf, children):
    value = b"\x00" if leaf is None else b"\x01" + leaf
    below = b"\x00" if children is None else b"\x01" + children
    return h(b"\x01", u32(len(segment)), segment, value, below)


def proved_root(proof, key, leaf):
    """The root the proof and the claim (leaf hash, or None for absent) hash to."""
    if len(proof) > 262144:
        raise Refused("the proof is over 262144 bytes")
    if not proof or proof[0] != 1:
        raise Refused("not a version 1 proof")
    pos = 1

    def take(n):
        nonlocal pos
        if pos + n > len(proof):
            raise Refused("truncated proof")
        pos += n
        return proof[pos - n : pos]

    nodes = []
    while pos < len(proof):
        if len(nodes) > len(key):
            raise Refused("more nodes than the key has bytes")
        (length,) = struct.unpack("<H", take(2))
        segment = take(length)
        flag = take(1)[0]
        if flag == 0:
            value = None
        elif flag == 1:
            value = take(32)
        elif flag == 2:
            value = "proved"
        else:
            raise Refused("bad value flag")
        step = take(1)[0]
        if step == 0:
            has = take(1)[0]
            if has not in (0, 1):
                raise Refused("bad children flag")
            nodes.append((segment, value, "last", take(32) if has else None))
            if pos != len(proof):
                raise Refused("bytes after the last node")
        elif step == 1:
            splits = []
            for _ in range(take(1)[0]):
                depth = take(1)[0]
                if depth > 7 or (splits and depth <= splits[-1][0]):
                    raise Refused("split depths are not increasing bits 0 to 7")
                splits.append((depth, take(32)))
            nodes.append((segment, value, "down", splits))
        else:
            raise Refused("bad step flag")
    if not nodes:
        if leaf is not None:
            raise Refused("the proof shows an empty state")
        return hashlib.sha256(b"").digest()
    if nodes[-1][2] != "last":
        raise Refused("truncated proof")

    rest, ways, present = key, [], False
    parent_splits = []
    for i, (segment, value, step, more) in enumerate(nodes):
        last = i == len(nodes) - 1
        if i == 0 and segment:
            raise Refused("the root has a segment")
        if i > 0:
            if not segment:
                raise Refused("an empty segment below the root")
            if any((segment[0] ^ ways[-1]) & (0x80 >> d) for d, _ in parent_splits):
                raise Refused("a child that is not where its first byte puts it")
        if not rest.startswith(segment):
            if not last or value == "proved":
                raise Refused("the key leaves the trie above the last node")
            break
        rest = rest[len(segment) :]
        if step == "down":
            if not rest or value == "proved":
                raise Refused("it goes down below the end of the key or the entry")
            ways.append(rest[0])
            parent_splits = more
        elif not rest:
            if value == "proved":
                present = True
            elif value is not None:
                raise Refused("the proof shows another entry at this key")
        elif value == "proved" or more is not None:
            raise Refused("the proof stops where the key goes on")
    if present != (leaf is not None):
        raise Refused("the proof shows the entry " + ("present" if present else "absent"))

    below = None
    for i in range(len(nodes) - 1, -1, -1):
        segment, value, step, more = nodes[i]
        if value == "proved":
            value = leaf
        if step == "last":
            children = more
        else:
            children, byte = below, ways[i]
            for depth, sibling in reversed(more):
                if byte & (0x80 >> depth):
                    children = h(b"\x02", bytes([depth]), sibling, children)
                else:
                    children = h(b"\x02", bytes([depth]), children, sibling)
        below = node_hash(segment, value, children)
    return below


def head_root(head):
    """The `state_root` claim of a head (compact or JSON serialization), unverified."""
    if head.startswith("{"):
        payload = json.loads(head)["payload"]
    else:
        payload = head.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims["state_root"]


def main():
    args = sys.argv[1:]
    root = None
    if len(args) == 3 and args[1] == "--root":
        root = args[2]
        args = args[:1]
    if len(args) != 1:
        raise SystemExit(__doc__)
    with open(args[0], "rb") as f:
        doc = json.loads(f.read())
    try:
        table = doc["table"]
        if table not in TABLES:
            raise Refused(f"no state table {table!r}")
        tag = bytes([TABLES[table][0]])
        ident = doc["id"].encode("utf-8")
        key = tag + ident
        leaf = None
        if doc["value"] is not None:
            leaf = h(b"\x00", tag, string(ident), record(table, doc["value"]))
        text = doc["proof"]
        proof = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if root is None:
            root = doc["root"] if "root" in doc else head_root(doc["head"])
        got = proved_root(proof, key, leaf).hex()
        if got != root:
            raise Refused(f"the proof leads to root {got}, not to {root}")
    except Refused as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except (KeyError, ValueError, TypeError) as e:
        print(f"error: not a proof document: {e!r}", file=sys.stderr)
        sys.exit(1)
    shown = json.dumps(doc["id"])  # escaped: an id cannot draw lines of its own
    print("present" if leaf is not None else "absent", table, shown, "against", root)


if __name__ == "__main__":
    main()
