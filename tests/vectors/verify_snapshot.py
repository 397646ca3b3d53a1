#!/usr/bin/env python3
"""Checks a swarmvm state snapshot against a state root, from docs/format.md alone, with hashlib.

    verify_snapshot.py FILE --root HEX

Prints `ok: N entries (H in the header, the rest in C chunks), M modules; state root HEX` and
exits 0 when the file is a snapshot of that state ("Snapshots" in docs/format.md): the
header's trie nodes hash to the root, every chunk's entries hash to the subtree the header
fixed for them, every subtree comes once and in key order, each module hashes to its listed
hash, padding is zeros and nothing follows. Otherwise prints `refused at SECTION: why` and
exits 1. Records are hashed as they are, not decoded: that their fields are well formed is
the Rust reader's part. CI runs it on a snapshot a node published
(crates/swarmvm/tests/it/snapshots.rs).
"""

import hashlib
import struct
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
from recompute_root import children_root, node_hash, u32  # noqa: E402  ("State root")

PIECE = 262144
MAX_PATH = 1024


class Refused(Exception):
    def __init__(self, at, why):
        super().__init__(f"refused at {at}: {why}")


class Body:
    def __init__(self, data, at):
        self.data, self.at, self.i = data, at, 0

    def take(self, n):
        if self.i + n > len(self.data):
            raise Refused(self.at, "truncated")
        out = self.data[self.i : self.i + n]
        self.i += n
        return out

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def path(self):
        n = self.u16()
        if n > MAX_PATH:
            raise Refused(self.at, "a path longer than any key")
        return self.take(n)

    def entry(self):
        key = self.path()
        record = self.take(self.u32())
        if not key:
            raise Refused(self.at, "an empty key")
        # The entry's encoding: its table tag, its id as a length-prefixed string, its record.
        leaf = hashlib.sha256(
            b"\x00" + key[:1] + struct.pack("<I", len(key) - 1) + key[1:] + record
        ).digest()
        return key, leaf

    def end(self):
        if self.i != len(self.data):
            raise Refused(self.at, "trailing bytes")


