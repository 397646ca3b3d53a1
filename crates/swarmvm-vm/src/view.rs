//! The state as JSON, for people and APIs (not hashed; the root is over the canonical
//! encoding). Objects are keyed by id; every list is in id order. Everything here reads
//! through [`StateScan`], entry by entry, so a state larger than memory can be shown whole
//! (streamed) or a page at a time.

use std::io::Write;

use serde_json::{Map, Value, json};

use crate::access::{StateError, StateScan};
use crate::state::{MemoryState, Record, Table};
use crate::wasm::split_wasm_id;

/// Why the state could not be shown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// The state could not be read.
    #[error(transparent)]
    Storage(#[from] StateError),
    /// The output could not be written.
    #[error("cannot write the state: {0}")]
    Io(#[from] std::io::Error),
}

/// The state not read, or the output not written, is a failure.
impl swarmvm_primitives::Classify for ViewError {
    fn class(&self) -> swarmvm_primitives::ErrorClass {
        match self {
            Self::Storage(e) => swarmvm_primitives::Classify::class(e),
            Self::Io(_) => swarmvm_primitives::ErrorClass::Failed,
        }
    }
}

/// The tables the whole-state JSON shows, by name. Enrollments and votes are shown inside
/// their students and proposals.
const SHOWN: [Table; 10] = [
    Table::Operation,
    Table::Wallet,
    Table::Nonce,
    Table::Student,
    Table::Course,
    Table::Proposal,
    Table::Nft,
    Table::Authority,
    Table::Revocation,
    Table::Token,
];

/// Ids in `table` starting with `prefix/`, without the prefix (a student's courses, a
/// proposal's voters).
fn under(state: &dyn StateScan, table: Table, prefix: &str) -> Result<Vec<Value>, StateError> {
    let prefix = format!("{prefix}/");
    let mut out = Vec::new();
    state.scan_prefix(table, &prefix, &mut |id, _| {
        out.push(json!(&id[prefix.len()..]));
        true
    })?;
    Ok(out)
}

/// One entry's value as the whole-state JSON shows it (without its id).
pub fn value_json(state: &dyn StateScan, id: &str, record: &Record) -> Result<Value, StateError> {
    Ok(match record {
        Record::Operation { handler } => json!(handler.as_str()),
        Record::WasmOperation { module, fuel } => json!({"wasm": module.to_hex(), "fuel": fuel}),
        Record::Data { value } => json!(shown_bytes(value)),
        Record::Wallet { label, key } => {
            let jwk: Value = serde_json::from_str(key).unwrap_or(Value::Null);
            json!({"label": label.as_str(), "jwk": jwk})
        }
        Record::Nonce { last } => json!(last),
        Record::Student { name, department } => json!({
            "name": name.as_str(),
            "department": department.as_str(),
            "courses": under(state, Table::Enrollment, id)?,
        }),
        Record::Course { name, department } => {
            json!({"name": name.as_str(), "department": department.as_str()})
        }
        Record::Enrollment | Record::Vote => Value::Null,
        Record::Proposal { description, votes } => json!({
            "description": description.as_str(),
            "votes": votes,
            "voters": under(state, Table::Vote, id)?,
        }),
        Record::Nft { name, metadata, owner } => {
            let metadata: Value = serde_json::from_str(metadata).unwrap_or(Value::Null);
            json!({"name": name.as_str(), "owner": owner.as_str(), "metadata": metadata})
        }
        Record::AuthoritySet { set } => serde_json::from_str(set).unwrap_or(Value::Null),
        Record::Revoked | Record::TokenUsed => Value::Bool(true),
    })
}

/// How a WebAssembly operation's key or value appears: as text when its bytes are UTF-8
/// and do not begin with `hex:`, otherwise `hex:` and the bytes in lowercase hex.
pub fn shown_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.starts_with("hex:") => text.to_owned(),
        _ => format!("hex:{}", data_encoding::HEXLOWER.encode(bytes)),
    }
}

/// The bytes a [`shown_bytes`] string stands for.
pub fn parse_shown_bytes(shown: &str) -> Option<Vec<u8>> {
    match shown.strip_prefix("hex:") {
        Some(hex) => data_encoding::HEXLOWER.decode(hex.as_bytes()).ok(),
        None => Some(shown.as_bytes().to_vec()),
    }
}

