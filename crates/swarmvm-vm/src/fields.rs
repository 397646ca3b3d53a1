//! Reading and validating action fields, and canonical JSON for NFT metadata: the helpers
//! built-in handlers use, public for handlers written elsewhere.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::error::{ActionError, MAX_ID_LEN, MAX_METADATA_DEPTH, MAX_METADATA_LEN};

/// The action's arguments: its JSON object.
pub type Args = Map<String, Value>;

/// Refuses any member of `obj` outside `allowed`; `path` prefixes the reported name.
///
/// `present` is how many of `allowed` the caller found (or `allowed.len()` when every one is
/// required and was read): when `obj` has no more members than that, there is nothing
/// unknown and no name is compared.
pub fn only_fields(
    obj: &Args,
    allowed: &[&str],
    present: usize,
    path: &str,
) -> Result<(), ActionError> {
    if obj.len() <= present {
        return Ok(());
    }
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => {
            let shown = crate::error::shown(k);
            Err(ActionError::UnknownField(if path.is_empty() {
                shown
            } else {
                format!("{path}.{shown}")
            }))
        }
    }
}

/// The object member `name` (reported as `path`).
pub fn object<'a>(obj: &'a Args, name: &str, path: &'static str) -> Result<&'a Args, ActionError> {
    match obj.get(name) {
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(ActionError::WrongType { path, expected: "an object" }),
        None => Err(ActionError::Missing(path)),
    }
}

/// The string member `name`: non-empty, at most `max` characters, no control characters.
pub fn text<'a>(
    obj: &'a Args,
    name: &str,
    path: &'static str,
    max: usize,
) -> Result<&'a str, ActionError> {
    let s = match obj.get(name) {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(ActionError::WrongType { path, expected: "a string" }),
        None => return Err(ActionError::Missing(path)),
    };
    if s.is_empty() {
        return Err(ActionError::Invalid { path, reason: "is empty" });
    }
    // Byte length bounds the character count from above, so most strings skip the count.
    if s.len() > max && s.chars().count() > max {
        return Err(ActionError::TooLong { path, max });
    }
    if s.chars().any(char::is_control) {
        return Err(ActionError::Invalid { path, reason: "contains control characters" });
    }
    Ok(s)
}

/// True for ids: 1 to 64 of `A-Z a-z 0-9 _ . : -`.
pub fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// The id member `name`.
pub fn id<'a>(obj: &'a Args, name: &str, path: &'static str) -> Result<&'a str, ActionError> {
    let s = match obj.get(name) {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(ActionError::WrongType { path, expected: "a string" }),
        None => return Err(ActionError::Missing(path)),
    };
    if s.len() > MAX_ID_LEN {
        return Err(ActionError::TooLong { path, max: MAX_ID_LEN });
    }
    if !is_id(s) {
        return Err(ActionError::Invalid {
            path,
            reason: "must be 1 to 64 of A-Z a-z 0-9 _ . : -",
        });
    }
    Ok(s)
}

/// The object member `name` as canonical JSON: members sorted by their UTF-8 bytes at every
/// level, no insignificant whitespace, at most 4 KiB and 8 levels deep.
pub fn metadata(obj: &Args, name: &str, path: &'static str) -> Result<String, ActionError> {
    let value = match obj.get(name) {
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(ActionError::WrongType { path, expected: "an object" }),
        None => return Err(ActionError::Missing(path)),
    };
    let mut out = String::new();
    write_canonical(value, &mut out, 0, METADATA_LIMITS, path)?;
    if out.len() > MAX_METADATA_LEN {
        return Err(ActionError::TooLong { path, max: MAX_METADATA_LEN });
    }
    Ok(out)
}

/// How deep and long canonical JSON may be, and what to say when it is deeper.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) depth: usize,
    pub(crate) len: usize,
    pub(crate) too_deep: &'static str,
}

const METADATA_LIMITS: Limits = Limits {
    depth: MAX_METADATA_DEPTH,
    len: MAX_METADATA_LEN,
    too_deep: "is nested more than 8 levels deep",
};

/// `value` as canonical JSON: members sorted by their UTF-8 bytes at every level, no
/// insignificant whitespace, integers only, the minimal escapes of RFC 8785.
pub(crate) fn write_canonical(
    value: &Value,
    out: &mut String,
    depth: usize,
    limits: Limits,
    path: &'static str,
) -> Result<(), ActionError> {
    if depth > limits.depth {
        return Err(ActionError::Invalid { path, reason: limits.too_deep });
    }
    if out.len() > limits.len {
        return Err(ActionError::TooLong { path, max: limits.len });
    }
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if n.is_f64() {
                return Err(ActionError::Invalid {
                    path,
                    reason: "holds a fractional number; use integers or strings",
                });
            }
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out, depth + 1, limits, path)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(v, out, depth + 1, limits, path)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// A JSON string with the minimal escapes of RFC 8785 (JCS).
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Args {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn canonical_metadata_sorts_members_and_is_stable() {
        let a = args(json!({"m": {"b": 1, "a": [true, null, "x\"y\n"], "c": {"z": 1, "y": 2}}}));
        let text = metadata(&a, "m", "nft.metadata").unwrap();
        assert_eq!(text, r#"{"a":[true,null,"x\"y\n"],"b":1,"c":{"y":2,"z":1}}"#);
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reparsed, a["m"], "canonical form is still the same JSON");
    }

    #[test]
    fn metadata_limits() {
        let deep = (0..10).fold(json!(1), |v, _| json!({"k": v}));
        assert!(matches!(
            metadata(&args(json!({"m": deep})), "m", "nft.metadata"),
            Err(ActionError::Invalid { .. })
        ));
        let big = json!({"m": {"s": "x".repeat(5000)}});
        assert!(matches!(
            metadata(&args(big), "m", "nft.metadata"),
            Err(ActionError::TooLong { .. })
        ));
        let float = json!({"m": {"price": 1.5}});
        assert!(metadata(&args(float), "m", "nft.metadata").is_err());
        assert!(matches!(
            metadata(&args(json!({"m": []})), "m", "nft.metadata"),
            Err(ActionError::WrongType { .. })
        ));
    }

    #[test]
    fn text_and_id_rules() {
        let a = args(json!({"ok": "John Doe", "empty": "", "ctl": "a\u{7}b", "num": 5,
            "id": "S-001.a:b_c", "badid": "S 001", "long": "é".repeat(257)}));
        assert_eq!(text(&a, "ok", "s.ok", 256).unwrap(), "John Doe");
        assert!(matches!(text(&a, "empty", "s.empty", 256), Err(ActionError::Invalid { .. })));
        assert!(matches!(text(&a, "ctl", "s.ctl", 256), Err(ActionError::Invalid { .. })));
        assert!(matches!(text(&a, "num", "s.num", 256), Err(ActionError::WrongType { .. })));
        assert!(matches!(text(&a, "none", "s.none", 256), Err(ActionError::Missing("s.none"))));
        assert!(matches!(text(&a, "long", "s.long", 256), Err(ActionError::TooLong { .. })));
        assert_eq!(text(&a, "long", "s.long", 257).unwrap().chars().count(), 257);
        assert!(id(&a, "id", "s.id").is_ok());
        assert!(matches!(id(&a, "badid", "s.badid"), Err(ActionError::Invalid { .. })));
        let err = only_fields(&a, &["ok"], 1, "s").unwrap_err();
        assert!(err.to_string().contains("unknown field 's."), "{err}");
        let all = ["ok", "empty", "ctl", "num", "id", "badid", "long"];
        assert!(only_fields(&a, &all, all.len(), "s").is_ok());
    }
}
