"""Drives a live node with the installed swarmvm_client; prints what it saw as JSON.

    python live.py NODE_URL WALLET_PEM VECTORS_JSON NETWORK_JSON

Run by crates/swarmvm/tests/it/clients.rs, which starts the node and asserts on the output.
"""

import base64
import copy
import json
import sys
import time

import swarmvm_client
from swarmvm_client import Client, SwarmvmError, VerificationError, Wallet, verify_answer

url, pem, vectors_path, network_path = sys.argv[1:5]
out = {"module": swarmvm_client.__file__}

# The shared vectors, byte for byte.
with open(vectors_path, encoding="utf-8") as f:
    vectors = json.load(f)
out["vectors"] = [
    Wallet.from_seed(bytes.fromhex(c["seed"])).sign_contract(
        c["actions"], network=c["network"], nonce=c["nonce"], iat=c["iat"]
    ) == c["expect"]["jws"]
    for c in vectors["cases"]
]

wallet = Wallet.load(pem)
client = Client(url)
network = client.status()["network"]
out["wallet"] = wallet.id
out["public_jwk"] = wallet.public_jwk
nonce = client.next_nonce(wallet.id)
out["nonce"] = nonce
student = {"action": "register_student", "student": {"id": "PY1", "name": "Zoë Python", "department": "Snakes"}}
signed = wallet.sign_contract([student], network=network, nonce=nonce)
out["signed"] = signed
out["network"] = network
submitted = client.submit(signed)
out["submitted"] = submitted
out["outcome"] = client.wait(submitted["id"], timeout=60)
out["entry"] = client.state("students", "PY1")
out["absent"] = client.state("students", "NOPE")
out["next_nonce"] = client.next_nonce(wallet.id)

# The same nonce again: refused, nothing applied.
try:
    client.submit(wallet.sign_contract([student], network=network, nonce=nonce))
    out["replay"] = "accepted"
except SwarmvmError as e:
    out["replay"] = {"status": e.status, "message": e.message}

# An unknown table is an error, not an absent entry.
try:
    client.state("people", "PY1")
    out["unknown_table"] = "answered"
except SwarmvmError as e:
    out["unknown_table"] = e.status

# A contract that never arrives: wait gives up with TimeoutError.
started = time.monotonic()
try:
    client.wait("00" * 32, timeout=0.5, poll=0.1)
    out["timeout"] = "returned"
except TimeoutError as e:
    out["timeout"] = {"after": round(time.monotonic() - started, 2), "message": str(e)}

# Verified reads: present and absent, checked against the network file.
out["verified"] = client.verified("students", "PY1", network_path)
out["verified_absent"] = client.verified("students", "NOPE", network_path)
with open(network_path, encoding="utf-8") as f:
    network = json.load(f)
doc = client.proof("students", "PY1")
head_claims = json.loads(base64.urlsafe_b64decode(doc["head"].split(".")[1] + "=="))


def refusal(doc, network, now=None, asked=None):
    try:
        verify_answer(doc, network, now=now, asked=asked)
        return "accepted"
    except VerificationError as e:
        return str(e)


tampered_value = copy.deepcopy(doc)
tampered_value["value"]["name"] = "Mallory"
proof = bytearray(base64.urlsafe_b64decode(doc["proof"] + "=="))
proof[len(proof) // 2] ^= 1
tampered_proof = dict(doc, proof=base64.urlsafe_b64encode(bytes(proof)).rstrip(b"=").decode())
other_network = dict(network, network="another-network")
outsiders = dict(network, authorities=[Wallet.generate().public_jwk])
out["refusals"] = {
    "untouched": refusal(doc, network),
    "value": refusal(tampered_value, network),
    "proof": refusal(tampered_proof, network),
    "network": refusal(doc, other_network),
    "expired": refusal(doc, network, now=head_claims["exp"] + 1),
    "outsiders": refusal(doc, outsiders),
    "asked": refusal(doc, network, asked=("students", "PY2")),
}

print(json.dumps(out))
