//! Strict JSON for signed objects: no duplicated member names, no private key material.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use swarmvm_wallet::PRIVATE_JWK_MEMBERS;

/// Parses JSON, refusing any object that names a member twice (RFC 8259 leaves that to the
/// parser; RFC 7515 §5.2 requires refusal or last-wins, and we refuse). Nesting is bounded by
/// serde_json's recursion limit.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(bytes).map(|s| s.0)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let shown = crate::kind::shorten(&key);
                return Err(de::Error::custom(format_args!("duplicate member '{shown}'")));
            }
            let Strict(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Where in `value` private key material sits, if anywhere: a JWK-shaped object (one with
/// `kty`) holding a private member, a member named `private_key`, or a string holding a
/// `PRIVATE KEY` PEM.
pub fn find_private_key_material(value: &Value) -> Option<String> {
    let mut path = Vec::new();
    find_in(value, &mut path).map(|what| describe(what, &path))
}

/// [`find_private_key_material`] for a JSON object.
pub(crate) fn find_private_key_material_in_object(obj: &Map<String, Value>) -> Option<String> {
    let mut path = Vec::new();
    find_in_object(obj, &mut path).map(|what| describe(what, &path))
}

/// One step from the root to a value: a member name or a list index.
enum Step<'a> {
    Member(&'a str),
    Index(usize),
}

/// What was found, named once its place is known.
enum Found {
    Pem,
    JwkMember(&'static str),
    PrivateKeyMember,
}

fn describe(what: Found, path: &[Step<'_>]) -> String {
    let mut at = String::from("$");
    for step in path {
        match step {
            Step::Member(name) => {
                at.push('.');
                at.push_str(&crate::kind::shorten(name));
            }
            Step::Index(i) => at.push_str(&format!("[{i}]")),
        }
    }
    match what {
        Found::Pem => format!("a PRIVATE KEY PEM at {at}"),
        Found::JwkMember(m) => format!("jwk member '{m}' at {at}"),
        Found::PrivateKeyMember => format!("a 'private_key' member at {at}"),
    }
}

fn find_in<'a>(value: &'a Value, path: &mut Vec<Step<'a>>) -> Option<Found> {
    match value {
        Value::String(s) if s.contains("PRIVATE KEY-----") => Some(Found::Pem),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            path.push(Step::Index(i));
            let found = find_in(item, path);
            if found.is_none() {
                path.pop();
            }
            found
        }),
        Value::Object(obj) => find_in_object(obj, path),
        _ => None,
    }
}

fn find_in_object<'a>(obj: &'a Map<String, Value>, path: &mut Vec<Step<'a>>) -> Option<Found> {
    if obj.contains_key("kty")
        && let Some(m) = PRIVATE_JWK_MEMBERS.iter().find(|m| obj.contains_key(**m))
    {
        return Some(Found::JwkMember(m));
    }
    if obj.contains_key("private_key") || obj.contains_key("privateKey") {
        return Some(Found::PrivateKeyMember);
    }
    obj.iter().find_map(|(k, v)| {
        path.push(Step::Member(k));
        let found = find_in(v, path);
        if found.is_none() {
            path.pop();
        }
        found
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_members_are_refused_at_any_depth() {
        assert!(parse_strict(br#"{"a":1,"a":2}"#).is_err());
        let err = parse_strict(br#"{"x":{"alg":"EdDSA","alg":"none"}}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate member 'alg'"), "{err}");
        assert!(parse_strict(br#"[{"a":1},{"a":2}]"#).is_ok());
        assert_eq!(parse_strict(br#"{"a":[1,2.5,"s",null,true]}"#).unwrap()["a"][1], 2.5);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(parse_strict(deep.as_bytes()).is_err());
    }

    #[test]
    fn private_material_is_found_where_it_hides() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIB...\n-----END RSA PRIVATE KEY-----";
        let cases = [
            json!({"wallets": [{"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "a", "d": "b"}}]}),
            json!({"wallets": [{"public_key": "p", "private_key": "k"}]}),
            json!({"nft": {"metadata": {"note": pem}}}),
            json!({"jwk": {"kty": "RSA", "n": "a", "e": "AQAB", "qi": "c"}}),
        ];
        for case in cases {
            assert!(find_private_key_material(&case).is_some(), "{case}");
        }
        let fine = json!({"wallets": [{"label": "d", "jwk": {"kty": "OKP", "x": "a"}}], "d": 1});
        assert_eq!(find_private_key_material(&fine), None);
    }
}
