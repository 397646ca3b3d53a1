//! JWS compact serialization (RFC 7515 §7.1): strict decoding, and signing through jsonwebtoken.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;
use serde_json::{Map, Value};
use swarmvm_wallet::{SigningKey, Wallet};

use crate::error::{IssueError, Result, VerifyError};
use crate::json::{find_private_key_material_in_object, parse_strict};
use crate::kind::{Kind, shorten};
use crate::trust::Hs256Key;

/// The largest token accepted or issued, in bytes (64 KiB).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// A token split into its parts and parsed, not yet authenticated.
#[derive(Debug)]
pub(crate) struct Decoded<'t> {
    pub(crate) alg: String,
    pub(crate) kid: Option<String>,
    pub(crate) typ: Option<String>,
    pub(crate) claims: Map<String, Value>,
    /// The decoded payload: the exact bytes the signature covers.
    pub(crate) payload: Vec<u8>,
    pub(crate) signing_input: &'t str,
    pub(crate) signature: &'t str,
}

/// Header members refused outright, and why.
const REFUSED_HEADERS: [(&str, &str); 8] = [
    ("crit", "no critical extensions are understood (RFC 7515 §4.1.11)"),
    ("b64", "unencoded payloads (RFC 7797) are not accepted"),
    ("jwk", "keys come only from the trust list, never from the token"),
    ("jku", "keys come only from the trust list, never from a url"),
    ("x5u", "keys come only from the trust list, never from a url"),
    ("x5c", "keys come only from the trust list, never from a certificate in the token"),
    ("zip", "compressed (JWE) tokens are not accepted"),
    ("enc", "encrypted (JWE) tokens are not accepted"),
];

fn b64_part(part: &'static str, text: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| VerifyError::Malformed(format!("{part} is not unpadded base64url")))
}

fn json_object(part: &'static str, bytes: &[u8]) -> Result<Map<String, Value>> {
    match parse_strict(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(VerifyError::InvalidJson { part, reason: "not a json object".into() }),
        Err(e) => Err(VerifyError::InvalidJson { part, reason: e.to_string() }),
    }
}

fn header_str(header: &Map<String, Value>, name: &str) -> Result<Option<String>> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(VerifyError::Malformed(format!("header '{name}' is not a string"))),
    }
}

impl<'t> Decoded<'t> {
    /// Splits and parses a compact token; checks size, encoding, JSON strictness, header
    /// members and private key material. Does not authenticate.
    pub(crate) fn parse(token: &'t str) -> Result<Self> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::TooLarge { size: token.len(), max: MAX_TOKEN_LEN });
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            let count = token.split('.').count();
            let hint = if count == 5 { " (a JWE? only signed JWS is accepted)" } else { "" };
            return Err(VerifyError::Malformed(format!(
                "expected 3 dot-separated parts (JWS compact), found {count}{hint}"
            )));
        };
        if header_b64.is_empty() || payload_b64.is_empty() {
            return Err(VerifyError::Malformed("empty header or payload".into()));
        }
        let header = json_object("header", &b64_part("header", header_b64)?)?;
        for (member, reason) in REFUSED_HEADERS {
            if header.contains_key(member) {
                return Err(VerifyError::UnsupportedHeader { member: member.into(), reason });
            }
        }
        let alg = header_str(&header, "alg")?
            .ok_or_else(|| VerifyError::Malformed("header has no 'alg'".into()))?;
        if alg.eq_ignore_ascii_case("none") {
            return Err(VerifyError::AlgNone);
        }
        if header_str(&header, "cty")?.is_some_and(|c| c.eq_ignore_ascii_case("jwt")) {
            return Err(VerifyError::UnsupportedHeader {
                member: "cty".into(),
                reason: "nested tokens are not accepted",
            });
        }
        let kid = header_str(&header, "kid")?;
        let typ = header_str(&header, "typ")?;
        let payload = b64_part("payload", payload_b64)?;
        let claims = json_object("payload", &payload)?;
        if let Some(place) = find_private_key_material_in_object(&header)
            .or_else(|| find_private_key_material_in_object(&claims))
        {
            return Err(VerifyError::PrivateKeyMaterial(place));
        }
        if signature.is_empty() {
            return Err(VerifyError::Malformed("empty signature".into()));
        }
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        Ok(Self { alg: shorten(&alg), kid, typ, claims, payload, signing_input, signature })
    }
}

