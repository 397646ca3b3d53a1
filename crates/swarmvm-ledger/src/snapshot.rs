//! State snapshots: the state at one commit as a file a joiner checks, section by section,
//! against a state root before it uses any of it.
//!
//! The file is a sequence of sections, each starting on a multiple of [`SNAPSHOT_PIECE`] (the
//! piece length of the torrent that carries it, so a chunk is whole pieces):
//!
//! ```text
//! section = "SVS1" || u8(kind) || u32le(len body) || body || zeros to the next piece boundary
//! header  (kind 1, first): state root (32)
//!           || u32le(n) || n × (u16le(len path) || path || u32le(len node) || node)
//!           || u32le(n) || n × entry           (the entries ending at those nodes)
//!           || u32le(n) || n × module hash     (every module the ledger holds, in order)
//!           || u32le(number of chunks)
//! chunk   (kind 2): u32le(n) || n × (u16le(len path) || path || u32le(m) || m × entry)
//! module  (kind 3): its SHA-256 (32) || its bytes
//! entry   = u16le(len key) || key || u32le(len record) || record
//! ```
//!
//! The header's nodes are the top of the state trie (stored-node encoding, full paths in
//! order): every node whose subtree holds more than one chunk's worth of entries. Their children
//! that are not in the header are the chunks' subtrees. A joiner recomputes the root from the
//! header's nodes (each child's hash as its parent states it, each header node's hash computed)
//! and compares it with the signed root: that fixes the path, segment and hash of every
//! subtree. Each chunk is then checked by hashing its entries into the subtrees it claims,
//! before anything of it is written; a module by its SHA-256. The layout is a function of the
//! state (the trie's shape and the entries) and of the modules the chain carried, which every
//! node of the chain holds alike, so every node at one seq builds the same bytes and the same
//! torrent. `docs/format.md` ("Snapshots") says the
//! same.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use redb::{ReadableTable as _, ReadableTableMetadata as _, WriteTransaction};
use swarmvm_bundle::BundlePosition;
use swarmvm_primitives::{BundleId, Rules};
use swarmvm_vm::{
    Hash32, NodeHashing, NodeStore as _, Record, StoredNode, Table, build_sorted, decode_key,
    entry_leaf,
};

use crate::codec::Stored as _;
use crate::error::{ReadError, corrupt, storage};
use crate::ledger::Ledger;
use crate::reader::Snapshot;
use crate::record::BundleRecord;
use crate::store::{
    BUNDLES, HEADS, META, META_BUNDLE_IAT, META_BUNDLE_ID, META_BUNDLE_RULES, META_BUNDLE_SEQ,
    META_NETWORK, META_NODE_HASHING, META_ROOT, META_SNAPSHOT_ROOT, META_SNAPSHOT_SEQ, MODULES,
    STATE, TRIE, TrieTable, read_head,
};

/// The piece length of a snapshot's torrent; every section starts on a multiple of it.
pub const SNAPSHOT_PIECE: usize = 256 * 1024;
const MAGIC: &[u8; 4] = b"SVS1";
const KIND_HEADER: u8 = 1;
const KIND_CHUNK: u8 = 2;
const KIND_MODULE: u8 = 3;
const SECTION_HEAD: usize = 9;
/// A subtree that takes at most this many bytes ([`cost`]) goes whole into one chunk, and a
/// chunk holds at most this many bytes of subtrees unless one subtree alone is larger (a
/// single entry larger than a piece): a chunk is one piece.
const CHUNK_BUDGET: usize = SNAPSHOT_PIECE - SECTION_HEAD - 4;
/// The largest section read: far above any header or module a state can need.
const MAX_SECTION: usize = 64 * 1024 * 1024;
/// The longest path in a header or a chunk (keys are at most about 600 bytes).
const MAX_PATH: usize = 1024;
/// The largest header read: far above the top of the trie of any state (a million entries
/// need a few KiB).
const MAX_HEADER: usize = 32 * 1024 * 1024;

/// What a snapshot file holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotInfo {
    /// The state root it proves to.
    pub state_root: Hash32,
    /// Its size in bytes (whole pieces).
    pub bytes: u64,
    /// State entries.
    pub entries: u64,
    /// Chunk sections.
    pub chunks: u32,
    /// Modules carried.
    pub modules: u32,
}

