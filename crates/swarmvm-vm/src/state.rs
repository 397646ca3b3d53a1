//! The VM's state: typed records in ordered tables, their canonical encoding, and a state
//! held wholly in memory ([`MemoryState`], for tests, benchmarks and fuzzing; a peer's ledger
//! keeps its state in redb and is read as needed).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use compact_str::CompactString;

use crate::access::{ChangeSet, StateError, StateRead, StateScan};
use crate::hash::{Hash32, leaf_hash};
use crate::key::{AsKey, Key, KeyRef};
use crate::trie::Trie;

/// A table of the state. The tag is part of every entry's encoding, so tables never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Table {
    /// Registered operations: action name → handler name.
    Operation = 1,
    /// Registered wallets: wallet id → label and public key.
    Wallet = 2,
    /// Last used nonce per wallet id.
    Nonce = 3,
    /// Students by id.
    Student = 4,
    /// Courses by id.
    Course = 5,
    /// Enrollments, keyed `student_id/course_id`.
    Enrollment = 6,
    /// Proposals by id, with their vote count.
    Proposal = 7,
    /// Votes, keyed `proposal_id/wallet_id`.
    Vote = 8,
    /// NFTs by id, with their owner.
    Nft = 9,
    /// WebAssembly operations' own entries, keyed `action/hex(key)`: each action has its
    /// namespace of byte keys and byte values.
    Wasm = 10,
    /// The authority set in force, under the id `set`, when it is not the one key a
    /// first-version network is named after.
    Authority = 11,
    /// Revoked wallets (`wallet/ID`) and withdrawn actions (`action/NAME`).
    Revocation = 12,
    /// Applied registration tokens by `jti` (or `sha256:HEX` of the payload when a token has
    /// none): a token is applied once.
    Token = 13,
}

impl Table {
    /// Every table, in canonical order.
    pub const ALL: [Self; 13] = [
        Self::Operation,
        Self::Wallet,
        Self::Nonce,
        Self::Student,
        Self::Course,
        Self::Enrollment,
        Self::Proposal,
        Self::Vote,
        Self::Nft,
        Self::Wasm,
        Self::Authority,
        Self::Revocation,
        Self::Token,
    ];

    /// The one-byte tag in encodings.
    pub fn tag(self) -> u8 {
        self as u8
    }

    /// The table with this tag.
    pub fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.tag() == tag)
    }

    /// The table with this name ([`Table::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// A plural name for display (`students`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Operation => "operations",
            Self::Wallet => "wallets",
            Self::Nonce => "nonces",
            Self::Student => "students",
            Self::Course => "courses",
            Self::Enrollment => "enrollments",
            Self::Proposal => "proposals",
            Self::Vote => "votes",
            Self::Nft => "nfts",
            Self::Wasm => "wasm",
            Self::Authority => "authorities",
            Self::Revocation => "revocations",
            Self::Token => "tokens",
        }
    }

    pub(crate) fn index(self) -> usize {
        usize::from(self.tag() - 1)
    }
}

/// One record of the state. Its variant fixes its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An operation bound to a built-in handler.
    Operation {
        /// The catalogue handler the action runs.
        handler: CompactString,
    },
    /// An operation bound to a WebAssembly module (in the operations table too).
    WasmOperation {
        /// The module's SHA-256.
        module: Hash32,
        /// Fuel for each action it runs.
        fuel: u64,
    },
    /// A registered wallet.
    Wallet {
        /// Its label from the registration token.
        label: CompactString,
        /// Its public key as the RFC 7638 thumbprint input (canonical public JWK).
        key: CompactString,
    },
    /// The last nonce a wallet used.
    Nonce {
        /// The nonce.
        last: u64,
    },
    /// A student.
    Student {
        /// Full name.
        name: CompactString,
        /// Department.
        department: CompactString,
    },
    /// A course.
    Course {
        /// Title.
        name: CompactString,
        /// Department.
        department: CompactString,
    },
    /// A student enrolled in a course.
    Enrollment,
    /// A proposal.
    Proposal {
        /// What is proposed.
        description: CompactString,
        /// Votes cast, one per wallet.
        votes: u64,
    },
    /// A wallet's vote on a proposal.
    Vote,
    /// A non-fungible token.
    Nft {
        /// Its name.
        name: CompactString,
        /// Its metadata as canonical JSON (sorted members, no spaces).
        metadata: CompactString,
        /// The owning wallet's id.
        owner: CompactString,
    },
    /// A value a WebAssembly operation stored under one of its keys.
    Data {
        /// The bytes (at most 64 KiB).
        value: Box<[u8]>,
    },
    /// The authority set in force: its canonical JSON,
    /// `{"authorities":[public JWKs by id],"threshold":K}`.
    AuthoritySet {
        /// The canonical JSON text.
        set: CompactString,
    },
    /// A revoked wallet or a withdrawn action.
    Revoked,
    /// An applied registration token.
    TokenUsed,
}