/// Who signs a token: a wallet, or (for note-compatible registration tokens only) an HS256
/// shared secret.
#[derive(Debug, Clone, Copy)]
pub enum Signer<'a> {
    /// A wallet's private key; `alg` follows from its type.
    Wallet(&'a Wallet),
    /// A shared HS256 secret with its issuer name.
    Hs256(&'a Hs256Key),
}

impl Signer<'_> {
    /// The issuer id that goes into `iss` and `kid`: the wallet id, or the HS256 issuer name.
    pub fn issuer(&self) -> String {
        match self {
            Self::Wallet(w) => w.id().to_string(),
            Self::Hs256(k) => k.issuer().to_owned(),
        }
    }

    pub(crate) fn key(&self) -> (jsonwebtoken::Algorithm, EncodingKey) {
        match self {
            Self::Wallet(w) => match w.signing_key() {
                SigningKey::Ed25519Pkcs8(der) => {
                    (jsonwebtoken::Algorithm::EdDSA, EncodingKey::from_ed_der(der))
                }
                SigningKey::RsaPkcs1(der) => {
                    (jsonwebtoken::Algorithm::RS256, EncodingKey::from_rsa_der(der))
                }
                _ => unreachable!("every wallet key type is handled above"),
            },
            Self::Hs256(k) => {
                (jsonwebtoken::Algorithm::HS256, EncodingKey::from_secret(k.secret()))
            }
        }
    }
}

/// Signs `claims` as a token of `kind`: header `alg` from the key, `typ` of the kind, `kid` =
/// the signer's id.
pub(crate) fn sign<T: Serialize>(
    signer: &Signer<'_>,
    kind: Kind,
    claims: &T,
) -> Result<String, IssueError> {
    let (alg, key) = signer.key();
    let header =
        Header { typ: Some(kind.typ().to_owned()), kid: Some(signer.issuer()), ..Header::new(alg) };
    let token = jsonwebtoken::encode(&header, claims, &key)
        .map_err(|e| IssueError::Signing(e.to_string()))?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(IssueError::TooLarge { size: token.len(), max: MAX_TOKEN_LEN });
    }
    Ok(token)
}

/// How a JWS is written: compact (one signature), or JSON (RFC 7515 §7.2), general or
/// flattened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serialization {
    /// `header.payload.signature`.
    Compact,
    /// `{"payload", "signatures": [{"protected", "signature"}, ...]}`.
    General,
    /// `{"payload", "protected", "signature"}`.
    Flattened,
}

/// Most signatures one JWS JSON serialization may carry.
pub const MAX_SIGNATURES: usize = 64;

/// A JWS split into its payload and its signatures, each rebuilt as the compact token it is
/// (`protected.payload.signature`), so every signature goes through the same strict checks.
#[derive(Debug, Clone)]
pub(crate) struct Split {
    pub(crate) form: Serialization,
    /// The base64url payload, shared by every signature.
    pub(crate) payload: String,
    /// One compact token per signature, in the order written.
    pub(crate) compact: Vec<String>,
}

fn json_str<'v>(obj: &'v Map<String, Value>, name: &str) -> Result<&'v str> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(VerifyError::Malformed(format!("JWS JSON member '{name}' is not a string"))),
        None => Err(VerifyError::Malformed(format!("JWS JSON has no '{name}'"))),
    }
}

/// One signature object's protected header and signature; an unprotected `header` is refused.
fn signature_parts(obj: &Map<String, Value>) -> Result<(String, String)> {
    if obj.contains_key("header") {
        return Err(VerifyError::UnsupportedHeader {
            member: "header".into(),
            reason: "unprotected header members are not accepted; every member must be signed",
        });
    }
    Ok((json_str(obj, "protected")?.to_owned(), json_str(obj, "signature")?.to_owned()))
}

fn only(obj: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str()) && k.as_str() != "header") {
        Some(k) => {
            Err(VerifyError::Malformed(format!("{what} has an unknown member '{}'", shorten(k))))
        }
        None => Ok(()),
    }
}

/// Splits a JWS in any of the three serializations. `max` bounds the whole text.
pub(crate) fn split(text: &str, max: usize) -> Result<Split> {
    if text.len() > max {
        return Err(VerifyError::TooLarge { size: text.len(), max });
    }
    if !text.starts_with('{') {
        let payload = text.split('.').nth(1).unwrap_or_default().to_owned();
        return Ok(Split { form: Serialization::Compact, payload, compact: vec![text.to_owned()] });
    }
    let obj = json_object("JWS JSON", text.as_bytes())?;
    let payload = json_str(&obj, "payload")?.to_owned();
    let (form, pairs) = if let Some(list) = obj.get("signatures") {
        only(&obj, &["payload", "signatures"], "JWS JSON (general)")?;
        if obj.contains_key("header") {
            return Err(VerifyError::Malformed("JWS JSON has a top-level 'header'".into()));
        }
        let Value::Array(list) = list else {
            return Err(VerifyError::Malformed("JWS JSON 'signatures' is not a list".into()));
        };
        if list.is_empty() || list.len() > MAX_SIGNATURES {
            return Err(VerifyError::Malformed(format!(
                "JWS JSON carries {} signatures; 1 to {MAX_SIGNATURES} are accepted",
                list.len()
            )));
        }
        let mut pairs = Vec::with_capacity(list.len());
        for entry in list {
            let Value::Object(entry) = entry else {
                return Err(VerifyError::Malformed("a JWS JSON signature is not an object".into()));
            };
            only(entry, &["protected", "signature"], "a JWS JSON signature")?;
            pairs.push(signature_parts(entry)?);
        }
        (Serialization::General, pairs)
    } else {
        only(&obj, &["payload", "protected", "signature"], "JWS JSON (flattened)")?;
        (Serialization::Flattened, vec![signature_parts(&obj)?])
    };
    let compact = pairs
        .into_iter()
        .map(|(protected, signature)| format!("{protected}.{payload}.{signature}"))
        .collect();
    Ok(Split { form, payload, compact })
}

