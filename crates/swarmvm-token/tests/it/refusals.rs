//! Every verification rule, broken on purpose: each hostile token is refused with the rule's
//! error and a one-line reason, and nothing panics. Tokens are forged by hand, byte by byte,
//! so that no issuing code can hide a hole in verification.

use serde_json::{Value, json};
use swarmvm_test_support::{ForgeKey, b64, forge, forge_raw, now, wallet};
use swarmvm_token::{Hs256Key, TimeCheck, TrustStore, VerifyError, verify_registration};
use swarmvm_vm::HANDLER_NAMES;
use swarmvm_wallet::{Algorithm, Wallet};

fn authority() -> &'static Wallet {
    wallet(Algorithm::Ed25519, 0)
}

fn rsa_authority() -> &'static Wallet {
    wallet(Algorithm::Rsa2048, 0)
}

fn stranger() -> &'static Wallet {
    wallet(Algorithm::Ed25519, 3)
}

const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

fn trust() -> TrustStore {
    let mut store = TrustStore::with_keys([authority().public_key(), rsa_authority().public_key()]);
    store.set_hs256(Hs256Key::new(SECRET, "hs256").unwrap());
    store
}

fn id(w: &Wallet) -> String {
    w.id().to_string()
}

fn header(w: &Wallet) -> Value {
    json!({"alg": w.kind().jws_algorithm(), "typ": "swarmvm-operations+jwt", "kid": id(w)})
}

fn claims(w: &Wallet) -> Value {
    let t = now();
    json!({
        "iss": id(w), "iat": t, "nbf": t, "exp": t + 3600,
        "jti": "5f0e7a52-8c57-4cf5-9a8e-2d1b3f0c9a10",
        "operations": {"register_student": "register_student"}
    })
}

fn with(mut value: Value, key: &str, member: Value) -> Value {
    value[key] = member;
    value
}

fn without(mut value: Value, key: &str) -> Value {
    value.as_object_mut().unwrap().remove(key);
    value
}

