//! The state commitment: a Merkle radix trie over the entries' storage keys.
//!
//! Each entry contributes its leaf hash (RFC 6962 style, `SHA-256(0x00 || entry)`) at the
//! position of its key (`table tag || id`). The trie is path-compressed: every node but the
//! root holds an entry or branches into at least two children, so its shape — and so the root
//! — depends only on the set of entries, never on the order they were written.
//!
//! How a node's children enter its hash is [`NodeHashing`]: all at once under rules 1 and 2
//! (`SHA-256(0x01 || u32le(len segment) || segment || 0x00 | (0x01 || leaf) || u32le(children)
//! || child hashes in byte order)`), or, from rules 3, as a binary tree split on the bits of
//! their first bytes, so that one entry, or its absence, is proved by the sibling hashes along
//! one path ([`crate::proof`]). The trie of no entries hashes to `SHA-256("")`.
//! `docs/format.md` gives the same definitions.
//!
//! The same trie serves two homes. [`Trie`] holds every node in memory ([`crate::MemoryState`]).
//! [`TrieUpdate`] works over a [`NodeStore`] (the ledger's redb file): it loads only the nodes
//! on the paths of the keys a batch changes, leaves every other subtree as a stub (its
//! segment and hash), and returns the nodes to write and delete. [`root_of_sorted`] computes
//! the root from sorted entries alone, keeping only one path in memory, so a store can be
//! checked against an independent computation.

use sha2::{Digest as _, Sha256};
use swarmvm_primitives::Rules;

use crate::access::StateError;
use crate::hash::{Hash32, NODE_PREFIX, SPLIT_PREFIX};
use crate::state::DecodeError;

/// How a node's children enter its hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NodeHashing {
    /// Rules 1 and 2: every child's hash, in byte order, inside the node's hash.
    Flat,
    /// Rules 3 on: the children as a binary tree ([`children_root`]), committed by one hash.
    #[default]
    Binary,
}

impl NodeHashing {
    /// The hashing a bundle under `rules` is committed with.
    pub fn for_rules(rules: Rules) -> Self {
        if rules.has(Rules::V3) { Self::Binary } else { Self::Flat }
    }

    /// Its number as a ledger records it (1 flat, 2 binary).
    pub fn number(self) -> u64 {
        match self {
            Self::Flat => 1,
            Self::Binary => 2,
        }
    }

    /// The hashing numbered `n`.
    pub fn from_number(n: u64) -> Option<Self> {
        match n {
            1 => Some(Self::Flat),
            2 => Some(Self::Binary),
            _ => None,
        }
    }
}

/// The hash joining two subtrees of a node's children that split at bit `depth` (0 the most
/// significant) of their first bytes: `SHA-256(0x02 || u8(depth) || left || right)`.
pub(crate) fn split_hash(depth: u8, left: &Hash32, right: &Hash32) -> Hash32 {
    let mut h = Sha256::new();
    h.update([SPLIT_PREFIX, depth]);
    h.update(left.0);
    h.update(right.0);
    Hash32(h.finalize().into())
}

/// The root of a node's children as a binary tree (rules 3): the children, as (first byte of
/// their segment, hash) in byte order, are split at the first bit where their first bytes
/// differ, those with 0 there on the left, until one child is left, which stands for itself.
/// `None` for no children.
pub fn children_root(children: &[(u8, Hash32)]) -> Option<Hash32> {
    match children {
        [] => None,
        [(_, only)] => Some(*only),
        _ => {
            let (depth, at) = split_point(children);
            let left = children_root(&children[..at])?;
            let right = children_root(&children[at..])?;
            Some(split_hash(depth, &left, &right))
        }
    }
}

/// Where two or more children in byte order split: the first bit (0 the most significant) at
/// which the first bytes of the first and the last differ, and the index of the first child
/// with a 1 there.
pub(crate) fn split_point(children: &[(u8, Hash32)]) -> (u8, usize) {
    let (first, last) = (children[0].0, children[children.len() - 1].0);
    let depth = (first ^ last).leading_zeros().min(7) as u8;
    let bit = 0x80u8 >> depth;
    (depth, children.partition_point(|(b, _)| b & bit == 0))
}

/// A node as a store keeps it, under its full path (the key bytes from the root to it): the
/// leaf ending here, and each child's segment (the key bytes from here to it) with its hash.
/// A node's own segment is in its parent's entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredNode {
    /// The leaf hash of the entry whose key ends here.
    pub value: Option<Hash32>,
    /// Children in order of their segment's first byte: segment and hash.
    pub children: Vec<(Box<[u8]>, Hash32)>,
}

