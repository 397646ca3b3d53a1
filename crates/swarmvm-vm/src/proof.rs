//! Proofs that one entry is in the state, or is not, against a state root (rules 3's binary
//! node hashing): the nodes on the entry's key path from the root, each with the sibling
//! hashes that join its child on the path to its other children.
//!
//! ```text
//! proof = 0x01 || node ...                (no node: the trie is empty)
//! node  = u16le(len segment) || segment   (the root's is empty)
//!      || 0x00 | 0x01 || leaf | 0x02      (no entry ends here | one does | the proved one)
//!      || 0x00 || 0x00 | 0x01 || children root          (the last node)
//!       | 0x01 || u8(n) || n × (u8(depth) || sibling)   (the way down to the next node)
//! ```
//!
//! A proof of presence ends at the node where the key ends (`0x02`: its leaf is the proved
//! entry's). A proof of absence ends where the key leaves the trie: at a node where it ends with
//! no entry, at a node with no children while the key goes on, or at the child the key's next
//! byte leads to when that child's segment is not a prefix of the rest of the key.
//! `docs/format.md` ("Proofs") gives the same definition byte by byte.

use crate::access::StateError;
use crate::hash::Hash32;
use crate::trie::{NodeStore, binary_node_hash, children_root, split_hash, split_point};

/// The proof encoding's version byte.
pub const PROOF_VERSION: u8 = 1;
/// The largest proof read or made: above the largest proof any trie can give for the longest
/// key the state holds (a WebAssembly entry's key is at most about 600 bytes; a node below
/// the root takes at least one key byte and at most 301 bytes besides its segment, so about
/// 181 KiB even for keys chosen to branch at every byte), far below what would cost a verifier.
pub const MAX_PROOF_LEN: usize = 256 * 1024;

/// Why a proof does not prove a claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// It is not a proof.
    #[error("malformed proof: {0}")]
    Malformed(String),
    /// It is well formed but says something else of the key than the claim.
    #[error("the proof {0}")]
    Contradicts(&'static str),
    /// It proves its claim against another root.
    #[error("the proof leads to root {proved}, not to {expected}")]
    OtherRoot {
        /// The root the proof and the claim hash to.
        proved: Hash32,
        /// The root it was checked against.
        expected: Hash32,
    },
}

/// A proof that does not hold is refused (exit 1).
impl swarmvm_primitives::Classify for ProofError {
    fn class(&self) -> swarmvm_primitives::ErrorClass {
        swarmvm_primitives::ErrorClass::Refused
    }
}

fn malformed(what: impl Into<String>) -> ProofError {
    ProofError::Malformed(what.into())
}

/// The proof of the entry at `key` (a storage key), present or absent, from a trie whose
/// nodes `store` holds, hashed with [`crate::NodeHashing::Binary`].
pub fn prove(store: &dyn NodeStore, key: &[u8]) -> Result<Vec<u8>, StateError> {
    let mut out = vec![PROOF_VERSION];
    let Some(mut node) = store.node(&[])? else { return Ok(out) };
    let mut segment: Box<[u8]> = Box::default();
    let mut consumed = 0;
    loop {
        out.extend_from_slice(&u16::try_from(segment.len()).unwrap_or(u16::MAX).to_le_bytes());
        out.extend_from_slice(&segment);
        let rest = &key[consumed..];
        let matched = rest.starts_with(&segment);
        let ends_here = matched && rest.len() == segment.len();
        match (&node.value, ends_here) {
            (Some(_), true) => out.push(2),
            (Some(leaf), false) => {
                out.push(1);
                out.extend_from_slice(leaf.as_bytes());
            }
            (None, _) => out.push(0),
        }
        let next = if matched { rest.get(segment.len()).copied() } else { None };
        let children = node.child_hashes();
        let (Some(byte), false) = (next, children.is_empty()) else {
            // The last node: the key ends here, leaves the trie here, or goes on below a node
            // with no children.
            out.push(0);
            match children_root(&children) {
                None => out.push(0),
                Some(root) => {
                    out.push(1);
                    out.extend_from_slice(root.as_bytes());
                }
            }
            return Ok(out);
        };
        if out.len() > MAX_PROOF_LEN {
            return Err(StateError::corrupt("a proof longer than any trie can give"));
        }
        out.push(1);
        let (splits, index) = path_to(&children, byte);
        out.push(u8::try_from(splits.len()).unwrap_or(u8::MAX));
        for (depth, sibling) in &splits {
            out.push(*depth);
            out.extend_from_slice(sibling.as_bytes());
        }
        consumed += segment.len();
        segment = node.children[index].0.clone();
        if segment.is_empty() {
            return Err(StateError::corrupt("a trie node has a child with an empty segment"));
        }
        let mut path = key[..consumed].to_vec();
        path.extend_from_slice(&segment);
        node = store.node(&path)?.ok_or(StateError::MissingNode { path })?;
    }
}

