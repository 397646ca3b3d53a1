#!/usr/bin/env python3
"""Signed contracts from docs/format.md alone, with Python's json and `cryptography`.

    contracts.py check contracts.json   # every case's JWS and wallet id, byte for byte
    contracts.py make  > contracts.json  # the cases, signed (only when the format changes)

A contract is a compact JWS (RFC 7515): the header `{"typ":"swarmvm-contract+jwt",
"alg":"EdDSA","kid":ID}` and the claims `{"iss":ID,"aud":NETWORK,"iat":T,"nonce":N,
"actions":[...]}` in these member orders, as compact JSON (no spaces, UTF-8, no escapes
but the ones JSON requires), every object inside the actions with its members sorted by the
UTF-8 bytes of their names. ID is the wallet's RFC 7638 thumbprint. Ed25519 (RFC 8032)
signatures are deterministic, so the same seed and inputs give the same bytes everywhere.
"""

import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sort_members(value):
    """Objects' members in the order of their names' UTF-8 bytes, all the way down."""
    if isinstance(value, dict):
        return {k: sort_members(value[k]) for k in sorted(value, key=lambda k: k.encode("utf-8"))}
    if isinstance(value, list):
        return [sort_members(v) for v in value]
    return value


def compact(value) -> bytes:
    # Dicts keep the order they were built in; sort_members built the nested ones sorted.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def wallet(seed_hex: str):
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    thumbprint_input = compact({"crv": "Ed25519", "kty": "OKP", "x": b64(raw)})
    return key, b64(hashlib.sha256(thumbprint_input).digest())


def sign(case) -> (str, str):
    key, wallet_id = wallet(case["seed"])
    header = {"typ": "swarmvm-contract+jwt", "alg": "EdDSA", "kid": wallet_id}
    claims = {
        "iss": wallet_id,
        "aud": case["network"],
        "iat": case["iat"],
        "nonce": case["nonce"],
        "actions": sort_members(case["actions"]),
    }
    signing_input = b64(compact(header)) + "." + b64(compact(claims))
    signature = key.sign(signing_input.encode("ascii"))
    return wallet_id, signing_input + "." + b64(signature)


NETWORK = "TcZ2RSQn6Bb5QrNUW8Clk1cl8j3Ymr5-RPQMaG0gyJc"
SEEDS = [
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",  # RFC 8032 test 1
    "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",  # RFC 8032 test 2
]


def student(i, name="John Doe"):
    return {
        "action": "register_student",
        "student": {"id": f"S{i:03}", "name": name, "department": "Computer Science"},
    }


def cases():
    nested = {
        "action": "generate_nft",
        "nft": {
            "id": "N1",
            "name": "RareArt",
            "metadata": {
                "artist": {"name": "Alice", "links": ["https://example.invalid/a", {"z": 1, "a": [2, {"y": None, "b": True}]}]},
                "creation_date": "2024-11-23",
                "edition": {"of": 10, "number": 3},
            },
        },
    }
    return [
        ("one action, ASCII", 0, 1, [student(1)]),
        ("non-ASCII text (accents, CJK, an emoji outside the BMP, RTL)", 0, 2,
         [student(2, "Zoë Ångström — 学生 🎓 مرحبا")]),
        ("nested objects and arrays, members sorted at every depth", 1, 1, [nested]),
        ("the largest nonce, 2^53 - 1", 1, (1 << 53) - 1, [student(3)]),
        ("an empty action list", 0, 3, []),
        ("a large action list (200 actions)", 1, 2, [student(i) for i in range(100, 300)]),
        ("names that sort one way in UTF-8 and the other in UTF-16", 0, 4,
         [{"action": "generate_nft", "nft": {"id": "N2", "name": "sorts", "metadata": {"\uff61": "U+FF61", "\U0001f600": "U+1F600", "\u00e9": "U+E9", "e": "e"}}}]),
        ("integer-like names, which JavaScript puts first", 0, 5,
         [{"action": "generate_nft", "nft": {"id": "N3", "name": "numbers", "metadata": {"10": 10, "9": 9, "a": "a", "1": 1, "01": 1}}}]),
        ("escapes: quote, backslash, control characters, DEL and U+2028 as they are", 1, 3,
         [student(4, "line\nbreak\t\"quoted\" back\\slash \u0001 \u007f \u2028 / end")]),
    ]


def make():
    out = {
        "description": (
            "Signed contracts from fixed Ed25519 seeds (RFC 8032), network, iat, nonces and actions. "
            "`expect` pins the signer's wallet id and the compact JWS byte for byte: the header "
            "{typ, alg, kid} and the claims {iss, aud, iat, nonce, actions} in these orders, compact "
            "UTF-8 JSON, objects inside the actions with their members sorted by the UTF-8 bytes of "
            "their names (the actions here are written in another order on purpose). Made and checked "
            "by contracts.py (Python's json and cryptography); checked against the Rust signer by "
            "crates/swarmvm-token/tests/it/vectors.rs."
        ),
        "network": NETWORK,
        "iat": 1733011200,
        "cases": [],
    }
    for name, who, nonce, actions in cases():
        case = {"name": name, "seed": SEEDS[who], "network": NETWORK, "iat": out["iat"], "nonce": nonce, "actions": actions}
        wallet_id, jws = sign(case)
        case["expect"] = {"wallet": wallet_id, "jws": jws}
        out["cases"].append(case)
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def check(path):
    with open(path, encoding="utf-8") as f:
        vectors = json.load(f)
    failed = 0
    for case in vectors["cases"]:
        wallet_id, jws = sign(case)
        if (wallet_id, jws) != (case["expect"]["wallet"], case["expect"]["jws"]):
            failed += 1
            print(f"MISMATCH {case['name']}:\n  got    {jws}\n  pinned {case['expect']['jws']}")
    print(f"{len(vectors['cases']) - failed} of {len(vectors['cases'])} contracts match")
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["make"]:
        make()
    elif sys.argv[1:2] == ["check"] and len(sys.argv) == 3:
        sys.exit(check(sys.argv[2]))
    else:
        sys.exit(__doc__)