impl StoredNode {
    /// Appends the encoding: `0x00 | (0x01 || leaf)`, `u32le(children)`, and per child
    /// `u16le(len segment) || segment || hash`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match &self.value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                out.extend_from_slice(v.as_bytes());
            }
        }
        out.extend_from_slice(
            &u32::try_from(self.children.len()).unwrap_or(u32::MAX).to_le_bytes(),
        );
        for (segment, hash) in &self.children {
            out.extend_from_slice(&u16::try_from(segment.len()).unwrap_or(u16::MAX).to_le_bytes());
            out.extend_from_slice(segment);
            out.extend_from_slice(hash.as_bytes());
        }
    }

    /// Decodes exactly `bytes`.
    pub fn decode(mut bytes: &[u8]) -> Result<Self, DecodeError> {
        fn take<'b>(bytes: &mut &'b [u8], n: usize) -> Result<&'b [u8], DecodeError> {
            if bytes.len() < n {
                return Err(DecodeError::new("truncated trie node"));
            }
            let (head, tail) = bytes.split_at(n);
            *bytes = tail;
            Ok(head)
        }
        let hash = |b: &[u8]| Hash32::from_slice(b).map_err(|_| DecodeError::new("bad hash"));
        let value = match take(&mut bytes, 1)?[0] {
            0 => None,
            1 => Some(hash(take(&mut bytes, 32)?)?),
            _ => return Err(DecodeError::new("bad trie node flag")),
        };
        let n = u32::from_le_bytes(take(&mut bytes, 4)?.try_into().unwrap_or_default());
        let mut children = Vec::with_capacity((n as usize).min(256));
        for _ in 0..n {
            let len = u16::from_le_bytes(take(&mut bytes, 2)?.try_into().unwrap_or_default());
            let segment: Box<[u8]> = take(&mut bytes, usize::from(len))?.into();
            if segment.is_empty() {
                return Err(DecodeError::new("empty child segment"));
            }
            children.push((segment, hash(take(&mut bytes, 32)?)?));
        }
        if !bytes.is_empty() {
            return Err(DecodeError::new("trailing bytes after a trie node"));
        }
        Ok(Self { value, children })
    }

    /// The node's hash when its segment is `segment`.
    pub fn hash(&self, segment: &[u8], hashing: NodeHashing) -> Hash32 {
        node_hash(segment, self.value.as_ref(), &self.child_hashes(), hashing)
    }

    /// The (first byte, hash) of each child, in order.
    pub fn child_hashes(&self) -> Vec<(u8, Hash32)> {
        self.children.iter().map(|(s, h)| (s.first().copied().unwrap_or(0), *h)).collect()
    }
}

/// A node's hash from its segment, the leaf ending at it, and its children as (first byte of
/// their segment, hash) in byte order.
pub(crate) fn node_hash(
    segment: &[u8],
    value: Option<&Hash32>,
    children: &[(u8, Hash32)],
    hashing: NodeHashing,
) -> Hash32 {
    match hashing {
        NodeHashing::Flat => {
            let mut h = node_head(segment, value);
            h.update(u32::try_from(children.len()).unwrap_or(u32::MAX).to_le_bytes());
            for (_, child) in children {
                h.update(child.0);
            }
            Hash32(h.finalize().into())
        }
        NodeHashing::Binary => binary_node_hash(segment, value, children_root(children).as_ref()),
    }
}

/// A node's hash under [`NodeHashing::Binary`], from the root of its children:
/// `SHA-256(0x01 || u32le(len segment) || segment || 0x00 | (0x01 || leaf) || 0x00 | (0x01 ||
/// children root))`.
pub(crate) fn binary_node_hash(
    segment: &[u8],
    value: Option<&Hash32>,
    children: Option<&Hash32>,
) -> Hash32 {
    let mut h = node_head(segment, value);
    match children {
        None => h.update([0]),
        Some(c) => {
            h.update([1]);
            h.update(c.0);
        }
    }
    Hash32(h.finalize().into())
}

/// The hasher fed with what both hashings start with: the prefix, segment and leaf.
fn node_head(segment: &[u8], value: Option<&Hash32>) -> Sha256 {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(u32::try_from(segment.len()).unwrap_or(u32::MAX).to_le_bytes());
    h.update(segment);
    match value {
        None => h.update([0]),
        Some(v) => {
            h.update([1]);
            h.update(v.0);
        }
    }
    h
}