impl Record {
    /// The table this record belongs in.
    pub fn table(&self) -> Table {
        match self {
            Self::Operation { .. } | Self::WasmOperation { .. } => Table::Operation,
            Self::Wallet { .. } => Table::Wallet,
            Self::Nonce { .. } => Table::Nonce,
            Self::Student { .. } => Table::Student,
            Self::Course { .. } => Table::Course,
            Self::Enrollment => Table::Enrollment,
            Self::Proposal { .. } => Table::Proposal,
            Self::Vote => Table::Vote,
            Self::Nft { .. } => Table::Nft,
            Self::Data { .. } => Table::Wasm,
            Self::AuthoritySet { .. } => Table::Authority,
            Self::Revoked => Table::Revocation,
            Self::TokenUsed => Table::Token,
        }
    }

    /// Appends the record's canonical encoding (see `docs/format.md`): strings and byte
    /// strings as a little-endian u32 length and the bytes, numbers as little-endian u64. A
    /// WebAssembly operation is the handler name `wasm`, the module's 32 bytes and the fuel.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Operation { handler } => put_str(out, handler),
            Self::WasmOperation { module, fuel } => {
                put_str(out, WASM_HANDLER);
                out.extend_from_slice(module.as_bytes());
                out.extend_from_slice(&fuel.to_le_bytes());
            }
            Self::Data { value } => put_bytes(out, value),
            Self::Wallet { label, key } => {
                put_str(out, label);
                put_str(out, key);
            }
            Self::Nonce { last } => out.extend_from_slice(&last.to_le_bytes()),
            Self::Student { name, department } | Self::Course { name, department } => {
                put_str(out, name);
                put_str(out, department);
            }
            Self::Enrollment | Self::Vote | Self::Revoked | Self::TokenUsed => {}
            Self::AuthoritySet { set } => put_str(out, set),
            Self::Proposal { description, votes } => {
                put_str(out, description);
                out.extend_from_slice(&votes.to_le_bytes());
            }
            Self::Nft { name, metadata, owner } => {
                put_str(out, name);
                put_str(out, metadata);
                put_str(out, owner);
            }
        }
    }

    /// Decodes a record of `table` from exactly `bytes`.
    pub fn decode(table: Table, bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { bytes };
        let record = match table {
            Table::Operation => {
                let handler = r.string()?;
                if handler == WASM_HANDLER {
                    let module = Hash32::from_slice(r.take(32)?)
                        .map_err(|_| DecodeError("truncated module hash"))?;
                    Self::WasmOperation { module, fuel: r.u64()? }
                } else {
                    Self::Operation { handler }
                }
            }
            Table::Wallet => Self::Wallet { label: r.string()?, key: r.string()? },
            Table::Nonce => Self::Nonce { last: r.u64()? },
            Table::Student => Self::Student { name: r.string()?, department: r.string()? },
            Table::Course => Self::Course { name: r.string()?, department: r.string()? },
            Table::Enrollment => Self::Enrollment,
            Table::Proposal => Self::Proposal { description: r.string()?, votes: r.u64()? },
            Table::Vote => Self::Vote,
            Table::Nft => {
                Self::Nft { name: r.string()?, metadata: r.string()?, owner: r.string()? }
            }
            Table::Wasm => Self::Data { value: r.bytes()?.into() },
            Table::Authority => Self::AuthoritySet { set: r.string()? },
            Table::Revocation => Self::Revoked,
            Table::Token => Self::TokenUsed,
        };
        if !r.bytes.is_empty() {
            return Err(DecodeError("trailing bytes after the record"));
        }
        Ok(record)
    }
}

/// The handler name a WebAssembly operation's record starts with; no built-in handler has it.
pub const WASM_HANDLER: &str = "wasm";

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Every string and value in the state is bounded far below 4 GiB by validation.
    let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

/// Bytes that are not a valid encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt state encoding: {0}")]
pub struct DecodeError(&'static str);

/// Stored bytes that are not a valid encoding: the store is corrupt, the peer's failure.
impl swarmvm_primitives::Classify for DecodeError {
    fn class(&self) -> swarmvm_primitives::ErrorClass {
        swarmvm_primitives::ErrorClass::Failed
    }
}

impl DecodeError {
    pub(crate) fn new(what: &'static str) -> Self {
        Self(what)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| DecodeError("truncated"))?;
        Ok(u64::from_le_bytes(b))
    }

    fn bytes(&mut self) -> Result<&[u8], DecodeError> {
        let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| DecodeError("truncated"))?;
        let len = usize::try_from(u32::from_le_bytes(b)).map_err(|_| DecodeError("too long"))?;
        self.take(len)
    }

    fn string(&mut self) -> Result<CompactString, DecodeError> {
        let bytes = self.bytes()?;
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError("string is not utf-8"))?;
        Ok(CompactString::from(text))
    }
}

