"""Checks a proof document (`GET /v1/proof/{table}/{id}`) against a network file, from
docs/format.md ("Network files", "Signed objects", "Proofs") alone: the authority set followed
through the document's rotation manifests, the head's K signatures, and the proof hashed from
the entry up to the head's state root.

The network file is the root of trust (it is handed over out of band and not signed): its
authorities, threshold and network id are taken as they are, and each authority's `kid` must
be its key's wallet id.
"""

import base64
import binascii
import hashlib
import json
import re
import struct
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

__all__ = ["VerificationError", "verify_answer"]

#: The longest a head may live, and how far in the future its `iat` may be.
MAX_HEAD_LIFETIME = 3600
LEEWAY = 60
#: The most rotation manifests one document may carry, and the longest proof.
MAX_ROTATIONS = 64
MAX_PROOF_LEN = 262144

# Table name -> (tag, fields in order as (name, type)); docs/format.md, "State".
_TABLES = {
    "operations": (1, None),
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
_HEX64 = re.compile(r"[0-9a-f]{64}")


class VerificationError(ValueError):
    """A proof document that does not hold: the reason is the message."""


def _unb64(text) -> bytes:
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise VerificationError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise VerificationError("not base64url") from None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _h(*parts) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _u32(n) -> bytes:
    return struct.pack("<I", n)


def _string(b) -> bytes:
    return _u32(len(b)) + b


# --- Keys and signed objects -------------------------------------------------------------


def _wallet_id(jwk) -> str:
    names = ("crv", "kty", "x") if jwk.get("kty") == "OKP" else ("e", "kty", "n")
    required = {n: jwk[n] for n in names}
    text = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    return _b64(hashlib.sha256(text).digest())


class _Member:
    """One authority: its id, algorithm and public key."""

    def __init__(self, jwk):
        if not isinstance(jwk, dict):
            raise VerificationError("an authority is not a JWK object")
        try:
            kid = _wallet_id(jwk)
        except KeyError as e:
            raise VerificationError(f"an authority's JWK lacks {e}") from None
        if jwk.get("kid", kid) != kid:
            raise VerificationError("an authority's kid is not its key's wallet id")
        self.kid = kid
        if jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519":
            self.alg = "EdDSA"
            self.key = Ed25519PublicKey.from_public_bytes(_unb64(jwk["x"]))
        elif jwk["kty"] == "RSA":
            self.alg = "RS256"
            n = int.from_bytes(_unb64(jwk["n"]), "big")
            e = int.from_bytes(_unb64(jwk["e"]), "big")
            self.key = RSAPublicNumbers(e, n).public_key()
        else:
            raise VerificationError("an authority's key is neither Ed25519 nor RSA")

    def verify(self, signature: bytes, signed: bytes) -> bool:
        try:
            if self.alg == "EdDSA":
                self.key.verify(signature, signed)
            else:
                self.key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
            return True
        except InvalidSignature:
            return False


class _Set:
    """An authority set: its members by id and its threshold K."""

    def __init__(self, authorities, threshold):
        if not isinstance(authorities, list) or not authorities:
            raise VerificationError("an authority set has no authorities")
        self.members = {}
        for jwk in authorities:
            member = _Member(jwk)
            self.members[member.kid] = member
        if isinstance(threshold, bool) or not isinstance(threshold, int):
            raise VerificationError("an authority set's threshold is not an integer")
        if not 1 <= threshold <= len(self.members):
            raise VerificationError("an authority set's threshold is out of range")
        self.threshold = threshold


def _signed(text, typ):
    """The claims of a JWS (compact or JSON serialization) of kind `typ`, and its signatures
    as (kid, alg, signature, signing input)."""
    if not isinstance(text, str):
        raise VerificationError(f"a {typ} is not text")
    if text.startswith("{"):
        doc = json.loads(text)
        payload = doc["payload"]
        parts = [(s["protected"], payload, s["signature"]) for s in doc["signatures"]]
    else:
        parts = [tuple(text.split("."))]
        if len(parts[0]) != 3:
            raise VerificationError(f"the {typ} is not a JWS")
        payload = parts[0][1]
    signatures = []
    for protected, body, signature in parts:
        header = json.loads(_unb64(protected))
        if header.get("typ") != typ:
            raise VerificationError(f"not a {typ}")
        signed = (protected + "." + body).encode("ascii")
        signatures.append((header.get("kid"), header.get("alg"), _unb64(signature), signed))
    return json.loads(_unb64(payload)), signatures


def _signers(signatures, members, what):
    """The ids of `members` whose signature among `signatures` verifies; any other signer, a
    mismatched algorithm or a bad signature refuses the whole object."""
    signers = set()
    for kid, alg, signature, signed in signatures:
        member = members.get(kid)
        if member is None:
            raise VerificationError(f"the {what} is signed by {kid!r}, not a member of the set")
        if alg != member.alg:
            raise VerificationError(f"a signature of the {what} names {alg!r}, not its key's")
        if not member.verify(signature, signed):
            raise VerificationError(f"the signature of {kid!r} on the {what} does not verify")
        signers.add(kid)
    return signers


def _rotate(manifest, network_id, current):
    """The set a rotation manifest puts in force, after checking K signatures of `current`
    and one of every key it adds; and its seq."""
    claims, signatures = _signed(manifest, "swarmvm-manifest+jwt")
    if claims.get("aud") != network_id:
        raise VerificationError("a rotation manifest is for another network")
    rotated = claims.get("authority_set")
    if not isinstance(rotated, dict):
        raise VerificationError(f"bundle {claims.get('seq')} rotates nothing")
    new = _Set(rotated.get("authorities"), rotated.get("threshold"))
    added = {k: m for k, m in new.members.items() if k not in current.members}
    signers = _signers(signatures, {**current.members, **added}, "rotation manifest")
    old = signers & current.members.keys()
    if len(old) < current.threshold:
        raise VerificationError(
            f"a rotation is signed by {len(old)} member(s) of the set, which needs {current.threshold}"
        )
    if not added.keys() <= signers:
        raise VerificationError("a rotation adds a key that did not sign it")
    seq = claims.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise VerificationError("a rotation manifest has no seq")
    return new, seq


def _head(text, network_id, current, now):
    claims, signatures = _signed(text, "swarmvm-head+jwt")
    signers = _signers(signatures, current.members, "head")
    if len(signers) < current.threshold:
        raise VerificationError(
            f"the head is signed by {len(signers)} member(s), the set needs {current.threshold}"
        )
    if claims.get("iss") not in current.members:
        raise VerificationError("the head's issuer is not a member of the set")
    if claims.get("aud") != network_id:
        raise VerificationError("the head is for another network")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in (iat, exp)):
        raise VerificationError("the head's iat or exp is not a number")
    if exp - iat > MAX_HEAD_LIFETIME:
        raise VerificationError("the head would live longer than a head may")
    if exp <= now:
        raise VerificationError("the head expired")
    if iat > now + LEEWAY:
        raise VerificationError("the head is issued in the future")
    if not isinstance(claims.get("state_root"), str) or not _HEX64.fullmatch(claims["state_root"]):
        raise VerificationError("the head's state root is malformed")
    return claims