/// Where stored nodes come from, by full path.
pub trait NodeStore {
    /// The node at `path`, if one is stored there.
    fn node(&self, path: &[u8]) -> Result<Option<StoredNode>, StateError>;
}

/// Loads the node at a full path that a parent says exists.
type Load<'l> = &'l mut dyn FnMut(&[u8]) -> Result<StoredNode, StateError>;

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A child: loaded, or a stub known only by its segment and hash.
#[derive(Clone, Debug)]
enum Child {
    Loaded(Node),
    Stub { segment: Box<[u8]>, hash: Hash32 },
}

impl Child {
    fn segment(&self) -> &[u8] {
        match self {
            Self::Loaded(n) => &n.segment,
            Self::Stub { segment, .. } => segment,
        }
    }

    /// The node, loading it from `path` (this child's full path) if it is a stub.
    fn node(&mut self, path: &[u8], load: Load<'_>) -> Result<&mut Node, StateError> {
        if let Self::Stub { segment, hash } = self {
            let stored = load(path)?;
            let mut node = Node::from_stored(segment.clone(), stored);
            node.hash = Some(*hash);
            *self = Self::Loaded(node);
        }
        match self {
            Self::Loaded(n) => Ok(n),
            Self::Stub { .. } => unreachable!("loaded above"),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Node {
    /// The key bytes from the parent to this node; empty only at the root.
    segment: Box<[u8]>,
    /// The leaf hash of the entry whose key ends here.
    value: Option<Hash32>,
    /// Children in order of their segment's first byte.
    children: Vec<Child>,
    /// Cached hash; `None` after any change below (the node is then written again).
    hash: Option<Hash32>,
}

impl Node {
    fn leaf(segment: &[u8], value: Hash32) -> Self {
        Self { segment: segment.into(), value: Some(value), children: Vec::new(), hash: None }
    }

    fn from_stored(segment: Box<[u8]>, stored: StoredNode) -> Self {
        let children = stored
            .children
            .into_iter()
            .map(|(segment, hash)| Child::Stub { segment, hash })
            .collect();
        Self { segment, value: stored.value, children, hash: None }
    }

    fn child_index(&self, byte: u8) -> Result<usize, usize> {
        self.children.binary_search_by_key(&byte, |c| c.segment()[0])
    }

    /// Sets the leaf at `key` (the rest of the key below this node, whose full path is
    /// `path`).
    fn upsert(
        &mut self,
        path: &mut Vec<u8>,
        key: &[u8],
        value: Hash32,
        load: Load<'_>,
    ) -> Result<(), StateError> {
        self.hash = None;
        let Some(&first) = key.first() else {
            self.value = Some(value);
            return Ok(());
        };
        let i = match self.child_index(first) {
            Err(i) => {
                self.children.insert(i, Child::Loaded(Self::leaf(key, value)));
                return Ok(());
            }
            Ok(i) => i,
        };
        let child = &mut self.children[i];
        let segment_len = child.segment().len();
        let common = common_prefix(child.segment(), key);
        let at = path.len();
        path.extend_from_slice(&child.segment()[..common]);
        if common == segment_len {
            let result = child.node(path, load)?.upsert(path, &key[common..], value, load);
            path.truncate(at);
            return result;
        }
        // Split the child: a new node for the shared part, holding the old child (its segment
        // shortened, so its hash changes: it is loaded to be hashed again) and the new leaf,
        // or the new leaf's value itself when the key ends at the split.
        path.extend_from_slice(&child.segment()[common..]);
        let old = child.node(path, load)?;
        old.segment = old.segment[common..].into();
        old.hash = None;
        path.truncate(at);
        let old = std::mem::replace(child, Child::Loaded(Self::default()));
        let Child::Loaded(split) = child else { unreachable!("just set") };
        split.segment = key[..common].into();
        if common == key.len() {
            split.value = Some(value);
            split.children.push(old);
        } else {
            let new = Child::Loaded(Self::leaf(&key[common..], value));
            split.children =
                if key[common] < old.segment()[0] { vec![new, old] } else { vec![old, new] };
        }
        Ok(())
    }

    /// Removes the leaf at `key`; true if it was there. Nodes that disappear (emptied, or
    /// merged into their only child) have their full paths pushed onto `deleted`.
    fn remove(
        &mut self,
        path: &mut Vec<u8>,
        key: &[u8],
        load: Load<'_>,
        deleted: &mut Vec<Vec<u8>>,
    ) -> Result<bool, StateError> {
        let Some(&first) = key.first() else {
            let had = self.value.take().is_some();
            if had {
                self.hash = None;
            }
            return Ok(had);
        };
        let Ok(i) = self.child_index(first) else { return Ok(false) };
        if !key.starts_with(self.children[i].segment()) {
            return Ok(false);
        }
        let len = self.children[i].segment().len();
        let at = path.len();
        path.extend_from_slice(&key[..len]);
        let child = self.children[i].node(path, load)?;
        if !child.remove(path, &key[len..], load, deleted)? {
            path.truncate(at);
            return Ok(false);
        }
        self.hash = None;
        // Keep the trie compressed: drop an empty child, merge a child left with one child.
        if child.value.is_none() {
            match child.children.len() {
                0 => {
                    deleted.push(path.clone());
                    self.children.remove(i);
                }
                1 => {
                    deleted.push(path.clone());
                    let mut only = child.children.pop().unwrap_or(Child::Stub {
                        segment: Box::default(),
                        hash: Hash32::default(),
                    });
                    path.extend_from_slice(only.segment());
                    let grandchild = only.node(path, load)?;
                    let mut segment = child.segment.to_vec();
                    segment.extend_from_slice(&grandchild.segment);
                    grandchild.segment = segment.into();
                    grandchild.hash = None;
                    self.children[i] = only;
                }
                _ => {}
            }
        }
        path.truncate(at);
        Ok(true)
    }

    /// The hash, computing what changed. With `writes`, every node hashed anew is pushed
    /// onto it (full path, content) to be stored.
    fn flush(
        &mut self,
        path: &mut Vec<u8>,
        hashing: NodeHashing,
        mut writes: Option<&mut Vec<(Vec<u8>, StoredNode)>>,
    ) -> Hash32 {
        if let Some(h) = self.hash {
            return h;
        }
        let mut hashes = Vec::with_capacity(self.children.len());
        for child in &mut self.children {
            match child {
                Child::Stub { segment, hash } => hashes.push((segment[0], *hash)),
                Child::Loaded(node) => {
                    let at = path.len();
                    if writes.is_some() {
                        path.extend_from_slice(&node.segment);
                    }
                    let first = node.segment[0];
                    hashes.push((first, node.flush(path, hashing, writes.as_deref_mut())));
                    path.truncate(at);
                }
            }
        }
        let hash = node_hash(&self.segment, self.value.as_ref(), &hashes, hashing);
        if let Some(writes) = writes {
            let children = self
                .children
                .iter()
                .zip(hashes)
                .map(|(c, (_, h))| (Box::<[u8]>::from(c.segment()), h))
                .collect();
            writes.push((path.clone(), StoredNode { value: self.value, children }));
        }
        self.hash = Some(hash);
        hash
    }

    fn is_empty(&self) -> bool {
        self.value.is_none() && self.children.is_empty()
    }
}

fn no_store(path: &[u8]) -> Result<StoredNode, StateError> {
    Err(StateError::NoStore { path: path.to_vec() })
}

/// A Merkle radix trie of leaf hashes by key, wholly in memory, hashed with
/// [`NodeHashing::Binary`] (its cached hashes are of that hashing).
#[derive(Clone, Debug, Default)]
pub(crate) struct Trie {
    root: Node,
}

impl Trie {
    /// Sets the leaf hash at `key`.
    pub(crate) fn upsert(&mut self, key: &[u8], leaf: Hash32) {
        // Every node is loaded, so nothing is ever read from a store.
        let _ = self.root.upsert(&mut Vec::new(), key, leaf, &mut no_store);
    }

    /// Removes the leaf at `key`.
    pub(crate) fn remove(&mut self, key: &[u8]) {
        let _ = self.root.remove(&mut Vec::new(), key, &mut no_store, &mut Vec::new());
    }

    /// The root hash; `SHA-256("")` when empty.
    pub(crate) fn root(&mut self) -> Hash32 {
        if self.root.is_empty() {
            return Hash32::digest(&[]);
        }
        self.root.flush(&mut Vec::new(), NodeHashing::Binary, None)
    }
}

/// What a [`TrieUpdate`] changed in its store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrieChanges {
    /// The new root hash.
    pub root: Hash32,
    /// Nodes to remove, by full path. Apply these first: a path may be written again.
    pub deletes: Vec<Vec<u8>>,
    /// Nodes to write, by full path.
    pub writes: Vec<(Vec<u8>, StoredNode)>,
}

/// Changes to a trie kept in a [`NodeStore`]: only the nodes on changed paths are loaded.
pub struct TrieUpdate<'s> {
    store: &'s dyn NodeStore,
    hashing: NodeHashing,
    root: Node,
    deleted: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TrieUpdate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrieUpdate").finish_non_exhaustive()
    }
}