/// Appends the canonical encoding of a whole entry: table tag, key, record.
pub fn encode_entry(table: Table, id: &str, record: &Record, out: &mut Vec<u8>) {
    out.push(table.tag());
    put_str(out, id);
    record.encode(out);
}

/// The storage key of an entry: table tag then the id's bytes. Sorting these bytes gives
/// the canonical order.
pub fn encode_key(table: Table, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(table.tag());
    key.extend_from_slice(id.as_bytes());
    key
}

/// Splits a storage key into table and id.
pub fn decode_key(key: &[u8]) -> Result<(Table, String), DecodeError> {
    let (&tag, id) = key.split_first().ok_or(DecodeError("empty key"))?;
    let table = Table::from_tag(tag).ok_or(DecodeError("unknown table tag"))?;
    let id = String::from_utf8(id.to_vec()).map_err(|_| DecodeError("key is not utf-8"))?;
    Ok((table, id))
}

/// Root bookkeeping: the trie of leaf hashes, and the keys written since it was last updated.
#[derive(Clone, Default)]
struct Merkle {
    trie: Trie,
    dirty: Vec<(Table, CompactString)>,
}

/// A whole state in memory: one ordered map per table. Iteration is always in canonical
/// order (table tag, then id bytes), never in hash order. Batches change it through
/// [`MemoryState::apply`]; the root is kept incrementally.
#[derive(Clone, Default)]
pub struct MemoryState {
    tables: [BTreeMap<Key, Record>; Table::ALL.len()],
    /// Updated lazily when a root is asked for, hence the cell.
    merkle: RefCell<Merkle>,
}

impl fmt::Debug for MemoryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("MemoryState");
        for t in Table::ALL {
            s.field(t.name(), &self.tables[t.index()].len());
        }
        s.finish()
    }
}

impl MemoryState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// A state holding `entries` (as loaded from storage). Entries are checked to be in the
    /// table their record names.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (Table, String, Record)>,
    ) -> Result<Self, DecodeError> {
        let mut state = Self::new();
        for (table, id, record) in entries {
            if record.table() != table {
                return Err(DecodeError::new("record does not belong in its table"));
            }
            state.insert(id.into(), record);
        }
        Ok(state)
    }

    /// The record at `id` in `table`.
    pub fn record(&self, table: Table, id: &str) -> Option<&Record> {
        self.tables[table.index()].get(&KeyRef::new(id) as &dyn AsKey)
    }

    /// Number of entries in all tables.
    pub fn len(&self) -> usize {
        self.tables.iter().map(BTreeMap::len).sum()
    }

    /// True when no table has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries of one table in id order.
    pub fn table(&self, table: Table) -> impl Iterator<Item = (&str, &Record)> {
        self.tables[table.index()].iter().map(|(k, r)| (k.as_str(), r))
    }

    /// Every entry in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (Table, &str, &Record)> {
        Table::ALL.into_iter().flat_map(move |t| self.table(t).map(move |(k, r)| (t, k, r)))
    }

    fn touch(&mut self, table: Table, id: &CompactString) {
        self.merkle.get_mut().dirty.push((table, id.clone()));
    }

    fn insert(&mut self, id: CompactString, record: Record) {
        let table = record.table();
        self.touch(table, &id);
        self.tables[table.index()].insert(Key::new(id), record);
    }

    fn remove(&mut self, table: Table, id: &str) {
        if self.tables[table.index()].remove(&KeyRef::new(id) as &dyn AsKey).is_some() {
            self.touch(table, &CompactString::from(id));
        }
    }

    /// Applies a batch's changes.
    pub fn apply(&mut self, changes: &ChangeSet) {
        for (table, id, record) in changes.iter() {
            match record {
                Some(r) => self.insert(id.into(), r.clone()),
                None => self.remove(table, id),
            }
        }
    }

    /// The state root: the root hash of a Merkle radix trie (see `trie.rs` and
    /// `docs/format.md`) holding, at each entry's storage key, the leaf hash of the entry's
    /// canonical encoding. Equal states have equal roots however they were built. Only the
    /// entries written since the last root are hashed again.
    pub fn root(&self) -> Hash32 {
        let mut merkle = self.merkle.borrow_mut();
        let Merkle { trie, dirty } = &mut *merkle;
        dirty.sort_unstable();
        dirty.dedup();
        let mut buf = Vec::with_capacity(256);
        for (table, id) in dirty.drain(..) {
            let key = encode_key(table, &id);
            match self.record(table, &id) {
                Some(record) => {
                    buf.clear();
                    encode_entry(table, &id, record, &mut buf);
                    trie.upsert(&key, leaf_hash(&buf));
                }
                None => trie.remove(&key),
            }
        }
        trie.root()
    }
}

