//! The state commitment: a Merkle radix trie over the entries' storage keys.
//!
//! Each entry contributes its leaf hash (RFC 6962 style, `SHA-256(0x00 || entry)`) at the
//! position of its key (`table tag || id`). The trie is path-compressed: every node but the
//! root holds an entry or branches into at least two children, so its shape — and so the root
//! — depends only on the set of entries, never on the order they were written. Node hashes
//! are cached; after a batch of writes only the paths to changed keys are hashed again.
//!
//! A node's hash is `SHA-256(0x01 || u32le(len segment) || segment || 0x00 | (0x01 || leaf)
//! || u32le(children) || child hashes in byte order)`. The trie of no entries hashes to
//! `SHA-256("")`. `docs/format.md` gives the same definition.

use sha2::{Digest as _, Sha256};

use crate::hash::{Hash32, NODE_PREFIX};

#[derive(Clone, Debug, Default)]
struct Node {
    /// The key bytes from the parent to this node; empty only at the root.
    segment: Box<[u8]>,
    /// The leaf hash of the entry whose key ends here.
    value: Option<Hash32>,
    /// Children in order of their segment's first byte.
    children: Vec<Node>,
    /// Cached hash; `None` after any change below.
    hash: Option<Hash32>,
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Node {
    fn leaf(segment: &[u8], value: Hash32) -> Self {
        Self { segment: segment.into(), value: Some(value), children: Vec::new(), hash: None }
    }

    fn child_index(&self, byte: u8) -> Result<usize, usize> {
        self.children.binary_search_by_key(&byte, |c| c.segment[0])
    }

    /// Sets the leaf at `key` (the rest of the key below this node).
    fn upsert(&mut self, key: &[u8], value: Hash32) {
        self.hash = None;
        let Some(&first) = key.first() else {
            self.value = Some(value);
            return;
        };
        let i = match self.child_index(first) {
            Err(i) => {
                self.children.insert(i, Self::leaf(key, value));
                return;
            }
            Ok(i) => i,
        };
        let child = &mut self.children[i];
        let common = common_prefix(&child.segment, key);
        if common == child.segment.len() {
            child.upsert(&key[common..], value);
            return;
        }
        // Split the child: a new node for the shared part, holding the old child's rest and
        // the new leaf (or the new leaf's value itself when the key ends at the split).
        let mut old = std::mem::take(child);
        let split = Self { segment: key[..common].into(), ..Self::default() };
        old.segment = old.segment[common..].into();
        old.hash = None;
        *child = split;
        if common == key.len() {
            child.value = Some(value);
            child.children.push(old);
        } else {
            let new = Self::leaf(&key[common..], value);
            child.children =
                if new.segment[0] < old.segment[0] { vec![new, old] } else { vec![old, new] };
        }
    }

    /// Removes the leaf at `key`; true if it was there.
    fn remove(&mut self, key: &[u8]) -> bool {
        let Some(&first) = key.first() else {
            let had = self.value.take().is_some();
            if had {
                self.hash = None;
            }
            return had;
        };
        let Ok(i) = self.child_index(first) else { return false };
        let child = &mut self.children[i];
        if !key.starts_with(&child.segment) {
            return false;
        }
        let len = child.segment.len();
        if !child.remove(&key[len..]) {
            return false;
        }
        self.hash = None;
        // Keep the trie compressed: drop an empty child, merge a child left with one child.
        if child.value.is_none() {
            match child.children.len() {
                0 => {
                    self.children.remove(i);
                }
                1 => {
                    let mut only = child.children.pop().unwrap_or_default();
                    let mut segment = child.segment.to_vec();
                    segment.extend_from_slice(&only.segment);
                    only.segment = segment.into();
                    only.hash = None;
                    *child = only;
                }
                _ => {}
            }
        }
        true
    }

    fn hash(&mut self) -> Hash32 {
        if let Some(h) = self.hash {
            return h;
        }
        let mut h = Sha256::new();
        h.update([NODE_PREFIX]);
        h.update(u32::try_from(self.segment.len()).unwrap_or(u32::MAX).to_le_bytes());
        h.update(&self.segment);
        match &self.value {
            None => h.update([0]),
            Some(v) => {
                h.update([1]);
                h.update(v.0);
            }
        }
        h.update(u32::try_from(self.children.len()).unwrap_or(u32::MAX).to_le_bytes());
        for child in &mut self.children {
            h.update(child.hash().0);
        }
        let hash = Hash32(h.finalize().into());
        self.hash = Some(hash);
        hash
    }
}

/// A Merkle radix trie of leaf hashes by key.
#[derive(Clone, Debug, Default)]
pub(crate) struct Trie {
    root: Node,
}

impl Trie {
    /// Sets the leaf hash at `key`.
    pub(crate) fn upsert(&mut self, key: &[u8], leaf: Hash32) {
        self.root.upsert(key, leaf);
    }

    /// Removes the leaf at `key`.
    pub(crate) fn remove(&mut self, key: &[u8]) {
        self.root.remove(key);
    }

    /// The root hash; `SHA-256("")` when empty.
    pub(crate) fn root(&mut self) -> Hash32 {
        if self.root.value.is_none() && self.root.children.is_empty() {
            return Hash32::digest(&[]);
        }
        self.root.hash()
    }
}

#[cfg(test)]
mod tests {
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
}