impl<'s> TrieUpdate<'s> {
    /// Starts from the trie in `store` (its root node is at the empty path), whose nodes are
    /// hashed with `hashing`.
    pub fn open(store: &'s dyn NodeStore, hashing: NodeHashing) -> Result<Self, StateError> {
        let root = match store.node(&[])? {
            Some(stored) => Node::from_stored(Box::default(), stored),
            None => Node::default(),
        };
        Ok(Self { store, hashing, root, deleted: Vec::new() })
    }

    /// Sets the leaf at `key`, or removes it (`None`).
    pub fn set(&mut self, key: &[u8], leaf: Option<Hash32>) -> Result<(), StateError> {
        let store = self.store;
        let mut load = |path: &[u8]| {
            store.node(path)?.ok_or_else(|| StateError::MissingNode { path: path.to_vec() })
        };
        let mut path = Vec::new();
        match leaf {
            Some(leaf) => self.root.upsert(&mut path, key, leaf, &mut load),
            None => self.root.remove(&mut path, key, &mut load, &mut self.deleted).map(|_| ()),
        }
    }

    /// The new root and the nodes to delete and write.
    pub fn finish(mut self) -> TrieChanges {
        let mut writes = Vec::new();
        if self.root.is_empty() {
            self.deleted.push(Vec::new());
            return TrieChanges { root: Hash32::digest(&[]), deletes: self.deleted, writes };
        }
        let root = self.root.flush(&mut Vec::new(), self.hashing, Some(&mut writes));
        TrieChanges { root, deletes: self.deleted, writes }
    }
}