/// Writes signatures over one payload: compact for one, general JSON on one line for more.
pub(crate) fn write(payload: &str, signatures: &[(String, String)]) -> String {
    match signatures {
        [(protected, signature)] => format!("{protected}.{payload}.{signature}"),
        _ => {
            let list: Vec<Value> = signatures
                .iter()
                .map(|(p, s)| serde_json::json!({"protected": p, "signature": s}))
                .collect();
            serde_json::json!({"payload": payload, "signatures": list}).to_string()
        }
    }
}

/// The protected header (`typ`, `alg`, `kid`, in that order) every signature of a `kind` by
/// key `kid` carries, base64url-encoded.
pub(crate) fn protected_header(
    kind: Kind,
    alg: jsonwebtoken::Algorithm,
    kid: String,
) -> Result<String, IssueError> {
    let header = Header { typ: Some(kind.typ().to_owned()), kid: Some(kid), ..Header::new(alg) };
    let header = serde_json::to_vec(&header).map_err(|e| IssueError::Signing(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(header))
}

/// A protected header (`alg`, `kid`, `typ`) and its signature over `payload` by `wallet`.
pub(crate) fn sign_payload(
    wallet: &Wallet,
    kind: Kind,
    payload: &str,
) -> Result<(String, String), IssueError> {
    let signer = Signer::Wallet(wallet);
    let (alg, key) = signer.key();
    let protected = protected_header(kind, alg, signer.issuer())?;
    let input = format!("{protected}.{payload}");
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg)
        .map_err(|e| IssueError::Signing(e.to_string()))?;
    Ok((protected, signature))
}

/// Signs `payload` as a `kind` with every wallet of `signers` (each once) and writes the
/// signatures: compact for one, general JSON for several.
pub(crate) fn sign_all(
    signers: &[&Wallet],
    kind: Kind,
    payload: &str,
) -> Result<String, IssueError> {
    let mut signatures = Vec::with_capacity(signers.len());
    for (i, wallet) in signers.iter().enumerate() {
        if signers[..i].iter().any(|w| w.id() == wallet.id()) {
            return Err(IssueError::Signing(format!("{} is given twice as a signer", wallet.id())));
        }
        signatures.push(sign_payload(wallet, kind, payload)?);
    }
    Ok(write(payload, &signatures))
}

/// The base64url encoding of a value's JSON.
pub(crate) fn encode_payload<T: Serialize>(claims: &T) -> Result<String, IssueError> {
    let bytes = serde_json::to_vec(claims).map_err(|e| IssueError::Signing(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmvm_wallet::{KeyMaterial, PublicKey};

    // RFC 8037 Appendix A.1 (key), A.3 (thumbprint), A.4 (JWS).
    const RFC8037_JWK: &str = r#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
    const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
    const RFC8037_INPUT: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    const RFC8037_SIGNATURE: &str =
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

    #[test]
    fn rfc8037_example_signature_verifies_and_is_reproduced() {
        let (material, _) = KeyMaterial::parse(RFC8037_JWK.as_bytes(), None).unwrap();
        let KeyMaterial::Private(wallet) = material else { panic!("a private jwk") };
        assert_eq!(wallet.id().as_str(), RFC8037_THUMBPRINT);

        // Ed25519 is deterministic: our signer must produce the RFC's signature exactly.
        let (alg, key) = Signer::Wallet(&wallet).key();
        let sig = jsonwebtoken::crypto::sign(RFC8037_INPUT.as_bytes(), &key, alg).unwrap();
        assert_eq!(sig, RFC8037_SIGNATURE);

        // The public half, read as a public JWK, verifies it, and nothing else.
        let public = PublicKey::from_jwk(&serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        }))
        .unwrap();
        assert_eq!(&public, wallet.public_key());
        let ok = |input: &str, sig: &str| {
            let decoding = jsonwebtoken::DecodingKey::from_ed_der(public.ed25519_bytes().unwrap());
            jsonwebtoken::crypto::verify(sig, input.as_bytes(), &decoding, alg).unwrap()
        };
        assert!(ok(RFC8037_INPUT, RFC8037_SIGNATURE));
        assert!(!ok(&RFC8037_INPUT.replace("RXhh", "RXhi"), RFC8037_SIGNATURE));
    }
}