# --- The proof ------------------------------------------------------------------------------


def _record(table, value):
    if not isinstance(value, dict):
        raise VerificationError("a value is a JSON object")
    fields = _TABLES[table][1]
    if fields is None:
        if value.get("handler") == "wasm":
            fields = [("handler", "str"), ("module", "hash"), ("fuel", "u64")]
        else:
            fields = [("handler", "str")]
    if set(value) != {name for name, _ in fields}:
        raise VerificationError(f"the value's members are not those of {table}")
    out = b""
    for name, kind in fields:
        v = value[name]
        if kind == "u64":
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**64:
                raise VerificationError("a number field is not a u64")
            out += struct.pack("<Q", v)
            continue
        if not isinstance(v, str):
            raise VerificationError(f"{name!r} is not a string")
        if kind == "hash":
            if not _HEX64.fullmatch(v):
                raise VerificationError("a module hash is not 64 hex")
            out += bytes.fromhex(v)
        elif kind == "shown" and v.startswith("hex:"):
            out += _string(bytes.fromhex(v[4:]))
        else:
            out += _string(v.encode("utf-8"))
    return out


def _node_hash(segment, leaf, children):
    value = b"\x00" if leaf is None else b"\x01" + leaf
    below = b"\x00" if children is None else b"\x01" + children
    return _h(b"\x01", _u32(len(segment)), segment, value, below)