/// The root of the trie holding `entries` (storage key, leaf hash), which must come in
/// strictly increasing key order; `None` if they do not. Keeps one path in memory.
pub fn root_of_sorted(
    entries: impl IntoIterator<Item = (Vec<u8>, Hash32)>,
    hashing: NodeHashing,
) -> Option<Hash32> {
    build_sorted(entries, hashing, &mut |_, _| {})
}

/// [`root_of_sorted`], handing every node of the trie to `on_node` (full path, content) as it
/// is finished, children before parents: how a store is filled or checked from its entries.
pub fn build_sorted(
    entries: impl IntoIterator<Item = (Vec<u8>, Hash32)>,
    hashing: NodeHashing,
    on_node: &mut dyn FnMut(&[u8], StoredNode),
) -> Option<Hash32> {
    /// A node whose subtree is still being read: its full path length, the entry ending
    /// here, and its finished children (segment, hash).
    struct Open {
        depth: usize,
        value: Option<Hash32>,
        children: Vec<(Box<[u8]>, Hash32)>,
    }
    fn close(
        stack: &mut Vec<Open>,
        key: &[u8],
        down_to: usize,
        hashing: NodeHashing,
        on_node: &mut dyn FnMut(&[u8], StoredNode),
    ) {
        while stack.last().is_some_and(|n| n.depth > down_to) {
            let Some(node) = stack.pop() else { break };
            let parent_depth = stack.last().map_or(0, |p| p.depth);
            let depth = if parent_depth < down_to {
                // A branch point that no key ends at: a node of its own.
                stack.push(Open { depth: down_to, value: None, children: Vec::new() });
                down_to
            } else {
                parent_depth
            };
            let segment: Box<[u8]> = key[depth..node.depth].into();
            let stored = StoredNode { value: node.value, children: node.children };
            let hash = stored.hash(&segment, hashing);
            on_node(&key[..node.depth], stored);
            if let Some(parent) = stack.last_mut() {
                parent.children.push((segment, hash));
            }
        }
    }
    let mut stack = vec![Open { depth: 0, value: None, children: Vec::new() }];
    let mut previous: Option<Vec<u8>> = None;
    for (key, leaf) in entries {
        let shared = match &previous {
            None => 0,
            Some(p) if p.as_slice() >= key.as_slice() => return None,
            Some(p) => common_prefix(p, &key),
        };
        if let Some(p) = &previous {
            close(&mut stack, p, shared, hashing, on_node);
        }
        if key.is_empty() {
            stack[0].value = Some(leaf);
        } else {
            stack.push(Open { depth: key.len(), value: Some(leaf), children: Vec::new() });
        }
        previous = Some(key);
    }
    let Some(last) = previous else { return Some(Hash32::digest(&[])) };
    close(&mut stack, &last, 0, hashing, on_node);
    let root = stack.pop()?;
    let stored = StoredNode { value: root.value, children: root.children };
    let hash = stored.hash(&[], hashing);
    on_node(&[], stored);
    Some(hash)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::hash::leaf_hash;

    fn keys() -> Vec<Vec<u8>> {
        let mut k: Vec<Vec<u8>> = ["S1", "S10", "S100", "S2", "S", "T", "S1x", "A", "S10y", "S11"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        k.push(vec![4, 0, 255]);
        k.push(vec![4]);
        k
    }

    fn build(order: &[Vec<u8>]) -> Trie {
        let mut t = Trie::default();
        for k in order {
            t.upsert(k, leaf_hash(k));
        }
        t
    }

    #[test]
    fn root_is_independent_of_insertion_order() {
        let k = keys();
        let forward = build(&k).root();
        let mut rev = k.clone();
        rev.reverse();
        assert_eq!(build(&rev).root(), forward);
        let mut rotated = k;
        rotated.rotate_left(5);
        assert_eq!(build(&rotated).root(), forward);
    }

    #[test]
    fn removing_returns_to_the_same_shape() {
        let k = keys();
        let full = build(&k).root();
        for (i, key) in k.iter().enumerate() {
            let mut t = build(&k);
            t.root();
            t.remove(key);
            let without: Vec<Vec<u8>> =
                k.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, k)| k.clone()).collect();
            assert_eq!(t.root(), build(&without).root(), "removing {key:?}");
            assert_ne!(t.root(), full);
            t.upsert(key, leaf_hash(key));
            assert_eq!(t.root(), full, "re-adding {key:?}");
        }
        let mut t = build(&k);
        t.remove(b"nope");
        t.remove(b"S1000");
        assert_eq!(t.root(), full, "removing absent keys changes nothing");
        for key in &k {
            t.remove(key);
        }
        assert_eq!(t.root(), Hash32::digest(&[]));
    }

    #[test]
    fn changing_a_leaf_changes_the_root_and_cached_paths_follow() {
        let k = keys();
        let mut t = build(&k);
        let before = t.root();
        t.upsert(b"S10", leaf_hash(b"other"));
        let changed = t.root();
        assert_ne!(changed, before);
        t.upsert(b"S10", leaf_hash(b"S10"));
        assert_eq!(t.root(), before);
    }

    /// A node store in memory, counting reads.
    #[derive(Default)]
    struct Store {
        nodes: BTreeMap<Vec<u8>, StoredNode>,
        reads: Mutex<usize>,
    }

    impl NodeStore for Store {
        fn node(&self, path: &[u8]) -> Result<Option<StoredNode>, StateError> {
            *self.reads.lock().unwrap() += 1;
            Ok(self.nodes.get(path).cloned())
        }
    }

    impl Store {
        fn apply(&mut self, changes: &[(Vec<u8>, Option<Hash32>)]) -> Hash32 {
            let mut update = TrieUpdate::open(self, NodeHashing::Binary).unwrap();
            for (k, v) in changes {
                update.set(k, *v).unwrap();
            }
            let out = update.finish();
            for path in &out.deletes {
                self.nodes.remove(path);
            }
            for (path, node) in out.writes {
                // A stored node round-trips its encoding.
                let mut bytes = Vec::new();
                node.encode(&mut bytes);
                assert_eq!(StoredNode::decode(&bytes).unwrap(), node);
                self.nodes.insert(path, node);
            }
            out.root
        }

        /// Every stored node is reachable from the root, and only those are stored.
        fn check_reachable(&self) {
            let mut seen = 0;
            let mut stack = vec![Vec::new()];
            while let Some(path) = stack.pop() {
                let Some(node) = self.nodes.get(&path) else {
                    assert!(path.is_empty(), "missing node {path:?}");
                    continue;
                };
                seen += 1;
                for (segment, hash) in &node.children {
                    let mut child = path.clone();
                    child.extend_from_slice(segment);
                    assert_eq!(
                        self.nodes[&child].hash(segment, NodeHashing::Binary),
                        *hash,
                        "hash of {child:?}"
                    );
                    stack.push(child);
                }
            }
            assert_eq!(seen, self.nodes.len(), "unreachable nodes are left in the store");
        }
    }

    /// Pseudo-random keys with shared prefixes.
    fn random_keys(seed: u64, n: usize) -> Vec<Vec<u8>> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let len = (x % 6) as usize;
                let alphabet = b"ab/S1";
                (0..len).map(|i| alphabet[((x >> (i * 3 + 8)) % 5) as usize]).collect()
            })
            .collect()
    }

    #[test]
    fn a_stored_trie_gives_the_in_memory_root_batch_after_batch() {
        for seed in 1..40u64 {
            let keys = random_keys(seed, 60);
            let mut store = Store::default();
            let mut memory = Trie::default();
            let mut present = BTreeMap::new();
            for (round, chunk) in keys.chunks(7).enumerate() {
                let mut changes: BTreeMap<Vec<u8>, Option<Hash32>> = BTreeMap::new();
                for (i, k) in chunk.iter().enumerate() {
                    // Remove about a third of what is there; set the rest.
                    let value = if (i + round) % 3 == 0 && present.contains_key(k) {
                        None
                    } else {
                        Some(leaf_hash(&[k.as_slice(), &[round as u8]].concat()))
                    };
                    changes.insert(k.clone(), value);
                }
                for (k, v) in &changes {
                    match v {
                        Some(v) => {
                            memory.upsert(k, *v);
                            present.insert(k.clone(), *v);
                        }
                        None => {
                            memory.remove(k);
                            present.remove(k);
                        }
                    }
                }
                let changes: Vec<_> = changes.into_iter().collect();
                let root = store.apply(&changes);
                assert_eq!(root, memory.root(), "seed {seed} round {round}");
                assert_eq!(
                    root_of_sorted(
                        present.iter().map(|(k, v)| (k.clone(), *v)),
                        NodeHashing::Binary
                    ),
                    Some(root),
                    "seed {seed} round {round}: from sorted entries"
                );
                store.check_reachable();
            }
        }
    }

    #[test]
    fn an_update_reads_only_the_paths_it_changes() {
        let mut store = Store::default();
        let all: Vec<(Vec<u8>, Option<Hash32>)> = (0..5_000u32)
            .map(|i| (format!("S{i:06}").into_bytes(), Some(leaf_hash(&i.to_le_bytes()))))
            .collect();
        store.apply(&all);
        *store.reads.lock().unwrap() = 0;
        store.apply(&[(b"S004321".to_vec(), Some(leaf_hash(b"new")))]);
        let reads = *store.reads.lock().unwrap();
        assert!(reads <= 8, "{reads} nodes read for one key");
    }

    #[test]
    fn a_store_built_from_sorted_entries_is_the_store_updates_make() {
        let entries: BTreeMap<Vec<u8>, Hash32> =
            random_keys(7, 200).into_iter().map(|k| (k.clone(), leaf_hash(&k))).collect();
        let mut updated = Store::default();
        let changes: Vec<_> = entries.iter().map(|(k, v)| (k.clone(), Some(*v))).collect();
        let root = updated.apply(&changes);
        let mut built = BTreeMap::new();
        let r = build_sorted(entries, NodeHashing::Binary, &mut |path, node| {
            assert!(built.insert(path.to_vec(), node).is_none(), "a node twice");
        });
        assert_eq!(r, Some(root));
        assert_eq!(built, updated.nodes);
    }

    #[test]
    fn root_of_sorted_needs_sorted_unique_keys() {
        assert_eq!(root_of_sorted(Vec::new(), NodeHashing::Binary), Some(Hash32::digest(&[])));
        let a = (b"a".to_vec(), leaf_hash(b"a"));
        let b = (b"b".to_vec(), leaf_hash(b"b"));
        assert!(root_of_sorted(vec![a.clone(), b.clone()], NodeHashing::Binary).is_some());
        assert_eq!(root_of_sorted(vec![b, a.clone()], NodeHashing::Flat), None);
        assert_eq!(root_of_sorted(vec![a.clone(), a], NodeHashing::Binary), None);
    }
}
