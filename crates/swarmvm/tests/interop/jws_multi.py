#!/usr/bin/env python3
"""Multi-signature manifests through jwcrypto, another JOSE implementation.

    jws_multi.py verify MANIFEST KEY.pem...   # prints {"verified": [kid...], "claims": {...}}
    jws_multi.py sign CLAIMS.json OUT KEY.pem... # JWS JSON: flattened for one key, general for more

Each key verifies alone: a key whose signature is not in the manifest is left out of
"verified". Signatures are made with a protected header {alg, kid, typ} as swarmvm's DESIGN
says, kid being the key's RFC 7638 thumbprint.
"""

import json
import sys

from jwcrypto import jwk, jws
from jwcrypto.common import JWException

TYP = "swarmvm-manifest+jwt"


def load(path):
    with open(path, "rb") as f:
        return jwk.JWK.from_pem(f.read())


def alg_of(key):
    return "EdDSA" if key.get("kty") == "OKP" else "RS256"


def verify(manifest, keys):
    with open(manifest) as f:
        text = f.read().strip()
    token = jws.JWS()
    token.deserialize(text)
    verified = []
    for path in keys:
        key = load(path)
        try:
            token.verify(key, alg=alg_of(key))
        except JWException:
            continue
        verified.append(key.thumbprint())
    claims = json.loads(token.objects["payload"])
    print(json.dumps({"verified": verified, "claims": claims}))


def sign(claims_file, out, keys):
    with open(claims_file, "rb") as f:
        payload = f.read()
    token = jws.JWS(payload)
    for path in keys:
        key = load(path)
        protected = {"alg": alg_of(key), "kid": key.thumbprint(), "typ": TYP}
        token.add_signature(key, None, json.dumps(protected))
    with open(out, "w") as f:
        f.write(token.serialize(compact=False) + "\n")


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "verify":
        verify(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 5 and sys.argv[1] == "sign":
        sign(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