/// One entry as a page of its table shows it: `{"id": ..., ...}`. Records that are not
/// objects in the whole-state form (a handler name, a nonce) are under `value`; a
/// WebAssembly operation's entry also names its `action` and `key`.
pub fn entry_json(state: &dyn StateScan, id: &str, record: &Record) -> Result<Value, StateError> {
    if let (Record::Data { value }, Some((action, key))) = (record, split_wasm_id(id)) {
        return Ok(json!({
            "id": id, "action": action, "key": shown_bytes(&key), "value": shown_bytes(value),
        }));
    }
    let value = value_json(state, id, record)?;
    let mut entry = Map::new();
    entry.insert("id".into(), json!(id));
    match value {
        Value::Object(fields) => entry.extend(fields),
        Value::Null => {}
        other => {
            entry.insert("value".into(), other);
        }
    }
    Ok(Value::Object(entry))
}

/// A record as a proof's `value` shows it: its fields by the names `docs/format.md` gives
/// them, each as it is encoded (text as a string, numbers as integers, a module hash as hex, a
/// module's stored bytes as [`shown_bytes`]), so that a verifier rebuilds the record's bytes
/// from it alone. Records without fields are `{}`.
pub fn record_value(record: &Record) -> Value {
    match record {
        Record::Operation { handler } => json!({"handler": handler.as_str()}),
        Record::WasmOperation { module, fuel } => {
            json!({"handler": crate::WASM_HANDLER, "module": module.to_hex(), "fuel": fuel})
        }
        Record::Wallet { label, key } => json!({"label": label.as_str(), "key": key.as_str()}),
        Record::Nonce { last } => json!({"last": last}),
        Record::Student { name, department } | Record::Course { name, department } => {
            json!({"name": name.as_str(), "department": department.as_str()})
        }
        Record::Proposal { description, votes } => {
            json!({"description": description.as_str(), "votes": votes})
        }
        Record::Nft { name, metadata, owner } => json!({
            "name": name.as_str(), "metadata": metadata.as_str(), "owner": owner.as_str(),
        }),
        Record::Data { value } => json!({"value": shown_bytes(value)}),
        Record::AuthoritySet { set } => json!({"set": set.as_str()}),
        Record::Enrollment | Record::Vote | Record::Revoked | Record::TokenUsed => json!({}),
    }
}

/// The record of `table` that a proof's `value` ([`record_value`]) shows: exactly the
/// table's fields, of their types, and nothing else.
pub fn record_from_value(table: Table, value: &Value) -> Result<Record, String> {
    let Value::Object(fields) = value else {
        return Err("a value is a JSON object".into());
    };
    let text = |name: &str| -> Result<crate::CompactString, String> {
        match fields.get(name) {
            Some(Value::String(s)) => Ok(s.as_str().into()),
            Some(_) => Err(format!("'{name}' is not a string")),
            None => Err(format!("'{name}' is missing")),
        }
    };
    let number = |name: &str| -> Result<u64, String> {
        fields.get(name).and_then(Value::as_u64).ok_or_else(|| format!("'{name}' is not a u64"))
    };
    let expect = |names: &[&str]| -> Result<(), String> {
        match fields.keys().find(|k| !names.contains(&k.as_str())) {
            Some(extra) => Err(format!(
                "'{}' is not a field of {}",
                swarmvm_primitives::text::shown(extra),
                table.name()
            )),
            None => Ok(()),
        }
    };
    let record = match table {
        Table::Operation => {
            let handler = text("handler")?;
            if handler == crate::WASM_HANDLER {
                expect(&["handler", "module", "fuel"])?;
                let module = text("module")?
                    .parse()
                    .map_err(|_| "'module' is not 64 lowercase hex characters".to_owned())?;
                Record::WasmOperation { module, fuel: number("fuel")? }
            } else {
                expect(&["handler"])?;
                Record::Operation { handler }
            }
        }
        Table::Wallet => {
            expect(&["label", "key"])?;
            Record::Wallet { label: text("label")?, key: text("key")? }
        }
        Table::Nonce => {
            expect(&["last"])?;
            Record::Nonce { last: number("last")? }
        }
        Table::Student | Table::Course => {
            expect(&["name", "department"])?;
            let (name, department) = (text("name")?, text("department")?);
            if table == Table::Student {
                Record::Student { name, department }
            } else {
                Record::Course { name, department }
            }
        }
        Table::Proposal => {
            expect(&["description", "votes"])?;
            Record::Proposal { description: text("description")?, votes: number("votes")? }
        }
        Table::Nft => {
            expect(&["name", "metadata", "owner"])?;
            Record::Nft { name: text("name")?, metadata: text("metadata")?, owner: text("owner")? }
        }
        Table::Wasm => {
            expect(&["value"])?;
            let value = parse_shown_bytes(&text("value")?)
                .ok_or_else(|| "'value' is \"hex:\" and not lowercase hex".to_owned())?;
            Record::Data { value: value.into() }
        }
        Table::Authority => {
            expect(&["set"])?;
            Record::AuthoritySet { set: text("set")? }
        }
        Table::Enrollment | Table::Vote | Table::Revocation | Table::Token => {
            expect(&[])?;
            match table {
                Table::Enrollment => Record::Enrollment,
                Table::Vote => Record::Vote,
                Table::Revocation => Record::Revoked,
                _ => Record::TokenUsed,
            }
        }
    };
    Ok(record)
}

