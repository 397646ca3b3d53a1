"""A client for swarmvm wallet holders: sign contracts, submit them, follow their outcome.

    from swarmvm_client import Client, Wallet

    wallet = Wallet.load("peer1.pem")              # the PKCS#8 PEM `swarmvm wallet new` writes
    client = Client("http://127.0.0.1:8080")
    network = client.status()["network"]
    nonce = client.next_nonce(wallet.id)          # the wallet's last nonce + 1
    jws = wallet.sign_contract([{"action": "register_student", "student": {...}}],
                               network=network, nonce=nonce)
    answer = client.submit(jws)                   # {"id": ..., "state": "pending"}
    outcome = client.wait(answer["id"], timeout=60)  # applied or rejected, with its receipt
    entry = client.state("students", "S001")      # one state entry, or None
    value = client.verified("students", "S001", "network.json")  # checked with a proof

A contract is signed exactly as the swarmvm command line signs it (docs/format.md,
"Contracts and actions"), so the same key, actions, nonce and iat give the same bytes
(tests/vectors/contracts.json). The only dependency is `cryptography`.

Nonces only have to exceed the wallet's last applied one, so a gap never stalls a wallet.
Two processes sharing one wallet avoid clashes by drawing nonces from disjoint ranges or one
shared counter: a contract whose nonce was used already is refused (409) and is not applied.
"""

import base64
import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from .proof import VerificationError, verify_answer

__all__ = ["Client", "SwarmvmError", "VerificationError", "Wallet", "MAX_NONCE", "verify_answer"]

#: The largest nonce: 2^53 - 1, exact in every JSON implementation.
MAX_NONCE = (1 << 53) - 1