impl MemoryState {
    /// The state root with nodes hashed as `hashing` says: [`MemoryState::root`] for binary
    /// hashing (rules 3 on); for rules 1 and 2's, computed from every entry.
    pub fn root_with(&self, hashing: crate::NodeHashing) -> Hash32 {
        if hashing == crate::NodeHashing::Binary {
            return self.root();
        }
        let mut leaves: Vec<(Vec<u8>, Hash32)> = self
            .iter()
            .map(|(table, id, record)| (encode_key(table, id), entry_leaf(table, id, record)))
            .collect();
        leaves.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        crate::trie::root_of_sorted(leaves, hashing).unwrap_or_default()
    }
}

impl StateRead for MemoryState {
    fn get(&self, table: Table, id: &str) -> Result<Option<Record>, StateError> {
        Ok(self.record(table, id).cloned())
    }
}

impl StateScan for MemoryState {
    fn scan(
        &self,
        table: Table,
        after: Option<&str>,
        f: &mut dyn FnMut(&str, Record) -> bool,
    ) -> Result<(), StateError> {
        use std::ops::Bound;
        let from = after.map(KeyRef::new);
        let start = match &from {
            Some(k) => Bound::Excluded(k as &dyn AsKey),
            None => Bound::Unbounded,
        };
        for (id, record) in
            self.tables[table.index()].range::<dyn AsKey, _>((start, Bound::Unbounded))
        {
            if !f(id.as_str(), record.clone()) {
                break;
            }
        }
        Ok(())
    }

    fn scan_prefix(
        &self,
        table: Table,
        prefix: &str,
        f: &mut dyn FnMut(&str, Record) -> bool,
    ) -> Result<(), StateError> {
        use std::ops::Bound;
        let from = KeyRef::new(prefix);
        let start = Bound::Included(&from as &dyn AsKey);
        for (id, record) in
            self.tables[table.index()].range::<dyn AsKey, _>((start, Bound::Unbounded))
        {
            if !id.as_str().starts_with(prefix) || !f(id.as_str(), record.clone()) {
                break;
            }
        }
        Ok(())
    }
}

/// The leaf hash of an entry: SHA-256(0x00 || tag || string(id) || record).
pub fn entry_leaf(table: Table, id: &str, record: &Record) -> Hash32 {
    let mut buf = Vec::with_capacity(128);
    encode_entry(table, id, record, &mut buf);
    leaf_hash(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        vec![
            Record::Operation { handler: "add_course".into() },
            Record::Wallet { label: "peer1".into(), key: "{\"crv\":\"Ed25519\"}".into() },
            Record::Nonce { last: u64::MAX },
            Record::Student { name: "John Doe".into(), department: "Computer Science".into() },
            Record::Course { name: "Blockchain Technology".into(), department: "CS".into() },
            Record::Enrollment,
            Record::Proposal { description: "Increase Research Funding".into(), votes: 3 },
            Record::Vote,
            Record::Nft { name: "RareArt".into(), metadata: "{}".into(), owner: "w".into() },
        ]
    }

    #[test]
    fn records_round_trip_and_reject_corruption() {
        for record in samples() {
            let mut bytes = Vec::new();
            record.encode(&mut bytes);
            assert_eq!(Record::decode(record.table(), &bytes).unwrap(), record);
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Record::decode(record.table(), &longer).is_err());
            if !bytes.is_empty() {
                assert!(Record::decode(record.table(), &bytes[..bytes.len() - 1]).is_err());
            }
        }
        assert!(Record::decode(Table::Student, &[255, 255, 255, 255]).is_err());
    }

    #[test]
    fn keys_round_trip_and_sort_canonically() {
        let a = encode_key(Table::Wallet, "zzz");
        let b = encode_key(Table::Nonce, "aaa");
        assert!(a < b, "table order first");
        assert_eq!(decode_key(&a).unwrap(), (Table::Wallet, "zzz".to_owned()));
        assert!(decode_key(&[0, b'x']).is_err());
        assert!(decode_key(&[]).is_err());
    }

    #[test]
    fn root_changes_with_any_entry_and_cache_follows_updates() {
        let mut s = MemoryState::new();
        let empty = s.root();
        s.insert("S001".into(), Record::Student { name: "A".into(), department: "B".into() });
        let one = s.root();
        assert_ne!(one, empty);
        s.insert("S001".into(), Record::Student { name: "A".into(), department: "C".into() });
        assert_ne!(s.root(), one, "a replaced record is re-hashed");
        s.insert("S001".into(), Record::Student { name: "A".into(), department: "B".into() });
        assert_eq!(s.root(), one);
        s.remove(Table::Student, "S001");
        assert_eq!(s.root(), empty);
    }
}