/// A page of `table`: at most `limit` entries with ids above `after`, and the id to ask
/// after for the next page (`None` at the end).
pub fn page(
    state: &dyn StateScan,
    table: Table,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<Value>, Option<String>), StateError> {
    let mut rows = Vec::with_capacity(limit.min(1024));
    let mut more = false;
    state.scan(table, after, &mut |id, record| {
        if rows.len() == limit {
            more = true;
            return false;
        }
        rows.push((id.to_owned(), record));
        true
    })?;
    let next = if more { rows.last().map(|(id, _)| id.clone()) } else { None };
    let entries = rows
        .iter()
        .map(|(id, record)| entry_json(state, id, record))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((entries, next))
}

/// Writes the whole state as one JSON object — `operations`, `wallets`, `nonces`, `students`
/// (each with its `courses`), `courses`, `proposals` (with `votes` and `voters`), `nfts`
/// (with their `owner` and parsed `metadata`), `authorities` (the set in force under `set`,
/// once one is stored), `revocations` (`wallet/ID` and `action/NAME`: true), `tokens` (the
/// applied registration tokens' `jti`: true) and `wasm` (action → key → value, see
/// [`shown_bytes`]) — then the members of `extra`, reading the state entry by entry as it
/// goes.
pub fn write_state_json(
    state: &dyn StateScan,
    extra: &Map<String, Value>,
    out: &mut dyn Write,
) -> Result<(), ViewError> {
    out.write_all(b"{")?;
    for (i, table) in SHOWN.into_iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write!(out, "{}:{{", json!(table.name()))?;
        let mut first = true;
        scan_writing(state, table, &mut |id, record| {
            let value = value_json(state, id, &record)?;
            if !first {
                out.write_all(b",")?;
            }
            first = false;
            write!(out, "{}:{}", json!(id), value)?;
            Ok(())
        })?;
        out.write_all(b"}")?;
    }
    write_wasm_json(state, out)?;
    for (name, value) in extra {
        write!(out, ",{}:{}", json!(name), value)?;
    }
    out.write_all(b"}")?;
    Ok(())
}

/// Scans `table` entry by entry with `f`, which writes; the first error it returns stops
/// the scan and is returned.
fn scan_writing(
    state: &dyn StateScan,
    table: Table,
    f: &mut dyn FnMut(&str, Record) -> Result<(), ViewError>,
) -> Result<(), ViewError> {
    let mut failed = None;
    state.scan(table, None, &mut |id, record| match f(id, record) {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    })?;
    failed.map_or(Ok(()), Err)
}

