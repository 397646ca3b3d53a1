#!/usr/bin/env python3
"""Checks a BEP 44 head item from docs/format.md ("Heads in the DHT") alone: hashlib's SHA-1
for the target, the `cryptography` package's Ed25519 for the item's and the head's signatures,
and json for the head, rebuilt byte for byte from the item's value.

    python3 tests/vectors/verify_dht_item.py tests/vectors/dht-head.json

Exit 0 and "ok: ..." when every check holds; 1 and the reason otherwise.
"""

import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def bdecode(data, at=0):
    """One bencoded value at `at`, strictly; returns (value, next position)."""
    c = data[at:at + 1]
    if c == b"i":
        end = data.index(b"e", at)
        text = data[at + 1:end].decode()
        if text != "0" and (text.startswith("0") or text.startswith("-0") or not text):
            raise ValueError("a non-canonical integer")
        return int(text), end + 1
    if c == b"l":
        at += 1
        out = []
        while data[at:at + 1] != b"e":
            v, at = bdecode(data, at)
            out.append(v)
        return out, at + 1
    if c == b"d":
        at += 1
        out = {}
        last = None
        while data[at:at + 1] != b"e":
            k, at = bdecode(data, at)
            if not isinstance(k, bytes) or (last is not None and k <= last):
                raise ValueError("dictionary keys out of order")
            last = k
            out[k], at = bdecode(data, at)
        return out, at + 1
    if c.isdigit():
        colon = data.index(b":", at)
        n = int(data[at:colon])
        start = colon + 1
        if start + n > len(data):
            raise ValueError("a string ends early")
        return data[start:start + n], start + n
    raise ValueError("not bencode")


def bencode_bytes(b):
    return str(len(b)).encode() + b":" + b


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def compact_json(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def fail(why):
    print("refused: " + why)
    sys.exit(1)


def main():
    vec = json.load(open(sys.argv[1]))
    key = bytes.fromhex(vec["k"])
    salt = vec["salt"].encode()
    seq = vec["seq"]
    value = bytes.fromhex(vec["v"])
    sig = bytes.fromhex(vec["sig"])
    if len(bencode_bytes(value)) > 1000:
        fail("v is over 1000 bytes")
    if hashlib.sha1(key + salt).hexdigest() != vec["target"]:
        fail("the target is not SHA-1(key + salt)")
    # v is a byte string holding the bencoded dictionary (docs/format.md).
    signable = b"4:salt" + bencode_bytes(salt) + b"3:seqi%de1:v" % seq + bencode_bytes(value)
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, signable)
    except InvalidSignature:
        fail("the item's signature does not verify")
    v, end = bdecode(value)
    if end != len(value) or not isinstance(v, dict):
        fail("the value is not one dictionary")
    members = {bytes.fromhex(k): i for k, i in zip(vec["members"], vec["member_ids"])}

    def member(prefix):
        found = [(k, i) for k, i in members.items() if k.startswith(prefix)]
        if len(found) != 1:
            fail("a signer prefix names no single member")
        return found[0]

    ih = v[b"ih"]
    magnet = v[b"m"].decode()
    if "xt=urn:btih:" + ih.hex() not in magnet:
        fail("the head's magnet does not name ih")
    claims = {
        "iss": member(v[b"i"])[1],
        "aud": vec["salt"],
        "seq": v[b"sq"],
        "bundle": v[b"b"].hex(),
        "magnet": magnet,
        "state_root": v[b"r"].hex(),
        "iat": v[b"t"],
        "exp": v[b"e"],
    }
    if b"n" in v:
        n = v[b"n"]
        claims["snapshot"] = {"seq": n[b"s"], "state_root": n[b"r"].hex(), "magnet": n[b"m"].decode()}
    if seq >> 32 != claims["seq"]:
        fail("the item's seq is not the head's times 2^32 plus the times it was signed again")
    payload = b64(compact_json(claims).encode())
    signatures = []
    for entry in v[b"s"]:
        signer_key, signer_id = member(entry[:8])
        header = b64(compact_json({"typ": "swarmvm-head+jwt", "alg": "EdDSA", "kid": signer_id}).encode())
        try:
            Ed25519PublicKey.from_public_bytes(signer_key).verify(entry[8:], (header + "." + payload).encode())
        except InvalidSignature:
            fail("a head signature does not verify")
        signatures.append({"protected": header, "signature": b64(entry[8:])})
    if len(signatures) == 1:
        head = signatures[0]["protected"] + "." + payload + "." + signatures[0]["signature"]
    else:
        head = compact_json({"payload": payload, "signatures": signatures})
    if head != vec["head"]:
        fail("the rebuilt head differs from the vector's")
    checked_by = ""
    try:
        import jwt
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        jwt = None
    if jwt is not None:
        # Each signature as its own compact JWS, verified by PyJWT with the member's key.
        for entry, sig in zip(v[b"s"], signatures):
            signer_key = member(entry[:8])[0]
            pem = Ed25519PublicKey.from_public_bytes(signer_key).public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            token = sig["protected"] + "." + payload + "." + sig["signature"]
            got = jwt.PyJWS().decode_complete(token, key=pem, algorithms=["EdDSA"])
            if json.loads(got["payload"]) != claims:
                fail("PyJWT read other claims")
        checked_by = ", PyJWT verified each signature"
    print("ok: head seq %d, %d signatures, ih %s, value %d bytes%s" % (claims["seq"], len(signatures), ih.hex(), len(value), checked_by))


if __name__ == "__main__":
    main()