/// Why a snapshot could not be made or was not installed. Installing writes nothing unless
/// every section checked out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The snapshot's bytes are not a state with the expected root (a corrupt or hostile
    /// snapshot): the section and why.
    #[error("snapshot refused at {at}: {why}")]
    Refused {
        /// Which section (`header`, `chunk 3`, `module 1`, `end`).
        at: String,
        /// Why.
        why: String,
    },
    /// Only an empty ledger takes a snapshot.
    #[error("the ledger is not empty (last seq {0}); a snapshot starts an empty one")]
    NotEmpty(u64),
    /// Snapshots cover states hashed with rules 3's binary node hashing.
    #[error("snapshots need rules 3 or later (binary node hashing); this state is hashed flat")]
    FlatHashing,
    /// Reading the snapshot's bytes failed.
    #[error("cannot read the snapshot: {0}")]
    Io(#[from] std::io::Error),
    /// Reading or writing the ledger failed.
    #[error(transparent)]
    Ledger(#[from] ReadError),
}

impl swarmvm_primitives::Classify for SnapshotError {
    fn class(&self) -> swarmvm_primitives::ErrorClass {
        match self {
            Self::Refused { .. } | Self::NotEmpty(_) | Self::FlatHashing => {
                swarmvm_primitives::ErrorClass::Refused
            }
            Self::Io(_) | Self::Ledger(_) => swarmvm_primitives::ErrorClass::Failed,
        }
    }
}

fn refused(at: impl Into<String>, why: impl Into<String>) -> SnapshotError {
    SnapshotError::Refused { at: at.into(), why: why.into() }
}

/// The bytes an entry takes in a chunk.
fn entry_len(key: &[u8], record: &[u8]) -> usize {
    2 + key.len() + 4 + record.len()
}

fn put_entry(out: &mut Vec<u8>, key: &[u8], record: &[u8]) {
    out.extend_from_slice(&u16::try_from(key.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&u32::try_from(record.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(record);
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// Writes one section and its padding; returns the bytes written.
fn write_section(out: &mut dyn Write, kind: u8, body: &[u8]) -> std::io::Result<u64> {
    out.write_all(MAGIC)?;
    out.write_all(&[kind])?;
    out.write_all(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes())?;
    out.write_all(body)?;
    let used = SECTION_HEAD + body.len();
    let padded = used.div_ceil(SNAPSHOT_PIECE) * SNAPSHOT_PIECE;
    out.write_all(&vec![0u8; padded - used])?;
    Ok(padded as u64)
}

/// A subtree planned into a chunk: its full path and the bytes its entries take.
struct Part {
    path: Vec<u8>,
    bytes: usize,
}

/// The bytes a subtree takes in a chunk: its path, its count and its entries.
fn cost(part: &Part) -> usize {
    2 + part.path.len() + 4 + part.bytes
}

impl Snapshot {
    /// Writes this commit's state as a snapshot file (the layout in this module's docs).
    pub fn write_snapshot(&self, out: &mut dyn Write) -> Result<SnapshotInfo, SnapshotError> {
        if self.node_hashing() != NodeHashing::Binary {
            return Err(SnapshotError::FlatHashing);
        }
        let txn = self.transaction();
        let state = txn.open_table(STATE).map_err(storage)?;
        let trie = TrieTable(txn.open_table(TRIE).map_err(storage)?);
        let subtree_bytes = |prefix: &[u8]| -> Result<usize, ReadError> {
            let mut bytes = 0;
            for row in state.range::<&[u8]>(prefix..).map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                if !k.value().starts_with(prefix) {
                    break;
                }
                bytes += entry_len(k.value(), v.value());
            }
            Ok(bytes)
        };
        // The plan: header nodes, top down, and the subtrees below them, in key order.
        let mut skeleton: Vec<(Vec<u8>, StoredNode)> = Vec::new();
        let mut parts: Vec<Part> = Vec::new();
        let total = subtree_bytes(&[])?;
        if total > 0 {
            let mut todo = vec![Part { path: Vec::new(), bytes: total }];
            while let Some(part) = todo.pop() {
                let node = trie.node(&part.path).map_err(|e| corrupt(e.to_string()))?;
                let node = node.ok_or_else(|| corrupt("a trie node is missing"))?;
                if cost(&part) <= CHUNK_BUDGET || node.children.is_empty() {
                    parts.push(part);
                    continue;
                }
                let mut children = Vec::with_capacity(node.children.len());
                for (segment, _) in &node.children {
                    let mut path = part.path.clone();
                    path.extend_from_slice(segment);
                    let bytes = subtree_bytes(&path)?;
                    children.push(Part { path, bytes });
                }
                // Depth first, in key order: the last pushed is taken first.
                todo.extend(children.into_iter().rev());
                skeleton.push((part.path, node));
            }
        }
        let mut chunks: Vec<Vec<Part>> = Vec::new();
        let mut size = 0;
        for part in parts {
            let cost = cost(&part);
            if chunks.last().is_none_or(|c| !c.is_empty() && size + cost > CHUNK_BUDGET) {
                chunks.push(Vec::new());
                size = 0;
            }
            size += cost;
            if let Some(chunk) = chunks.last_mut() {
                chunk.push(part);
            }
        }
        // Every module the chain carried (bundles may name any of them again without its
        // bytes), by hash; the same on every node of the chain.
        let mut modules = Vec::new();
        for row in txn.open_table(MODULES).map_err(storage)?.iter().map_err(storage)? {
            let (k, _) = row.map_err(storage)?;
            modules.push(Hash32::from_slice(k.value()).map_err(corrupt)?);
        }

        let mut header = Vec::new();
        header.extend_from_slice(self.state_root().as_bytes());
        put_u32(&mut header, skeleton.len());
        let mut encoded = Vec::new();
        for (path, node) in &skeleton {
            header.extend_from_slice(&u16::try_from(path.len()).unwrap_or(u16::MAX).to_le_bytes());
            header.extend_from_slice(path);
            encoded.clear();
            node.encode(&mut encoded);
            put_u32(&mut header, encoded.len());
            header.extend_from_slice(&encoded);
        }
        let valued: Vec<&Vec<u8>> =
            skeleton.iter().filter(|(_, n)| n.value.is_some()).map(|(p, _)| p).collect();
        put_u32(&mut header, valued.len());
        let mut entries = 0u64;
        for path in valued {
            let record = state.get(path.as_slice()).map_err(storage)?;
            let record = record.ok_or_else(|| corrupt("a trie leaf has no entry"))?;
            put_entry(&mut header, path, record.value());
            entries += 1;
        }
        put_u32(&mut header, modules.len());
        for m in &modules {
            header.extend_from_slice(m.as_bytes());
        }
        put_u32(&mut header, chunks.len());
        let mut bytes = write_section(out, KIND_HEADER, &header)?;

        let mut body = Vec::with_capacity(SNAPSHOT_PIECE);
        for chunk in &chunks {
            body.clear();
            put_u32(&mut body, chunk.len());
            for part in chunk {
                body.extend_from_slice(
                    &u16::try_from(part.path.len()).unwrap_or(u16::MAX).to_le_bytes(),
                );
                body.extend_from_slice(&part.path);
                let count_at = body.len();
                put_u32(&mut body, 0);
                let mut count = 0usize;
                for row in state.range::<&[u8]>(part.path.as_slice()..).map_err(storage)? {
                    let (k, v) = row.map_err(storage)?;
                    if !k.value().starts_with(&part.path) {
                        break;
                    }
                    put_entry(&mut body, k.value(), v.value());
                    count += 1;
                }
                body[count_at..count_at + 4]
                    .copy_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
                entries += count as u64;
            }
            bytes += write_section(out, KIND_CHUNK, &body)?;
        }
        let table = txn.open_table(MODULES).map_err(storage)?;
        for m in &modules {
            let module = table.get(m.as_bytes()).map_err(storage)?;
            let module = module.ok_or_else(|| corrupt(format!("module {m} is not stored")))?;
            body.clear();
            body.extend_from_slice(m.as_bytes());
            body.extend_from_slice(module.value());
            bytes += write_section(out, KIND_MODULE, &body)?;
        }
        out.flush()?;
        Ok(SnapshotInfo {
            state_root: self.state_root(),
            bytes,
            entries,
            chunks: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
            modules: u32::try_from(modules.len()).unwrap_or(u32::MAX),
        })
    }
}

/// What a snapshot is installed as: the chain position its state is the state after, taken
/// from signed sources (a head that names the snapshot, and the manifest of its seq).
#[derive(Debug, Clone)]
pub struct SnapshotTarget {
    /// The network.
    pub network: String,
    /// The state root the snapshot must prove to.
    pub state_root: Hash32,
    /// The bundle the state is the state after.
    pub position: BundlePosition,
    /// That bundle's parent.
    pub parent: Option<BundleId>,
    /// That bundle's manifest (JWS).
    pub manifest: String,
    /// A head of that seq, if one is known (kept as the ledger keeps heads).
    pub head: Option<String>,
}

/// What an installed snapshot held.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstallReport {
    /// The seq the ledger now stands at.
    pub seq: u64,
    /// Its state root.
    pub state_root: Hash32,
    /// Entries installed.
    pub entries: u64,
    /// Chunk sections checked.
    pub chunks: u32,
    /// Modules installed.
    pub modules: u32,
}

/// Reads one section: its kind and body (the padding read and required to be zeros).
fn read_section(input: &mut dyn Read, at: &str) -> Result<(u8, Vec<u8>), SnapshotError> {
    let mut head = [0u8; SECTION_HEAD];
    input.read_exact(&mut head).map_err(|e| short(e, at))?;
    if &head[..4] != MAGIC {
        return Err(refused(at, "not a snapshot section"));
    }
    let len = u32::from_le_bytes([head[5], head[6], head[7], head[8]]) as usize;
    if len > MAX_SECTION {
        return Err(refused(at, format!("a section of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body).map_err(|e| short(e, at))?;
    let used = SECTION_HEAD + len;
    let mut padding = vec![0u8; used.div_ceil(SNAPSHOT_PIECE) * SNAPSHOT_PIECE - used];
    input.read_exact(&mut padding).map_err(|e| short(e, at))?;
    if padding.iter().any(|b| *b != 0) {
        return Err(refused(at, "padding that is not zeros"));
    }
    Ok((head[4], body))
}

fn short(e: std::io::Error, at: &str) -> SnapshotError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        refused(at, "the file ends inside it")
    } else {
        SnapshotError::Io(e)
    }
}

/// A cursor over a section's body.
struct Body<'b> {
    bytes: &'b [u8],
    at: &'b str,
}

impl<'b> Body<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], SnapshotError> {
        if self.bytes.len() < n {
            return Err(refused(self.at, "truncated"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u16(&mut self) -> Result<usize, SnapshotError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_le_bytes([b[0], b[1]])))
    }
    fn u32(&mut self) -> Result<usize, SnapshotError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn hash(&mut self) -> Result<Hash32, SnapshotError> {
        Hash32::from_slice(self.take(32)?).map_err(|_| refused(self.at, "bad hash"))
    }
    fn path(&mut self) -> Result<&'b [u8], SnapshotError> {
        let n = self.u16()?;
        if n > MAX_PATH {
            return Err(refused(self.at, format!("a path of {n} bytes")));
        }
        self.take(n)
    }
    /// An entry: its key and record, checked to decode, and its leaf hash.
    fn entry(&mut self) -> Result<(&'b [u8], &'b [u8], Hash32), SnapshotError> {
        let key = self.path()?;
        let n = self.u32()?;
        let record = self.take(n)?;
        let (table, id) = decode_key(key).map_err(|e| refused(self.at, e.to_string()))?;
        let decoded = Record::decode(table, record).map_err(|e| refused(self.at, e.to_string()))?;
        Ok((key, record, entry_leaf(table, &id, &decoded)))
    }
    fn end(&self) -> Result<(), SnapshotError> {
        if self.bytes.is_empty() { Ok(()) } else { Err(refused(self.at, "trailing bytes")) }
    }
}

/// The subtrees a header leaves to the chunks: full path → (segment, hash).
type Subtrees = BTreeMap<Vec<u8>, (Box<[u8]>, Hash32)>;

/// Checks the header's nodes against `root`: the subtrees the chunks must fill, by full path,
/// with the segment and hash their parent states. Nothing proportional to the header's claims
/// is kept before the root is checked: a child's path is made only to look it up, and the
/// subtrees are listed only once the nodes proved to be the state's own.
fn subtrees_of(
    nodes: &BTreeMap<Vec<u8>, StoredNode>,
    root: &Hash32,
) -> Result<Subtrees, SnapshotError> {
    let bad = |why: &str| refused("header", why);
    let mut subtrees = BTreeMap::new();
    if nodes.is_empty() {
        if *root != Hash32::digest(&[]) {
            subtrees.insert(Vec::new(), (Box::default(), *root));
        }
        return Ok(subtrees);
    }
    let child_path = |path: &[u8], segment: &[u8]| -> Result<Vec<u8>, SnapshotError> {
        if path.len() + segment.len() > MAX_PATH {
            return Err(bad("a path longer than any key"));
        }
        let mut child = Vec::with_capacity(path.len() + segment.len());
        child.extend_from_slice(path);
        child.extend_from_slice(segment);
        Ok(child)
    };
    for node in nodes.values() {
        let firsts: Vec<u8> =
            node.children.iter().filter_map(|(s, _)| s.first().copied()).collect();
        if firsts.len() != node.children.len() || firsts.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("a node whose children are not in order"));
        }
    }
    // Top down from the root: each header node's segment, as the one parent that reaches it
    // names it.
    let Some((root_path, _)) = nodes.get_key_value(&[][..]) else {
        return Err(bad("no root node"));
    };
    let mut segments: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
    segments.insert(root_path.as_slice(), &[]);
    let mut todo: Vec<&[u8]> = vec![root_path.as_slice()];
    while let Some(path) = todo.pop() {
        for (segment, _) in &nodes[path].children {
            let child = child_path(path, segment)?;
            if let Some((key, _)) = nodes.get_key_value(&child) {
                if segments.insert(key.as_slice(), segment).is_some() {
                    return Err(bad("a node that hangs from two others"));
                }
                todo.push(key.as_slice());
            }
        }
    }
    if segments.len() != nodes.len() {
        return Err(bad("a node that hangs from no other"));
    }
    // Bottom up: every header node hashed from its stored node; a header node's hash must be
    // the one its parent states, and the root's the signed root.
    let mut by_depth: Vec<&[u8]> = segments.keys().copied().collect();
    by_depth.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut computed: BTreeMap<&[u8], Hash32> = BTreeMap::new();
    for path in by_depth {
        let node = &nodes[path];
        for (segment, claimed) in &node.children {
            let child = child_path(path, segment)?;
            if let Some(hash) = computed.get(child.as_slice())
                && hash != claimed
            {
                return Err(bad("a node's hash is not the one its parent states"));
            }
        }
        computed.insert(path, node.hash(segments[path], NodeHashing::Binary));
    }
    let top = computed[&[][..]];
    if top != *root {
        return Err(refused("header", format!("its nodes hash to {top}, not to {root}")));
    }
    // The nodes are the state's own: their other children are the chunks' subtrees.
    for (path, node) in nodes {
        for (segment, hash) in &node.children {
            let child = child_path(path, segment)?;
            if !nodes.contains_key(&child) {
                subtrees.insert(child, (segment.clone(), *hash));
            }
        }
    }
    Ok(subtrees)
}