/// `,"wasm":{ACTION:{KEY:VALUE,...},...}`: an action's entries are contiguous in id order,
/// since action names hold no `/`.
fn write_wasm_json(state: &dyn StateScan, out: &mut dyn Write) -> Result<(), ViewError> {
    out.write_all(br#","wasm":{"#)?;
    let mut current: Option<String> = None;
    scan_writing(state, Table::Wasm, &mut |id, record| {
        let (Some((action, key)), Record::Data { value }) = (split_wasm_id(id), &record) else {
            return Ok(());
        };
        let written = (|| -> std::io::Result<()> {
            match &current {
                Some(a) if a == action => out.write_all(b",")?,
                Some(_) => write!(out, "}},{}:{{", json!(action))?,
                None => write!(out, "{}:{{", json!(action))?,
            }
            write!(out, "{}:{}", json!(shown_bytes(&key)), json!(shown_bytes(value)))
        })();
        if current.as_deref() != Some(action) {
            current = Some(action.to_owned());
        }
        Ok(written?)
    })?;
    if current.is_some() {
        out.write_all(b"}")?;
    }
    out.write_all(b"}")?;
    Ok(())
}

impl MemoryState {
    /// The whole state as one JSON object (see [`write_state_json`]).
    pub fn to_json(&self) -> Value {
        let mut bytes = Vec::new();
        match write_state_json(self, &Map::new(), &mut bytes) {
            Ok(()) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{Contract, Machine};

    fn machine() -> Machine {
        let mut m = Machine::new();
        for h in crate::HANDLER_NAMES {
            m.register_operation(h, h).unwrap();
        }
        m.register_wallet("alice", "peer1", r#"{"kty":"OKP"}"#).unwrap();
        let actions = [
            json!({"action": "register_student", "student": {"id": "S1", "name": "N", "department": "D"}}),
            json!({"action": "register_student", "student": {"id": "S1-", "name": "M", "department": "D"}}),
            json!({"action": "add_course", "course": {"id": "C1", "name": "CN", "department": "D"}}),
            json!({"action": "enroll_student", "student_id": "S1", "course_id": "C1"}),
            json!({"action": "enroll_student", "student_id": "S1-", "course_id": "C1"}),
            json!({"action": "vote_proposal", "proposal": {"id": "P1", "description": "x"}}),
            json!({"action": "generate_nft", "nft": {"id": "N1", "name": "A", "metadata": {"k": [1]}}}),
        ];
        assert!(m.execute(&Contract { signer: "alice", nonce: 5, actions: &actions }).is_applied());
        m
    }

    #[test]
    fn json_view_shows_every_table() {
        let m = machine();
        let v = m.state().to_json();
        assert_eq!(v["students"]["S1"], json!({"name": "N", "department": "D", "courses": ["C1"]}));
        assert_eq!(v["students"]["S1-"]["courses"], json!(["C1"]), "ids that sort across '/'");
        assert_eq!(
            v["proposals"]["P1"],
            json!({"description": "x", "votes": 1, "voters": ["alice"]})
        );
        assert_eq!(v["nfts"]["N1"], json!({"name": "A", "owner": "alice", "metadata": {"k": [1]}}));
        assert_eq!(v["nonces"]["alice"], 5);
        assert_eq!(v["wallets"]["alice"]["label"], "peer1");
        assert_eq!(v["operations"]["add_course"], "add_course");
        assert_eq!(v["courses"]["C1"]["name"], "CN");
    }

    #[test]
    fn pages_walk_a_table_in_order() {
        let m = machine();
        let (first, next) = page(m.state(), Table::Student, None, 1).unwrap();
        assert_eq!(first, [json!({"id": "S1", "name": "N", "department": "D", "courses": ["C1"]})]);
        assert_eq!(next.as_deref(), Some("S1"));
        let (second, next) = page(m.state(), Table::Student, next.as_deref(), 1).unwrap();
        assert_eq!(second[0]["id"], "S1-");
        assert_eq!(next, None, "the last page");
        let (third, next) = page(m.state(), Table::Student, Some("S1-"), 1).unwrap();
        assert!(third.is_empty() && next.is_none());
        let (ops, _) = page(m.state(), Table::Operation, None, 2).unwrap();
        assert_eq!(ops[0], json!({"id": "add_course", "value": "add_course"}));
        let (votes, _) = page(m.state(), Table::Vote, None, 10).unwrap();
        assert_eq!(votes, [json!({"id": "P1/alice"})]);
    }
}