def sections(data):
    at = 0
    while at < len(data):
        if data[at : at + 4] != b"SVS1" or at + 9 > len(data):
            raise Refused(f"offset {at}", "not a snapshot section")
        kind = data[at + 4]
        (n,) = struct.unpack("<I", data[at + 5 : at + 9])
        used = 9 + n
        padded = -(-used // PIECE) * PIECE
        if at + padded > len(data):
            raise Refused(f"offset {at}", "the file ends inside it")
        if any(data[at + used : at + padded]):
            raise Refused(f"offset {at}", "padding that is not zeros")
        yield kind, data[at + 9 : at + used], padded
        at += padded


def stored_node(raw, at):
    """(leaf or None, [(segment, hash)]) from the ledger's trie node encoding."""
    b = Body(raw, at)
    flag = b.take(1)[0]
    if flag not in (0, 1):
        raise Refused(at, "bad trie node flag")
    leaf = b.take(32) if flag == 1 else None
    children = []
    for _ in range(b.u32()):
        segment = b.take(b.u16())
        if not segment:
            raise Refused(at, "an empty child segment")
        children.append((segment, b.take(32)))
    b.end()
    firsts = [s[0] for s, _ in children]
    if firsts != sorted(set(firsts)):
        raise Refused(at, "a node whose children are not in order")
    return leaf, children


def binary_hash(segment, leaf, children):
    """A node's hash from its stored form (its children's hashes as stated)."""
    value = b"\x00" if leaf is None else b"\x01" + leaf
    head = b"\x01" + u32(len(segment)) + segment + value
    kids = [(s[0], h) for s, h in children]
    body = head + (b"\x01" + children_root(kids) if kids else b"\x00")
    return hashlib.sha256(body).digest()


def verify(data, root):
    parts = list(sections(data))
    if not parts or parts[0][0] != 1:
        raise Refused("header", "the first section is not a header")
    b = Body(parts[0][1], "header")
    if b.take(32) != root:
        raise Refused("header", "a snapshot of another state root")
    nodes = {}
    last = None
    for _ in range(b.u32()):
        path = b.path()
        node = stored_node(b.take(b.u32()), "header")
        if last is not None and path <= last:
            raise Refused("header", "nodes out of order")
        nodes[path], last = node, path
    # Each header node's segment, from the one parent that reaches it, top down.
    segments = {}
    if nodes:
        if b"" not in nodes:
            raise Refused("header", "no root node")
        segments[b""] = b""
        todo = [b""]
        while todo:
            path = todo.pop()
            for segment, _ in nodes[path][1]:
                child = path + segment
                if len(child) > MAX_PATH:
                    raise Refused("header", "a path longer than any key")
                if child in nodes:
                    if child in segments:
                        raise Refused("header", "a node that hangs from two others")
                    segments[child] = segment
                    todo.append(child)
        if len(segments) != len(nodes):
            raise Refused("header", "a node that hangs from no other")
    computed = {}
    for path in sorted(nodes, key=len, reverse=True):
        leaf, children = nodes[path]
        for segment, claimed in children:
            if path + segment in computed and computed[path + segment] != claimed:
                raise Refused("header", "a node's hash is not the one its parent states")
        computed[path] = binary_hash(segments[path], leaf, children)
    subtrees = {}
    if not nodes:
        if root != hashlib.sha256(b"").digest():
            subtrees[b""] = (b"", root)
    else:
        if computed[b""] != root:
            raise Refused("header", "its nodes do not hash to the root")
        for path, (_, children) in nodes.items():
            for segment, claimed in children:
                if path + segment not in nodes:
                    subtrees[path + segment] = (segment, claimed)
    valued = [(p, leaf) for p, (leaf, _) in sorted(nodes.items()) if leaf is not None]
    if b.u32() != len(valued):
        raise Refused("header", "its entries are not those ending at its nodes")
    for path, leaf in valued:
        key, got = b.entry()
        if key != path or got != leaf:
            raise Refused("header", "an entry that is not the one its node states")
    modules = [b.take(32) for _ in range(b.u32())]
    if modules != sorted(set(modules)):
        raise Refused("header", "its modules are not in order")
    chunks = b.u32()
    b.end()
    if len(parts) != 1 + chunks + len(modules):
        raise Refused("end", f"{len(parts)} sections, not {1 + chunks + len(modules)}")
    entries = len(valued)
    previous = None
    for i, (kind, body, size) in enumerate(parts[1 : 1 + chunks], 1):
        at = f"chunk {i}"
        if kind != 2:
            raise Refused(at, "not a chunk")
        b = Body(body, at)
        count = b.u32()
        for _ in range(count):
            path = b.path()
            if previous is not None and path <= previous:
                raise Refused(at, "subtrees out of order")
            previous = path
            if path not in subtrees:
                raise Refused(at, "a subtree the header does not name, or named twice")
            segment, expected = subtrees.pop(path)
            items = []
            n = b.u32()
            if size > PIECE and (count != 1 or n != 1):
                raise Refused(at, "a chunk larger than a piece holding more than one entry")
            for _ in range(n):
                key, leaf = b.entry()
                if not key.startswith(path):
                    raise Refused(at, "an entry outside its subtree")
                if items and key <= items[-1][0]:
                    raise Refused(at, "entries out of order")
                items.append((key, leaf))
            if not items or node_hash(segment, len(path), items, False) != expected:
                raise Refused(at, "its entries do not hash to the subtree's hash")
            entries += n
        b.end()
    if subtrees:
        raise Refused("end", "a subtree no chunk holds")
    for i, ((kind, body, _), listed) in enumerate(zip(parts[1 + chunks :], modules), 1):
        at = f"module {i}"
        if kind != 3 or body[:32] != listed or hashlib.sha256(body[32:]).digest() != listed:
            raise Refused(at, "not the module the header lists there, or bytes of another")
    return entries, len(valued), chunks, len(modules)


def main():
    args = sys.argv[1:]
    if len(args) != 3 or args[1] != "--root":
        raise SystemExit(__doc__)
    with open(args[0], "rb") as f:
        data = f.read()
    root = bytes.fromhex(args[2])
    try:
        entries, header, chunks, modules = verify(data, root)
    except Refused as e:
        print(e)
        sys.exit(1)
    print(
        f"ok: {entries} entries ({header} in the header, the rest in {chunks} chunks), "
        f"{modules} modules; state root {root.hex()}"
    )


if __name__ == "__main__":
    main()