/// The splits (depth, sibling hash) from the top of a node's children down to the one child
/// the byte `byte` leads to, and that child's index.
fn path_to(children: &[(u8, Hash32)], byte: u8) -> (Vec<(u8, Hash32)>, usize) {
    let mut splits = Vec::new();
    let (mut lo, mut hi) = (0, children.len());
    while hi - lo > 1 {
        let (depth, at) = split_point(&children[lo..hi]);
        let goes_right = byte & (0x80 >> depth) != 0;
        let (ours, theirs) = if goes_right {
            ((lo + at, hi), (lo, lo + at))
        } else {
            ((lo, lo + at), (lo + at, hi))
        };
        let sibling = children_root(&children[theirs.0..theirs.1]).unwrap_or_default();
        splits.push((depth, sibling));
        (lo, hi) = ours;
    }
    (splits, lo)
}

/// One node of a decoded proof.
struct Step<'p> {
    segment: &'p [u8],
    value: Value,
    next: Next,
}

#[derive(Clone, Copy)]
enum Value {
    None,
    Leaf(Hash32),
    Proved,
}

enum Next {
    Last(Option<Hash32>),
    Down(Vec<(u8, Hash32)>),
}

struct Reader<'p>(&'p [u8]);

impl<'p> Reader<'p> {
    fn take(&mut self, n: usize) -> Result<&'p [u8], ProofError> {
        if self.0.len() < n {
            return Err(malformed("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, ProofError> {
        Ok(self.take(1)?[0])
    }

    fn hash(&mut self) -> Result<Hash32, ProofError> {
        Hash32::from_slice(self.take(32)?).map_err(|_| malformed("truncated"))
    }
}

fn decode<'p>(proof: &'p [u8], key: &[u8]) -> Result<Vec<Step<'p>>, ProofError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(malformed(format!("{} bytes, more than {MAX_PROOF_LEN}", proof.len())));
    }
    let mut r = Reader(proof);
    match r.byte()? {
        PROOF_VERSION => {}
        v => return Err(malformed(format!("unknown version {v}"))),
    }
    let mut steps = Vec::new();
    while !r.0.is_empty() {
        // Every node below the root takes at least one byte of the key.
        if steps.len() > key.len() {
            return Err(malformed("more nodes than the key has bytes"));
        }
        let len = u16::from_le_bytes([r.byte()?, r.byte()?]);
        let segment = r.take(usize::from(len))?;
        let value = match r.byte()? {
            0 => Value::None,
            1 => Value::Leaf(r.hash()?),
            2 => Value::Proved,
            b => return Err(malformed(format!("bad value flag {b}"))),
        };
        let next = match r.byte()? {
            0 => Next::Last(match r.byte()? {
                0 => None,
                1 => Some(r.hash()?),
                b => return Err(malformed(format!("bad children flag {b}"))),
            }),
            1 => {
                let n = r.byte()?;
                let mut splits = Vec::with_capacity(usize::from(n.min(8)));
                for _ in 0..n {
                    let depth = r.byte()?;
                    let previous = splits.last().map(|(d, _)| *d);
                    if depth > 7 || previous.is_some_and(|p| depth <= p) {
                        return Err(malformed("split depths are not increasing bits 0 to 7"));
                    }
                    splits.push((depth, r.hash()?));
                }
                Next::Down(splits)
            }
            b => return Err(malformed(format!("bad step flag {b}"))),
        };
        let last = matches!(next, Next::Last(_));
        steps.push(Step { segment, value, next });
        if last {
            if !r.0.is_empty() {
                return Err(malformed("bytes after the last node"));
            }
            break;
        }
    }
    if steps.last().is_some_and(|s| matches!(s.next, Next::Down(_))) {
        return Err(malformed("truncated: it goes down to a node it does not hold"));
    }
    Ok(steps)
}