impl Ledger {
    /// Installs a snapshot into this (empty) ledger as the state after `target.position`,
    /// checking each section against `target.state_root` before any of it is written; all of
    /// it is committed in one transaction, or none of it.
    pub fn install_snapshot(
        &mut self,
        input: &mut dyn Read,
        target: &SnapshotTarget,
    ) -> Result<InstallReport, SnapshotError> {
        if !target.position.rules.has(Rules::V3) {
            return Err(SnapshotError::FlatHashing);
        }
        let db = crate::ledger::write_db(&self.db)?;
        let txn = db.begin_write().map_err(storage)?;
        let head = read_head(&txn.open_table(META).map_err(storage)?)?;
        let empty = txn.open_table(STATE).map_err(storage)?.is_empty().map_err(storage)?;
        if head.last.is_some() || head.log_len > 0 || !empty {
            return Err(SnapshotError::NotEmpty(head.last.map_or(0, |b| b.seq)));
        }
        let report = self.fill_from(input, target, &txn)?;
        txn.commit().map_err(storage)?;
        Ok(report)
    }

    fn fill_from(
        &self,
        input: &mut dyn Read,
        target: &SnapshotTarget,
        txn: &WriteTransaction,
    ) -> Result<InstallReport, SnapshotError> {
        let (kind, body) = read_section(input, "header")?;
        if kind != KIND_HEADER {
            return Err(refused("header", "the first section is not a header"));
        }
        if body.len() > MAX_HEADER {
            return Err(refused("header", format!("{} bytes", body.len())));
        }
        let mut b = Body { bytes: &body, at: "header" };
        let root = b.hash()?;
        if root != target.state_root {
            return Err(refused(
                "header",
                format!("a snapshot of state root {root}, not of {}", target.state_root),
            ));
        }
        let mut nodes = BTreeMap::new();
        for _ in 0..b.u32()? {
            let path = b.path()?.to_vec();
            let n = b.u32()?;
            let node =
                StoredNode::decode(b.take(n)?).map_err(|e| refused("header", e.to_string()))?;
            if nodes.last_key_value().is_some_and(|(last, _)| *last >= path) {
                return Err(refused("header", "nodes out of order"));
            }
            nodes.insert(path, node);
        }
        let mut subtrees = subtrees_of(&nodes, &root)?;
        // The header's nodes are the state's own: they are the top of the trie.
        let mut trie = txn.open_table(TRIE).map_err(storage)?;
        let mut encoded = Vec::new();
        for (path, node) in &nodes {
            encoded.clear();
            node.encode(&mut encoded);
            trie.insert(path.as_slice(), encoded.as_slice()).map_err(storage)?;
        }
        let mut state = txn.open_table(STATE).map_err(storage)?;
        let valued = nodes.iter().filter(|(_, n)| n.value.is_some());
        let count = b.u32()?;
        if count != valued.clone().count() {
            return Err(refused("header", "its entries are not those ending at its nodes"));
        }
        let mut entries = 0u64;
        for (path, node) in valued {
            let (key, record, leaf) = b.entry()?;
            if key != path.as_slice() || Some(leaf) != node.value {
                return Err(refused("header", "an entry that is not the one its node states"));
            }
            state.insert(key, record).map_err(storage)?;
            entries += 1;
        }
        let mut listed = Vec::new();
        for _ in 0..b.u32()? {
            listed.push(b.hash()?);
        }
        let chunks = b.u32()?;
        b.end()?;

        let mut previous: Option<Vec<u8>> = None;
        for i in 1..=chunks {
            let at = format!("chunk {i}");
            let (kind, body) = read_section(input, &at)?;
            if kind != KIND_CHUNK {
                return Err(refused(at, "not a chunk"));
            }
            let mut b = Body { bytes: &body, at: &at };
            let mut rows: Vec<(&[u8], &[u8])> = Vec::new();
            // The trie nodes of the chunk's subtrees, by full path, as the checks computed them.
            let mut below: Vec<(Vec<u8>, StoredNode)> = Vec::new();
            let parts = b.u32()?;
            // Only a chunk of one entry (a leaf larger than a piece) is larger than a piece.
            let large = SECTION_HEAD + body.len() > SNAPSHOT_PIECE;
            if large && parts != 1 {
                return Err(refused(&at, "a chunk larger than a piece holding several subtrees"));
            }
            for _ in 0..parts {
                let path = b.path()?;
                // One encoding per state: subtrees in key order.
                if previous.as_deref().is_some_and(|p| p >= path) {
                    return Err(refused(&at, "subtrees out of order"));
                }
                previous = Some(path.to_vec());
                let Some((segment, expected)) = subtrees.remove(path) else {
                    return Err(refused(&at, "a subtree the header does not name, or named twice"));
                };
                let n = b.u32()?;
                if large && n != 1 {
                    return Err(refused(
                        &at,
                        "a chunk larger than a piece holding several entries",
                    ));
                }
                let mut leaves = Vec::with_capacity(n.min(CHUNK_BUDGET / 8));
                for _ in 0..n {
                    let (key, record, leaf) = b.entry()?;
                    let Some(rest) = key.strip_prefix(path) else {
                        return Err(refused(&at, "an entry outside its subtree"));
                    };
                    leaves.push((rest.to_vec(), leaf));
                    rows.push((key, record));
                }
                let mut found = Vec::new();
                build_sorted(leaves, NodeHashing::Binary, &mut |p, node| {
                    let mut full = path.to_vec();
                    full.extend_from_slice(p);
                    found.push((full, node));
                })
                .ok_or_else(|| refused(&at, "entries out of order"))?;
                // Children come before their parents: the subtree's own node is the last.
                let hash = found.last().map(|(_, n)| n.hash(&segment, NodeHashing::Binary));
                if hash != Some(expected) {
                    return Err(refused(&at, "its entries do not hash to the subtree's hash"));
                }
                below.extend(found);
            }
            b.end()?;
            for (key, record) in rows {
                state.insert(key, record).map_err(storage)?;
                entries += 1;
            }
            for (path, node) in below {
                encoded.clear();
                node.encode(&mut encoded);
                trie.insert(path.as_slice(), encoded.as_slice()).map_err(storage)?;
            }
        }
        if let Some((path, _)) = subtrees.first_key_value() {
            return Err(refused("end", format!("no chunk holds the subtree at {path:02x?}")));
        }
        // The modules: in order, at least those the state's operations name, each by its
        // hash (checked before it is compiled).
        if listed.windows(2).any(|w| w[0] >= w[1]) {
            return Err(refused("header", "its modules are not in order"));
        }
        let mut named = std::collections::BTreeSet::new();
        let ops = [Table::Operation.tag()];
        for row in state.range::<&[u8]>(&ops[..]..).map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            if k.value().first() != Some(&Table::Operation.tag()) {
                break;
            }
            if let Ok(Record::WasmOperation { module, .. }) =
                Record::decode(Table::Operation, v.value())
            {
                named.insert(module);
            }
        }
        drop(state);
        if let Some(missing) = named.iter().find(|m| listed.binary_search(m).is_err()) {
            return Err(refused(
                "header",
                format!("module {missing}, which the state names, is missing"),
            ));
        }
        let mut modules = txn.open_table(MODULES).map_err(storage)?;
        for (i, hash) in listed.iter().enumerate() {
            let at = format!("module {}", i + 1);
            let (kind, body) = read_section(input, &at)?;
            let mut b = Body { bytes: &body, at: &at };
            if kind != KIND_MODULE || b.hash()? != *hash {
                return Err(refused(&at, "not the module the header lists there"));
            }
            let bytes = b.bytes;
            if Hash32::digest(bytes) != *hash {
                return Err(refused(&at, "its bytes do not hash to its hash"));
            }
            let loaded = self.runtime.load(bytes).map_err(|e| refused(&at, e.to_string()))?;
            if loaded != *hash {
                return Err(refused(&at, format!("its bytes hash to {loaded}")));
            }
            modules.insert(hash.as_bytes(), bytes).map_err(storage)?;
        }
        drop(modules);
        let mut more = [0u8; 1];
        if input.read(&mut more)? != 0 {
            return Err(refused("end", "bytes after the last section"));
        }
        drop(trie);
        let mut meta = txn.open_table(META).map_err(storage)?;
        let p = &target.position;
        let put = |meta: &mut redb::Table<'_, &str, &[u8]>, k: &str, v: &[u8]| {
            meta.insert(k, v).map(|_| ()).map_err(storage)
        };
        put(&mut meta, META_NETWORK, target.network.as_bytes())?;
        put(&mut meta, META_ROOT, target.state_root.as_bytes())?;
        put(&mut meta, META_BUNDLE_SEQ, &p.seq.to_le_bytes())?;
        put(&mut meta, META_BUNDLE_ID, p.id.0.as_bytes())?;
        put(&mut meta, META_BUNDLE_IAT, &p.issued_at.to_le_bytes())?;
        put(&mut meta, META_BUNDLE_RULES, &p.rules.number().to_le_bytes())?;
        put(&mut meta, META_NODE_HASHING, &NodeHashing::Binary.number().to_le_bytes())?;
        put(&mut meta, META_SNAPSHOT_SEQ, &p.seq.to_le_bytes())?;
        put(&mut meta, META_SNAPSHOT_ROOT, target.state_root.as_bytes())?;
        drop(meta);
        let record = BundleRecord {
            seq: p.seq,
            id: p.id,
            parent: target.parent,
            issued_at: p.issued_at,
            position: 0,
            manifest: target.manifest.clone(),
        };
        let mut bundles = txn.open_table(BUNDLES).map_err(storage)?;
        bundles.insert(p.seq, record.to_bytes().as_slice()).map_err(storage)?;
        if let Some(head) = &target.head {
            let mut heads = txn.open_table(HEADS).map_err(storage)?;
            heads.insert(p.seq, head.as_str()).map_err(storage)?;
        }
        Ok(InstallReport {
            seq: p.seq,
            state_root: target.state_root,
            entries,
            chunks: u32::try_from(chunks).unwrap_or(u32::MAX),
            modules: u32::try_from(listed.len()).unwrap_or(u32::MAX),
        })
    }
}
