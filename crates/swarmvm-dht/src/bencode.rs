//! The bencoding BEP 44 signs and stores (BEP 3): integers, byte strings, lists and
//! dictionaries with keys in ascending byte order. Decoding is strict: only the canonical
//! encoding of a value is read (no leading zeros, no `-0`, keys sorted and distinct, nothing
//! after the value), so one value has one encoding and its signature one meaning.

use std::collections::BTreeMap;

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// The deepest nesting read (the item's value is a dictionary holding a list or a dictionary).
const MAX_DEPTH: usize = 4;

impl Value {
    /// Its canonical encoding, appended to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Self::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Self::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode(out);
                }
                out.push(b'e');
            }
            Self::Dict(entries) => {
                out.push(b'd');
                for (k, v) in entries {
                    Self::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Its canonical encoding.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// The value `bytes` encode, read strictly.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut at = 0;
        let value = read(bytes, &mut at, 0)?;
        if at != bytes.len() {
            return Err(format!("{} bytes after the value", bytes.len() - at));
        }
        Ok(value)
    }
}

fn read(bytes: &[u8], at: &mut usize, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("nested too deep".into());
    }
    match bytes.get(*at) {
        Some(b'i') => {
            *at += 1;
            let end = find(bytes, *at, b'e')?;
            let text = std::str::from_utf8(&bytes[*at..end]).map_err(|_| "a bad integer")?;
            let canonical = text == "0"
                || (!text.starts_with('0') && !text.starts_with("-0") && !text.is_empty());
            let n: i64 = text.parse().map_err(|_| format!("a bad integer {text:?}"))?;
            if !canonical {
                return Err(format!("an integer not in its canonical form: {text:?}"));
            }
            *at = end + 1;
            Ok(Value::Int(n))
        }
        Some(b'l') => {
            *at += 1;
            let mut items = Vec::new();
            while bytes.get(*at) != Some(&b'e') {
                items.push(read(bytes, at, depth + 1)?);
            }
            *at += 1;
            Ok(Value::List(items))
        }
        Some(b'd') => {
            *at += 1;
            let mut entries = BTreeMap::new();
            let mut last: Option<Vec<u8>> = None;
            while bytes.get(*at) != Some(&b'e') {
                let Value::Bytes(key) = read_bytes(bytes, at)? else {
                    return Err("a dictionary key that is not a string".into());
                };
                if last.as_ref().is_some_and(|l| *l >= key) {
                    return Err("dictionary keys out of order or repeated".into());
                }
                let value = read(bytes, at, depth + 1)?;
                last = Some(key.clone());
                entries.insert(key, value);
            }
            *at += 1;
            Ok(Value::Dict(entries))
        }
        Some(b'0'..=b'9') => read_bytes(bytes, at),
        Some(c) => Err(format!("unexpected byte {c:#04x}")),
        None => Err("the value ends early".into()),
    }
}

fn read_bytes(bytes: &[u8], at: &mut usize) -> Result<Value, String> {
    let colon = find(bytes, *at, b':')?;
    let text = std::str::from_utf8(&bytes[*at..colon]).map_err(|_| "a bad length")?;
    if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
        return Err(format!("a length not in its canonical form: {text:?}"));
    }
    let len: usize = text.parse().map_err(|_| format!("a bad length {text:?}"))?;
    let start = colon + 1;
    let end = start.checked_add(len).filter(|e| *e <= bytes.len()).ok_or("a string ends early")?;
    *at = end;
    Ok(Value::Bytes(bytes[start..end].to_vec()))
}

fn find(bytes: &[u8], from: usize, byte: u8) -> Result<usize, String> {
    bytes
        .get(from..)
        .and_then(|rest| rest.iter().position(|b| *b == byte))
        .map(|i| from + i)
        .ok_or_else(|| format!("no {:?} where one was expected", byte as char))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_only_canonical_encodings_are_read() {
        let mut dict = BTreeMap::new();
        dict.insert(b"ih".to_vec(), Value::Bytes(vec![0; 20]));
        dict.insert(b"a".to_vec(), Value::List(vec![Value::Int(-3), Value::Int(0)]));
        let v = Value::Dict(dict);
        let bytes = v.to_bytes();
        assert_eq!(bytes, b"d1:ali-3ei0ee2:ih20:\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0e");
        assert_eq!(Value::decode(&bytes).unwrap(), v);
        for bad in [
            &b"i03e"[..],
            b"i-0e",
            b"ie",
            b"02:ab",
            b"3:ab",
            b"d2:ih0:1:a0:e",
            b"d1:a0:1:a0:e",
            b"i1ei2e",
            b"l",
            b"d1:ai1e",
            b"x",
            b"llllllli1eeeeeee",
        ] {
            assert!(Value::decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
