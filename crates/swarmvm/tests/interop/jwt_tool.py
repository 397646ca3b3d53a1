"""Independent JOSE implementations (PyJWT, jwcrypto) for swarmvm's interoperability tests.

  jwt_tool.py verify TOKEN PUBLIC_KEY_FILE ALG      -> claims as JSON (PyJWT checks exp/nbf/iat)
  jwt_tool.py issue PRIVATE_KEY_FILE ALG CLAIMS_JSON [HEADERS_JSON] -> token (PyJWT)
  jwt_tool.py thumbprint KEY_FILE                   -> RFC 7638 SHA-256 thumbprint (jwcrypto)
  jwt_tool.py contract TOKEN PUBLIC_JWK_FILE NETWORK -> a contract's header and claims (PyJWT:
                                                       EdDSA, aud NETWORK) and its key's
                                                       thumbprint (jwcrypto), as JSON
For HS256 the key file holds the shared secret.
"""
import json
import sys

import jwt
from jwcrypto import jwk


def read(path):
    with open(path, "rb") as f:
        return f.read()


def key_for(path, alg):
    data = read(path)
    if alg == "HS256":
        return data.rstrip(b"\n")
    return data


def main(argv):
    cmd = argv[1]
    if cmd == "verify":
        token, key_file, alg = argv[2], argv[3], argv[4]
        claims = jwt.decode(
            token,
            key_for(key_file, alg),
            algorithms=[alg],
            options={"require": ["exp", "iss"], "verify_aud": False},
        )
        header = jwt.get_unverified_header(token)
        print(json.dumps({"header": header, "claims": claims}, sort_keys=True))
    elif cmd == "issue":
        key_file, alg, claims = argv[2], argv[3], json.loads(argv[4])
        headers = json.loads(argv[5]) if len(argv) > 5 else None
        print(jwt.encode(claims, key_for(key_file, alg), algorithm=alg, headers=headers))
    elif cmd == "thumbprint":
        data = read(argv[2])
        if data.lstrip().startswith(b"{"):
            key = jwk.JWK.from_json(data)
        else:
            key = jwk.JWK.from_pem(data)
        print(key.thumbprint())
    elif cmd == "contract":
        token, key_file, network = argv[2], argv[3], argv[4]
        public = json.loads(read(key_file))
        claims = jwt.decode(
            token,
            jwt.PyJWK(public).key,
            algorithms=["EdDSA"],
            audience=network,
            options={"require": ["iss", "aud", "iat", "nonce"]},
        )
        header = jwt.get_unverified_header(token)
        thumbprint = jwk.JWK(**public).thumbprint()
        print(json.dumps({"header": header, "claims": claims, "thumbprint": thumbprint}))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