/// The root that `proof` and the claim hash to: the entry at `key` has leaf hash `leaf`, or
/// (`None`) there is no entry at `key`. Fails when the proof is malformed or says otherwise.
pub fn proof_root(proof: &[u8], key: &[u8], leaf: Option<&Hash32>) -> Result<Hash32, ProofError> {
    let steps = decode(proof, key)?;
    if steps.is_empty() {
        return match leaf {
            None => Ok(Hash32::digest(&[])),
            Some(_) => Err(ProofError::Contradicts("shows an empty state")),
        };
    }
    // Down from the root: check each node against the key; note the byte each way down takes.
    let mut rest = key;
    let mut bytes = Vec::with_capacity(steps.len());
    let mut parent_splits: &[(u8, Hash32)] = &[];
    let mut proved_present = false;
    let count = steps.len();
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == count;
        if i == 0 && !step.segment.is_empty() {
            return Err(malformed("the root has a segment"));
        }
        if i > 0 {
            let (Some(&first), Some(&byte)) = (step.segment.first(), bytes.last()) else {
                return Err(malformed("an empty segment below the root"));
            };
            let byte: u8 = byte;
            if parent_splits.iter().any(|(d, _)| (first ^ byte) & (0x80 >> d) != 0) {
                return Err(malformed("a child that is not where its first byte puts it"));
            }
        }
        let proved = matches!(step.value, Value::Proved);
        if !rest.starts_with(step.segment) {
            // The key leaves the trie inside this node's segment.
            if !last || proved {
                return Err(malformed("the key leaves the trie above the last node"));
            }
            break;
        }
        rest = &rest[step.segment.len()..];
        match &step.next {
            Next::Down(splits) => {
                let Some(&byte) = rest.first() else {
                    return Err(malformed("it goes down below the end of the key"));
                };
                if proved {
                    return Err(malformed("the proved entry above the last node"));
                }
                bytes.push(byte);
                parent_splits = splits.as_slice();
            }
            Next::Last(children) => match (rest.is_empty(), step.value) {
                (true, Value::Proved) => proved_present = true,
                (true, Value::Leaf(_)) => {
                    return Err(ProofError::Contradicts("shows another entry at this key"));
                }
                (true, Value::None) => {}
                (false, Value::Proved) => {
                    return Err(malformed("the proved entry is not at the key"));
                }
                (false, _) if children.is_some() => {
                    return Err(malformed("it stops where the key goes on into children"));
                }
                (false, _) => {}
            },
        }
    }
    let claimed = match (leaf, proved_present) {
        (Some(leaf), true) => Some(*leaf),
        (None, false) => None,
        (Some(_), false) => return Err(ProofError::Contradicts("shows the entry absent")),
        (None, true) => return Err(ProofError::Contradicts("shows the entry present")),
    };
    // Up from the last node: hash each node with the hash of the way below it.
    let mut below: Option<Hash32> = None;
    for (i, step) in steps.iter().enumerate().rev() {
        let value = match step.value {
            Value::None => None,
            Value::Leaf(l) => Some(l),
            Value::Proved => claimed,
        };
        let children = match (&step.next, below) {
            (Next::Last(children), _) => children.to_owned(),
            (Next::Down(splits), Some(mut h)) => {
                let byte = bytes[i];
                for (depth, sibling) in splits.iter().rev() {
                    h = if byte & (0x80 >> depth) == 0 {
                        split_hash(*depth, &h, sibling)
                    } else {
                        split_hash(*depth, sibling, &h)
                    };
                }
                Some(h)
            }
            (Next::Down(_), None) => return Err(malformed("truncated")),
        };
        below = Some(binary_node_hash(step.segment, value.as_ref(), children.as_ref()));
    }
    below.ok_or_else(|| malformed("truncated"))
}

/// Checks that `proof` proves the claim (the entry at `key` has leaf hash `leaf`, or there is
/// none) against `root`.
pub fn verify_proof(
    proof: &[u8],
    key: &[u8],
    leaf: Option<&Hash32>,
    root: &Hash32,
) -> Result<(), ProofError> {
    let proved = proof_root(proof, key, leaf)?;
    if proved != *root {
        return Err(ProofError::OtherRoot { proved, expected: *root });
    }
    Ok(())
}