def _proved_root(proof, key, leaf):
    """The root that the proof and the claim (a leaf hash, or None for absent) hash to."""
    if len(proof) > MAX_PROOF_LEN:
        raise VerificationError(f"the proof is over {MAX_PROOF_LEN} bytes")
    if not proof or proof[0] != 1:
        raise VerificationError("not a version 1 proof")
    pos = 1

    def take(n):
        nonlocal pos
        if pos + n > len(proof):
            raise VerificationError("truncated proof")
        pos += n
        return proof[pos - n : pos]

    nodes = []
    while pos < len(proof):
        if len(nodes) > len(key):
            raise VerificationError("more nodes than the key has bytes")
        (length,) = struct.unpack("<H", take(2))
        segment = take(length)
        flag = take(1)[0]
        if flag not in (0, 1, 2):
            raise VerificationError("bad value flag")
        value = None if flag == 0 else take(32) if flag == 1 else "proved"
        step = take(1)[0]
        if step == 0:
            has = take(1)[0]
            if has not in (0, 1):
                raise VerificationError("bad children flag")
            nodes.append((segment, value, "last", take(32) if has else None))
            if pos != len(proof):
                raise VerificationError("bytes after the last node")
        elif step == 1:
            splits = []
            for _ in range(take(1)[0]):
                depth = take(1)[0]
                if depth > 7 or (splits and depth <= splits[-1][0]):
                    raise VerificationError("split depths are not increasing bits 0 to 7")
                splits.append((depth, take(32)))
            nodes.append((segment, value, "down", splits))
        else:
            raise VerificationError("bad step flag")
    if not nodes:
        if leaf is not None:
            raise VerificationError("the proof shows an empty state")
        return hashlib.sha256(b"").digest()
    if nodes[-1][2] != "last":
        raise VerificationError("truncated proof")

    rest, ways, present, parent_splits = key, [], False, []
    for i, (segment, value, step, more) in enumerate(nodes):
        last = i == len(nodes) - 1
        if i == 0 and segment:
            raise VerificationError("the root has a segment")
        if i > 0:
            if not segment:
                raise VerificationError("an empty segment below the root")
            if any((segment[0] ^ ways[-1]) & (0x80 >> d) for d, _ in parent_splits):
                raise VerificationError("a child that is not where its first byte puts it")
        if not rest.startswith(segment):
            if not last or value == "proved":
                raise VerificationError("the key leaves the trie above the last node")
            break
        rest = rest[len(segment) :]
        if step == "down":
            if not rest or value == "proved":
                raise VerificationError("it goes down below the end of the key or the entry")
            ways.append(rest[0])
            parent_splits = more
        elif not rest:
            if value == "proved":
                present = True
            elif value is not None:
                raise VerificationError("the proof shows another entry at this key")
        elif value == "proved" or more is not None:
            raise VerificationError("the proof stops where the key goes on")
    if present != (leaf is not None):
        raise VerificationError("the proof shows the entry " + ("present" if present else "absent"))

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
                    children = _h(b"\x02", bytes([depth]), sibling, children)
                else:
                    children = _h(b"\x02", bytes([depth]), children, sibling)
        below = _node_hash(segment, value, children)
    return below


def verify_answer(doc, network, now=None, asked=None):
    """Checks the proof document `doc` against `network` (a parsed network file) at `now`
    (Unix seconds; default: now), and that it answers `asked` ((table, id)) when given.
    Returns `(value, head_claims)`: the entry's value, None when it is proved absent. Raises
    VerificationError with the reason when anything does not hold."""
    now = int(time.time()) if now is None else now
    try:
        table, ident = doc["table"], doc["id"]
        if table not in _TABLES or not isinstance(ident, str):
            raise VerificationError(f"no state table {table!r}")
        if asked is not None and (table, ident) != tuple(asked):
            raise VerificationError("the node answered for another entry than the one asked")
        network_id = network["network"]
        current = _Set(network["authorities"], network["threshold"])
        head_text = doc.get("head")
        if not isinstance(head_text, str):
            raise VerificationError("the document carries no head to check the proof against")
        manifests = doc.get("manifests", [])
        if not isinstance(manifests, list) or len(manifests) > MAX_ROTATIONS:
            raise VerificationError(f"more than {MAX_ROTATIONS} rotation manifests")
        last_seq = 0
        for manifest in manifests:
            current, seq = _rotate(manifest, network_id, current)
            if seq <= last_seq:
                raise VerificationError(f"rotation seq {seq} is not after {last_seq}")
            last_seq = seq
        head = _head(head_text, network_id, current, now)
        if last_seq > head.get("seq", 0):
            raise VerificationError(f"rotation seq {last_seq} is after the head's")
        tag = bytes([_TABLES[table][0]])
        raw_id = ident.encode("utf-8")
        value = doc["value"]
        leaf = None
        if value is not None:
            leaf = _h(b"\x00", tag, _string(raw_id), _record(table, value))
        got = _proved_root(_unb64(doc["proof"]), tag + raw_id, leaf).hex()
        if got != head["state_root"]:
            raise VerificationError(f"the proof leads to root {got}, not to {head['state_root']}")
        return value, head
    except VerificationError:
        raise
    except (KeyError, ValueError, TypeError, IndexError, struct.error) as e:
        raise VerificationError(f"not a proof document: {e!r}") from None