fn valid() -> String {
    forge(&header(authority()), &claims(authority()), ForgeKey::Wallet(authority()))
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

fn spki_pem(w: &Wallet) -> String {
    w.public_key().to_spki_pem()
}

fn jwk_with_private(w: &Wallet) -> Value {
    let mut jwk = w.public_key().to_jwk();
    jwk["d"] = json!(b64([7u8; 32]));
    jwk
}

fn weak_rsa_jwk() -> Value {
    let mut n = vec![0xd3u8; 128];
    n[127] |= 1;
    json!({"kty": "RSA", "n": b64(n), "e": "AQAB"})
}

fn wallets_claims(entries: Value) -> Value {
    let c = without(claims(authority()), "operations");
    with(c, "wallets", entries)
}

fn wallets_header() -> Value {
    with(header(authority()), "typ", json!("swarmvm-wallets+jwt"))
}

type Check = fn(&VerifyError) -> bool;

struct Case {
    name: &'static str,
    token: String,
    check: Check,
    says: &'static str,
}

fn case(name: &'static str, token: String, check: Check, says: &'static str) -> Case {
    Case { name, token, check, says }
}

fn cases() -> Vec<Case> {
    let a = authority();
    let ed = ForgeKey::Wallet(a);
    let h = header(a);
    let c = claims(a);
    let good = valid();
    let p = parts(&good);
    let t = now();
    vec![
        case(
            "alg none, unsigned",
            forge(&with(h.clone(), "alg", json!("none")), &c, ForgeKey::Unsigned),
            |e| matches!(e, VerifyError::AlgNone),
            "alg 'none'",
        ),
        case(
            "alg NoNe, unsigned",
            forge(&with(h.clone(), "alg", json!("NoNe")), &c, ForgeKey::Unsigned),
            |e| matches!(e, VerifyError::AlgNone),
            "alg 'none'",
        ),
        case(
            "alg none with a real signature",
            forge(&with(h.clone(), "alg", json!("none")), &c, ed),
            |e| matches!(e, VerifyError::AlgNone),
            "alg 'none'",
        ),
        case(
            "hs256 keyed with the authority's public pem",
            forge(
                &with(h.clone(), "alg", json!("HS256")),
                &c,
                ForgeKey::Hmac(spki_pem(a).as_bytes()),
            ),
            |e| matches!(e, VerifyError::AlgorithmMismatch { expected: "EdDSA", .. }),
            "algorithm mismatch",
        ),
        case(
            "hs256 keyed with the authority's raw public key",
            forge(
                &with(h.clone(), "alg", json!("HS256")),
                &c,
                ForgeKey::Hmac(a.public_key().ed25519_bytes().unwrap()),
            ),
            |e| matches!(e, VerifyError::AlgorithmMismatch { .. }),
            "algorithm mismatch",
        ),
        case(
            "hs256 keyed with the rsa authority's public pem",
            forge(
                &json!({"alg": "HS256", "kid": id(rsa_authority())}),
                &claims(rsa_authority()),
                ForgeKey::Hmac(spki_pem(rsa_authority()).as_bytes()),
            ),
            |e| matches!(e, VerifyError::AlgorithmMismatch { expected: "RS256", .. }),
            "algorithm mismatch",
        ),
        case(
            "rs256 header on an ed25519 key",
            forge(&with(h.clone(), "alg", json!("RS256")), &c, ForgeKey::Wallet(rsa_authority())),
            |e| matches!(e, VerifyError::AlgorithmMismatch { .. }),
            "signs with EdDSA",
        ),
        case(
            "alg in other case",
            forge(&with(h.clone(), "alg", json!("EDDSA")), &c, ed),
            |e| matches!(e, VerifyError::AlgorithmMismatch { .. }),
            "algorithm mismatch",
        ),
        case(
            "es256 (psychic signature family)",
            forge(&with(h.clone(), "alg", json!("ES256")), &c, ForgeKey::Unsigned) + "AAAA",
            |e| matches!(e, VerifyError::AlgorithmMismatch { .. } | VerifyError::Malformed(_)),
            "es256",
        ),
        case(
            "signed by another key under the authority's kid",
            forge(&h, &c, ForgeKey::Wallet(stranger())),
            |e| matches!(e, VerifyError::BadSignature(_)),
            "bad signature",
        ),
        case(
            "untrusted signer, honest about it",
            forge(&header(stranger()), &claims(stranger()), ForgeKey::Wallet(stranger())),
            |e| matches!(e, VerifyError::UnknownKid(_)),
            "unknown kid",
        ),
        case(
            "unknown kid",
            forge(&with(h.clone(), "kid", json!("../../etc/passwd")), &c, ed),
            |e| matches!(e, VerifyError::UnknownKid(_)),
            "unknown kid '../../etc/passwd'",
        ),
        case(
            "no kid, untrusted iss",
            forge(&without(h.clone(), "kid"), &with(c.clone(), "iss", json!(id(stranger()))), ed),
            |e| matches!(e, VerifyError::UnknownIssuer(_)),
            "unknown issuer",
        ),
        case(
            "no kid, no iss",
            forge(&without(h.clone(), "kid"), &without(c.clone(), "iss"), ed),
            |e| matches!(e, VerifyError::NoSigner),
            "names no signer",
        ),
        case(
            "iss names another trusted key",
            forge(&h, &with(c.clone(), "iss", json!(id(rsa_authority()))), ed),
            |e| matches!(e, VerifyError::IssuerMismatch { .. }),
            "issuer mismatch",
        ),
        case(
            "missing iss",
            forge(&h, &without(c.clone(), "iss"), ed),
            |e| matches!(e, VerifyError::MissingClaim("iss")),
            "missing claim 'iss'",
        ),
        case(
            "iss not a string",
            forge(&h, &with(c.clone(), "iss", json!(17)), ed),
            |e| matches!(e, VerifyError::InvalidClaim { .. }),
            "invalid claim 'iss'",
        ),
        case(
            "expired an hour ago",
            forge(&h, &with(c.clone(), "exp", json!(t - 3600)), ed),
            |e| matches!(e, VerifyError::Expired { .. }),
            "token expired at",
        ),
        case(
            "not valid for an hour",
            forge(&h, &with(c.clone(), "nbf", json!(t + 3600)), ed),
            |e| matches!(e, VerifyError::NotYetValid { .. }),
            "not valid before",
        ),
        case(
            "issued in the future",
            forge(&h, &with(c.clone(), "iat", json!(t + 3600)), ed),
            |e| matches!(e, VerifyError::IssuedInFuture { .. }),
            "issued in the future",
        ),
        case(
            "missing exp",
            forge(&h, &without(c.clone(), "exp"), ed),
            |e| matches!(e, VerifyError::MissingClaim("exp")),
            "missing claim 'exp'",
        ),
        case(
            "exp as a string",
            forge(&h, &with(c.clone(), "exp", json!((t + 60).to_string())), ed),
            |e| matches!(e, VerifyError::InvalidClaim { .. }),
            "invalid claim 'exp'",
        ),
        case(
            "exp as a huge float",
            forge(&h, &with(c.clone(), "exp", json!(1e300)), ed),
            |e| matches!(e, VerifyError::InvalidClaim { .. }),
            "invalid claim 'exp'",
        ),
        case(
            "exp negative",
            forge(&h, &with(c.clone(), "exp", json!(-1)), ed),
            |e| matches!(e, VerifyError::InvalidClaim { .. }),
            "invalid claim 'exp'",
        ),
        case(
            "tampered header",
            format!("{}.{}.{}", b64(with(h.clone(), "typ", json!("JWT")).to_string()), p[1], p[2]),
            |e| matches!(e, VerifyError::BadSignature(_)),
            "bad signature",
        ),
        case(
            "tampered payload",
            format!(
                "{}.{}.{}",
                p[0],
                b64(with(c.clone(), "exp", json!(t + 999_999)).to_string()),
                p[2]
            ),
            |e| matches!(e, VerifyError::BadSignature(_)),
            "bad signature",
        ),
        case(
            "tampered signature",
            format!(
                "{}.{}.{}{}",
                p[0],
                p[1],
                if p[2].starts_with('A') { "B" } else { "A" },
                &p[2][1..]
            ),
            |e| matches!(e, VerifyError::BadSignature(_)),
            "bad signature",
        ),
        case(
            "all-zero signature",
            format!("{}.{}.{}", p[0], p[1], b64([0u8; 64])),
            |e| matches!(e, VerifyError::BadSignature(_)),
            "bad signature",
        ),
        case(
            "signature truncated",
            good[..good.len() - 8].to_owned(),
            |e| matches!(e, VerifyError::BadSignature(_) | VerifyError::Malformed(_)),
            "",
        ),
        case(
            "signature removed",
            format!("{}.{}.", p[0], p[1]),
            |e| matches!(e, VerifyError::Malformed(_)),
            "empty signature",
        ),
        case(
            "cut inside the payload",
            good[..p[0].len() + 20].to_owned(),
            |e| matches!(e, VerifyError::Malformed(_)),
            "3 dot-separated parts",
        ),
        case(
            "signature re-encoded with non-zero trailing bits",
            {
                let mut sig = p[2].clone();
                let last = sig.pop().unwrap();
                sig.push(if last == 'A' { 'B' } else { 'A' });
                format!("{}.{}.{sig}", p[0], p[1])
            },
            |e| matches!(e, VerifyError::Malformed(_) | VerifyError::BadSignature(_)),
            "",
        ),
        case(
            "padded base64 header",
            format!("{}=.{}.{}", p[0], p[1], p[2]),
            |e| matches!(e, VerifyError::Malformed(_)),
            "not unpadded base64url",
        ),
        case(
            "whitespace inside",
            format!("{}.\n{}.{}", p[0], p[1], p[2]),
            |e| matches!(e, VerifyError::Malformed(_)),
            "not unpadded base64url",
        ),
        case(
            "oversized",
            forge(&h, &with(c.clone(), "padding", json!("x".repeat(70_000))), ed),
            |e| matches!(e, VerifyError::TooLarge { .. }),
            "at most 65536",
        ),
        case(
            "five parts (JWE)",
            format!("{good}.AAAA.BBBB"),
            |e| matches!(e, VerifyError::Malformed(_)),
            "JWE",
        ),
        case(
            "duplicate alg in header",
            forge_raw(
                &format!(r#"{{"alg":"EdDSA","kid":"{}","alg":"none"}}"#, id(a)),
                &c.to_string(),
                ed,
            ),
            |e| matches!(e, VerifyError::InvalidJson { part: "header", .. }),
            "duplicate member 'alg'",
        ),
        case(
            "duplicate exp in payload",
            forge_raw(
                &h.to_string(),
                &c.to_string().replacen('{', &format!(r#"{{"exp":{},"#, t + 99_999), 1),
                ed,
            ),
            |e| matches!(e, VerifyError::InvalidJson { part: "payload", .. }),
            "duplicate member 'exp'",
        ),
        case(
            "header is not json",
            forge_raw("{alg:EdDSA}", &c.to_string(), ed),
            |e| matches!(e, VerifyError::InvalidJson { part: "header", .. }),
            "malformed token header",
        ),
        case(
            "payload is an array",
            forge_raw(&h.to_string(), "[1,2,3]", ed),
            |e| matches!(e, VerifyError::InvalidJson { part: "payload", .. }),
            "not a json object",
        ),
        case(
            "payload nested 10000 deep",
            forge_raw(&h.to_string(), &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)), ed),
            |e| matches!(e, VerifyError::InvalidJson { .. }),
            "recursion limit",
        ),
        case(
            "payload not utf-8",
            {
                let input = format!("{}.{}", b64(h.to_string()), b64(b"{\"iss\":\"\xff\xfe\"}"));
                let sig = swarmvm_test_support::sign_raw(input.as_bytes(), ed);
                format!("{input}.{}", b64(sig))
            },
            |e| matches!(e, VerifyError::InvalidJson { .. }),
            "invalid unicode",
        ),
        case(
            "crit header",
            forge(&with(h.clone(), "crit", json!(["exp"])), &c, ed),
            |e| matches!(e, VerifyError::UnsupportedHeader { .. }),
            "'crit' refused",
        ),
        case(
            "embedded jwk header (CVE-2018-0114)",
            forge(
                &with(header(stranger()), "jwk", stranger().public_key().to_jwk()),
                &claims(stranger()),
                ForgeKey::Wallet(stranger()),
            ),
            |e| matches!(e, VerifyError::UnsupportedHeader { .. }),
            "'jwk' refused",
        ),
        case(
            "jku header",
            forge(&with(h.clone(), "jku", json!("http://127.0.0.1:1/keys")), &c, ed),
            |e| matches!(e, VerifyError::UnsupportedHeader { .. }),
            "'jku' refused",
        ),
        case(
            "x5u header",
            forge(&with(h.clone(), "x5u", json!("http://127.0.0.1:1/cert")), &c, ed),
            |e| matches!(e, VerifyError::UnsupportedHeader { .. }),
            "'x5u' refused",
        ),
        case(
            "x5c header",
            forge(&with(h.clone(), "x5c", json!(["MIIB"])), &c, ed),
            |e| matches!(e, VerifyError::UnsupportedHeader { .. }),
            "'x5c' refused",
        ),
        case(
            "unencoded payload (b64 false)",
            forge(&with(h.clone(), "b64", json!(false)), &c, ed),
            |e| matches!(e, VerifyError::UnsupportedHeader { .. }),
            "'b64' refused",
        ),
        case(
            "nested jwt (cty JWT)",
            forge(&with(h.clone(), "cty", json!("JWT")), &c, ed),
            |e| matches!(e, VerifyError::UnsupportedHeader { .. }),
            "nested",
        ),
        case(
            "kid not a string",
            forge(&with(h.clone(), "kid", json!(7)), &c, ed),
            |e| matches!(e, VerifyError::Malformed(_)),
            "'kid' is not a string",
        ),
        case(
            "typ of another kind",
            forge(&with(h.clone(), "typ", json!("swarmvm-wallets+jwt")), &c, ed),
            |e| matches!(e, VerifyError::TypMismatch { .. }),
            "does not match the claims",
        ),
        case(
            "unknown typ",
            forge(&with(h.clone(), "typ", json!("at+jwt")), &c, ed),
            |e| matches!(e, VerifyError::UnknownTyp(_)),
            "unknown typ",
        ),
        case(
            "claims of two kinds",
            forge(&without(h.clone(), "typ"), &with(c.clone(), "wallets", json!([])), ed),
            |e| matches!(e, VerifyError::AmbiguousKind(..)),
            "exactly one kind",
        ),
        case(
            "claims of no kind",
            forge(&without(h.clone(), "typ"), &without(c.clone(), "operations"), ed),
            |e| matches!(e, VerifyError::NoKind),
            "hold none of",
        ),
        case(
            "a contract offered as a registration",
            forge(
                &with(h.clone(), "typ", json!("swarmvm-contract+jwt")),
                &with(without(c.clone(), "operations"), "actions", json!([])),
                ed,
            ),
            |e| matches!(e, VerifyError::WrongKind { .. }),
            "not accepted here",
        ),
        case(
            "unknown handler",
            forge(&h, &with(c.clone(), "operations", json!({"mint": "print_money"})), ed),
            |e| matches!(e, VerifyError::UnknownHandler { .. }),
            "unknown handler 'print_money'",
        ),
        case(
            "handler not a string",
            forge(&h, &with(c.clone(), "operations", json!({"mint": 1})), ed),
            |e| matches!(e, VerifyError::InvalidClaim { .. }),
            "a handler name, or {\"wasm\"",
        ),
        case(
            "no operations",
            forge(&h, &with(c.clone(), "operations", json!({})), ed),
            |e| matches!(e, VerifyError::InvalidClaim { .. }),
            "1 to 256",
        ),
        case(
            "action name with a path",
            forge(&h, &with(c.clone(), "operations", json!({"../x": "add_course"})), ed),
            |e| matches!(e, VerifyError::InvalidClaim { .. }),
            "action names",
        ),
        case(
            "private jwk in a wallets token",
            forge(
                &wallets_header(),
                &wallets_claims(json!([{"label": "p", "jwk": jwk_with_private(stranger())}])),
                ed,
            ),
            |e| matches!(e, VerifyError::PrivateKeyMaterial(_)),
            "private key material",
        ),
        case(
            "the note's private_key member",
            forge(
                &wallets_header(),
                &wallets_claims(
                    json!([{"public_key": "-----BEGIN RSA PUBLIC KEY-----", "private_key": "x"}]),
                ),
                ed,
            ),
            |e| matches!(e, VerifyError::PrivateKeyMaterial(_)),
            "private key material",
        ),
        case(
            "a private key pem anywhere",
            forge(
                &h,
                &with(c.clone(), "note", json!("-----BEGIN PRIVATE KEY-----\nMC4CAQ...")),
                ed,
            ),
            |e| matches!(e, VerifyError::PrivateKeyMaterial(_)),
            "private key material",
        ),
        case(
            "weak rsa wallet",
            forge(
                &wallets_header(),
                &wallets_claims(json!([{"label": "weak", "jwk": weak_rsa_jwk()}])),
                ed,
            ),
            |e| matches!(e, VerifyError::WalletKey { index: 0, .. }),
            "rsa key has 1024 bits; at least 2048 are required",
        ),
        case(
            "wallet listed twice",
            forge(
                &wallets_header(),
                &wallets_claims(json!([
                {"label": "a", "jwk": stranger().public_key().to_jwk()},
                {"label": "b", "jwk": stranger().public_key().to_jwk()}])),
                ed,
            ),
            |e| matches!(e, VerifyError::InvalidClaim { .. }),
            "listed twice",
        ),
        case(
            "wallet entry without a key",
            forge(&wallets_header(), &wallets_claims(json!([{"label": "a"}])), ed),
            |e| matches!(e, VerifyError::InvalidClaim { .. }),
            "needs exactly one of",
        ),
        case(
            "symmetric jwk as a wallet",
            forge(
                &wallets_header(),
                &wallets_claims(json!([{"jwk": {"kty": "oct", "x": "AA"}}])),
                ed,
            ),
            |e| matches!(e, VerifyError::WalletKey { .. }),
            "symmetric",
        ),
        case(
            "hs256 with the wrong secret",
            forge(
                &json!({"alg": "HS256", "kid": "hs256"}),
                &with(c.clone(), "iss", json!("hs256")),
                ForgeKey::Hmac(&[9u8; 32]),
            ),
            |e| matches!(e, VerifyError::BadSignature(_)),
            "bad signature",
        ),
        case(
            "hs256 token with an EdDSA header",
            forge(
                &json!({"alg": "EdDSA", "kid": "hs256"}),
                &with(c.clone(), "iss", json!("hs256")),
                ForgeKey::Hmac(SECRET),
            ),
            |e| matches!(e, VerifyError::AlgorithmMismatch { expected: "HS256", .. }),
            "algorithm mismatch",
        ),
    ]
}

#[test]
fn every_hostile_token_is_refused_with_its_rule() {
    let trust = trust();
    let time = TimeCheck::system_now();
    let all = cases();
    assert!(all.len() >= 60, "the catalogue has {} cases", all.len());
    for case in all {
        let result = verify_registration(&case.token, &trust, time, HANDLER_NAMES);
        let err = match result {
            Ok(reg) => panic!("{}: accepted ({:?})", case.name, reg.body),
            Err(err) => err,
        };
        let message = err.to_string();
        assert!((case.check)(&err), "{}: wrong refusal: {message} ({err:?})", case.name);
        assert!(
            message.to_lowercase().contains(&case.says.to_lowercase()),
            "{}: message {message:?} does not say {:?}",
            case.name,
            case.says
        );
        assert!(!message.contains('\n'), "{}: message is not one line", case.name);
    }
}

#[test]
fn the_forged_baseline_and_lenient_forms_are_accepted() {
    // Proves the forging helpers make valid tokens, so the refusals above are the rules' doing.
    let trust = trust();
    let a = authority();
    let t = now();
    let accepted = [
        ("baseline", valid()),
        ("typ absent", forge(&without(header(a), "typ"), &claims(a), ForgeKey::Wallet(a))),
        ("typ JWT", forge(&with(header(a), "typ", json!("JWT")), &claims(a), ForgeKey::Wallet(a))),
        (
            "no kid: signer found by iss",
            forge(&without(header(a), "kid"), &claims(a), ForgeKey::Wallet(a)),
        ),
        (
            "expired within the leeway",
            forge(&header(a), &with(claims(a), "exp", json!(t - 30)), ForgeKey::Wallet(a)),
        ),
        (
            "unknown claims ignored",
            forge(
                &header(a),
                &with(claims(a), "timestamp", json!("2024-11-23T10:00:00")),
                ForgeKey::Wallet(a),
            ),
        ),
        (
            "rs256",
            forge(
                &header(rsa_authority()),
                &claims(rsa_authority()),
                ForgeKey::Wallet(rsa_authority()),
            ),
        ),
        (
            "hs256",
            forge(
                &json!({"alg": "HS256", "typ": "JWT"}),
                &with(claims(a), "iss", json!("hs256")),
                ForgeKey::Hmac(SECRET),
            ),
        ),
        ("the note's RSA PUBLIC KEY pem form", {
            let pem = pkcs1_public_pem(rsa_authority());
            forge(
                &wallets_header(),
                &wallets_claims(json!([{"public_key": pem}])),
                ForgeKey::Wallet(a),
            )
        }),
    ];
    for (name, token) in accepted {
        if let Err(e) = verify_registration(&token, &trust, TimeCheck::system_now(), HANDLER_NAMES)
        {
            panic!("{name}: refused: {e}");
        }
    }
}

/// The note's `RSA PUBLIC KEY` (PKCS#1) PEM of a wallet, built from its JWK's n and e.
fn pkcs1_public_pem(w: &Wallet) -> String {
    let (n, e) = w.public_key().rsa_components().unwrap();
    let int = |bytes: &[u8]| {
        let mut body = Vec::new();
        if bytes[0] & 0x80 != 0 {
            body.push(0);
        }
        body.extend_from_slice(bytes);
        der_tlv(0x02, &body)
    };
    let seq = der_tlv(0x30, &[int(n), int(e)].concat());
    let text = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, seq);
    let lines: Vec<&str> =
        text.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n", lines.join("\n"))
}

fn der_tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 128 {
        out.push(len as u8);
    } else if len < 256 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(body);
    out
}
