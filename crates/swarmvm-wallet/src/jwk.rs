//! JWK members in and out (RFC 7517, RFC 7518 §6.3, RFC 8037).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use der::asn1::UintRef;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::{KeyError, Result};
use crate::public::{PublicKey, encode_der};
use crate::wallet::Wallet;

/// JWK members that only private keys have (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037).
pub const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The first private member of a JWK object, if any.
pub(crate) fn private_member(obj: &Map<String, Value>) -> Option<String> {
    PRIVATE_JWK_MEMBERS.iter().find(|m| obj.contains_key(**m)).map(|m| (*m).to_owned())
}

fn str_member<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(KeyError::jwk(format!("member '{name}' is not a string"))),
        None => Err(KeyError::jwk(format!("member '{name}' is missing"))),
    }
}

fn b64_member(obj: &Map<String, Value>, name: &str) -> Result<Zeroizing<Vec<u8>>> {
    let text = str_member(obj, name)?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map(Zeroizing::new)
        .map_err(|_| KeyError::jwk(format!("member '{name}' is not unpadded base64url")))
}

/// Checks a JWK's `alg`, if it has one: `expected`, or one of the `also` names that mean the
/// same for this key type.
fn check_alg(obj: &Map<String, Value>, expected: &str, also: &[&str]) -> Result<()> {
    match obj.get("alg") {
        None => Ok(()),
        Some(Value::String(alg)) if alg == expected || also.contains(&alg.as_str()) => Ok(()),
        Some(other) => Err(KeyError::jwk(format!(
            "'alg' is {} but this key type signs with {expected}",
            crate::error::shown(&other.to_string())
        ))),
    }
}

/// The public key of a JWK object, ignoring any private members.
pub(crate) fn public_from_members(obj: &Map<String, Value>) -> Result<PublicKey> {
    match str_member(obj, "kty")? {
        "OKP" => {
            let crv = str_member(obj, "crv")?;
            if crv != "Ed25519" {
                return Err(KeyError::UnsupportedAlgorithm(format!(
                    "okp curve {}",
                    crate::error::shown(crv)
                )));
            }
            // WebCrypto exports Ed25519 keys with the fully-specified name of RFC 9864,
            // which is EdDSA on Ed25519: the one thing this key type signs with.
            check_alg(obj, "EdDSA", &["Ed25519"])?;
            let x = b64_member(obj, "x")?;
            let x: [u8; 32] =
                x.as_slice().try_into().map_err(|_| KeyError::jwk("'x' is not 32 bytes"))?;
            PublicKey::from_ed25519_bytes(x)
        }
        "RSA" => {
            check_alg(obj, "RS256", &[])?;
            if obj.contains_key("oth") {
                return Err(KeyError::jwk("multi-prime rsa keys are not supported"));
            }
            PublicKey::from_rsa_components(&b64_member(obj, "n")?, &b64_member(obj, "e")?)
        }
        "oct" => Err(KeyError::UnsupportedAlgorithm("symmetric (oct) jwk".into())),
        other => {
            Err(KeyError::UnsupportedAlgorithm(format!("jwk kty {}", crate::error::shown(other))))
        }
    }
}

/// A wallet from a private JWK (`OKP`/`Ed25519` with `d`, or `RSA` with all CRT members).
pub(crate) fn wallet_from_members(obj: &Map<String, Value>) -> Result<Wallet> {
    let public = public_from_members(obj)?;
    let wallet = match str_member(obj, "kty")? {
        "OKP" => Wallet::from_ed25519_seed(&b64_member(obj, "d")?)?,
        _ => {
            let member = |name| b64_member(obj, name);
            let (n, e, d) = (member("n")?, member("e")?, member("d")?);
            let (p, q, dp, dq, qi) =
                (member("p")?, member("q")?, member("dp")?, member("dq")?, member("qi")?);
            fn uint(bytes: &[u8]) -> Result<UintRef<'_>> {
                UintRef::new(crate::public::strip_leading_zeros(bytes))
                    .map_err(|_| KeyError::jwk("rsa member is not an integer"))
            }
            let key = pkcs1::RsaPrivateKey {
                modulus: uint(&n)?,
                public_exponent: uint(&e)?,
                private_exponent: uint(&d)?,
                prime1: uint(&p)?,
                prime2: uint(&q)?,
                exponent1: uint(&dp)?,
                exponent2: uint(&dq)?,
                coefficient: uint(&qi)?,
                other_prime_infos: None,
            };
            let der = Zeroizing::new(encode_der(&key));
            Wallet::from_rsa_pkcs1_der(&der)?
        }
    };
    if wallet.public_key() != &public {
        return Err(KeyError::jwk("private members do not match the public key"));
    }
    Ok(wallet)
}