_TYP = "swarmvm-contract+jwt"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _sorted(value):
    """Objects' members in the order of their names' UTF-8 bytes, at every depth."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value, key=lambda k: k.encode("utf-8"))}
    if isinstance(value, (list, tuple)):
        return [_sorted(v) for v in value]
    return value


def _compact(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class Wallet:
    """An Ed25519 wallet: its private key never leaves this object."""

    def __init__(self, key: Ed25519PrivateKey):
        self._key = key
        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        required = {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}
        #: The wallet's id: the RFC 7638 SHA-256 thumbprint of its public JWK.
        self.id = _b64(hashlib.sha256(_compact(required)).digest())
        #: The public JWK, as `swarmvm wallet public --format jwk` writes it.
        self.public_jwk = {"alg": "EdDSA", **required, "kid": self.id}

    @classmethod
    def generate(cls) -> "Wallet":
        """A new random wallet."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path, password: bytes = None) -> "Wallet":
        """The wallet in a PKCS#8 PEM file, as `swarmvm wallet new` writes it."""
        with open(path, "rb") as f:
            key = load_pem_private_key(f.read(), password=password)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 key (this client signs with EdDSA only)")
        return cls(key)

    @classmethod
    def from_seed(cls, seed: bytes) -> "Wallet":
        """The wallet of a 32-byte Ed25519 seed (RFC 8032)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign_contract(self, contract, *, network: str, nonce: int, iat: int = None) -> str:
        """Signs `contract` (its list of actions, or `{"actions": [...]}`) for the network
        `network` with `nonce` (1 to 2^53 - 1): the compact JWS to submit. `iat` defaults to
        now."""
        actions = contract["actions"] if isinstance(contract, dict) else contract
        if not isinstance(actions, (list, tuple)):
            raise TypeError("a contract is a list of actions")
        if isinstance(nonce, bool) or not isinstance(nonce, int) or not 1 <= nonce <= MAX_NONCE:
            raise ValueError(f"nonce {nonce!r} is out of range (1 to 2^53-1)")
        header = {"typ": _TYP, "alg": "EdDSA", "kid": self.id}
        claims = {
            "iss": self.id,
            "aud": network,
            "iat": int(time.time()) if iat is None else iat,
            "nonce": nonce,
            "actions": _sorted(actions),
        }
        signing_input = _b64(_compact(header)) + "." + _b64(_compact(claims))
        return signing_input + "." + _b64(self._key.sign(signing_input.encode("ascii")))


class SwarmvmError(Exception):
    """A node answered with an error: `status` is the HTTP status, the message its reason."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Client:
    """A node's HTTP API (`swarmvm node run --http`)."""

    def __init__(self, url: str, timeout: float = 10):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _request(self, method, path, body=None, content_type=None):
        request = urllib.request.Request(self.url + path, data=body, method=method)
        request.add_header("Accept", "application/json")
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as e:
            try:
                reason = json.loads(e.read()).get("error", e.reason)
            except ValueError:
                reason = e.reason
            raise SwarmvmError(e.code, reason) from None

    def status(self) -> dict:
        """`GET /v1/status`: the node's network, last seq, state root and more."""
        return self._request("GET", "/v1/status")

    def wallet(self, wallet_id: str):
        """`GET /v1/wallets/{id}`: label, jwk, last `nonce`, revoked; None when unknown."""
        try:
            return self._request("GET", "/v1/wallets/" + urllib.parse.quote(wallet_id, safe=""))
        except SwarmvmError as e:
            if e.status == 404:
                return None
            raise

    def next_nonce(self, wallet_id: str) -> int:
        """The next nonce of a registered wallet: its last applied nonce + 1."""
        found = self.wallet(wallet_id)
        if found is None:
            raise SwarmvmError(404, f"wallet {wallet_id} is not registered")
        return found["nonce"] + 1

    def submit(self, jws: str) -> dict:
        """`POST /v1/contracts`: `{"id", "state": "pending"}` once the network took it."""
        return self._request("POST", "/v1/contracts", jws.encode("ascii"), "application/jose")

    def contract(self, contract_id: str) -> dict:
        """`GET /v1/contracts/{id}`: `state` pending, applied or rejected, `seq`, `receipt`."""
        return self._request("GET", "/v1/contracts/" + urllib.parse.quote(contract_id, safe=""))

    def wait(self, contract_id: str, timeout: float = 60, poll: float = 0.2) -> dict:
        """The contract's answer once it is applied or rejected; `TimeoutError` when it is
        neither after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self.contract(contract_id)
            except SwarmvmError as e:
                # A node that forwarded it learns of it when it applies its bundle.
                if e.status != 404:
                    raise
                answer = {"state": "unknown here"}
            state = answer.get("state")
            if state in ("applied", "rejected"):
                return answer
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"contract {contract_id} is still {state} after {timeout} s")
            time.sleep(min(poll, left))

    def state(self, table: str, entry_id: str):
        """`GET /v1/state/{table}/{id}`: the entry as its table shows it, or None."""
        path = f"/v1/state/{urllib.parse.quote(table, safe='')}/{urllib.parse.quote(entry_id, safe='')}"
        try:
            return self._request("GET", path)["entry"]
        except SwarmvmError as e:
            if e.status == 404 and e.message.startswith("no entry"):
                return None
            raise

    def proof(self, table: str, entry_id: str) -> dict:
        """`GET /v1/proof/{table}/{id}`: the proof document, not checked (see `verified`)."""
        path = f"/v1/proof/{urllib.parse.quote(table, safe='')}/{urllib.parse.quote(entry_id, safe='')}"
        return self._request("GET", path)

    def verified(self, table: str, entry_id: str, network):
        """The entry's value (its record's fields, as the proof document gives them), or None
        when it is proved absent, checked rather than trusted: the node's proof against a head
        signed by K members of the authority set that `network` (a network file's path, or
        its parsed JSON) puts in force, followed through the rotations the node sends.
        Raises VerificationError (a ValueError) when the answer does not hold."""
        if not isinstance(network, dict):
            with open(network, encoding="utf-8") as f:
                network = json.load(f)
        doc = self.proof(table, entry_id)
        value, _head = verify_answer(doc, network, asked=(table, entry_id))
        return value
