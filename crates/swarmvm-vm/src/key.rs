//! Table keys that compare fast: an id with its first 16 bytes as big-endian integers.
//!
//! Ordering is exactly the bytewise order of the ids (the integer is a coarser view of the
//! same order; ties fall back to the bytes), but most comparisons in a lookup are a single
//! or two integer comparisons instead of a `memcmp` call. Lookups by `&str` go through the
//! `dyn AsKey` borrow, so they allocate nothing.

use std::borrow::Borrow;
use std::cmp::Ordering;

use compact_str::CompactString;

/// The first 16 bytes of `id`, zero-padded, as two big-endian integers (two `u64` rather
/// than one `u128`, whose 16-byte alignment would pad every key by 8 bytes).
#[allow(clippy::big_endian_bytes)] // an ordering key held in memory, never an encoding
fn head(id: &str) -> [u64; 2] {
    let mut buf = [0u8; 16];
    let n = id.len().min(16);
    buf[..n].copy_from_slice(&id.as_bytes()[..n]);
    let (hi, lo) = buf.split_at(8);
    let word = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
    [word(hi), word(lo)]
}

/// An owned key in a table.
#[derive(Clone, Debug)]
pub(crate) struct Key {
    head: [u64; 2],
    id: CompactString,
}

impl Key {
    pub(crate) fn new(id: CompactString) -> Self {
        Self { head: head(&id), id }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.id
    }
}

/// A key to look up with, borrowed from a `&str`.
pub(crate) struct KeyRef<'a> {
    head: [u64; 2],
    id: &'a str,
}

impl<'a> KeyRef<'a> {
    pub(crate) fn new(id: &'a str) -> Self {
        Self { head: head(id), id }
    }
}

/// What owned and borrowed keys share, so maps of [`Key`] can be searched with a [`KeyRef`].
pub(crate) trait AsKey {
    fn head(&self) -> [u64; 2];
    fn bytes(&self) -> &[u8];
}

impl AsKey for Key {
    fn head(&self) -> [u64; 2] {
        self.head
    }
    fn bytes(&self) -> &[u8] {
        self.id.as_bytes()
    }
}

impl AsKey for KeyRef<'_> {
    fn head(&self) -> [u64; 2] {
        self.head
    }
    fn bytes(&self) -> &[u8] {
        self.id.as_bytes()
    }
}

fn compare(a: &(impl AsKey + ?Sized), b: &(impl AsKey + ?Sized)) -> Ordering {
    a.head().cmp(&b.head()).then_with(|| a.bytes().cmp(b.bytes()))
}

impl<'a> Borrow<dyn AsKey + 'a> for Key {
    fn borrow(&self) -> &(dyn AsKey + 'a) {
        self
    }
}

impl Ord for dyn AsKey + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(self, other)
    }
}

impl PartialOrd for dyn AsKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn AsKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for dyn AsKey + '_ {}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(self, other)
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.head == other.head && self.id == other.id
    }
}

impl Eq for Key {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_byte_order() {
        let ids = [
            "",
            "\0",
            "\0\0",
            "S",
            "S\0",
            "S1",
            "S10",
            "S100",
            "S1x",
            "S2",
            "a",
            "aaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaa\0",
            "aaaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaab",
            "aaaaaaaaaaaaaaaab",
            "é",
            "\u{10FFFF}",
        ];
        for a in ids {
            for b in ids {
                let (ka, kb) = (Key::new(a.into()), Key::new(b.into()));
                assert_eq!(ka.cmp(&kb), a.as_bytes().cmp(b.as_bytes()), "{a:?} vs {b:?}");
                let (ra, rb): (&dyn AsKey, &dyn AsKey) = (&KeyRef::new(a), &kb);
                assert_eq!(ra.cmp(rb), a.as_bytes().cmp(b.as_bytes()), "{a:?} vs {b:?} (borrowed)");
            }
        }
    }
}
