//! swarmvm patch: how many live peers have each piece, counted from their bitfields and have
//! messages, so that the picker can take the rarest piece first (see `PATCHED.md`).
//!
//! Every change to a live peer's bitfield goes through [`PieceAvailability`]: a new bitfield
//! replaces the old one's counts, a have message adds one piece, and a peer that leaves the
//! live state takes its counts with it. Counts are atomics, read without a lock by the picker.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::type_aliases::BF;

/// Per-piece counts of live peers that have the piece.
#[derive(Debug)]
pub(crate) struct PieceAvailability {
    counts: Box<[AtomicU32]>,
}

impl PieceAvailability {
    /// Counts for a torrent of `total_pieces` pieces, all zero.
    pub fn new(total_pieces: usize) -> Self {
        Self {
            counts: (0..total_pieces).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Live peers known to have `piece` (0 for an index out of range).
    pub fn get(&self, piece: usize) -> u32 {
        self.counts
            .get(piece)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// A live peer's bitfield: each piece it has counts once more. Bits past the last piece
    /// (padding) are ignored.
    pub fn add_bitfield(&self, bitfield: &BF) {
        for piece in bitfield.iter_ones() {
            self.add_piece(piece);
        }
    }

    /// A live peer's bitfield goes (the peer left, or sent another): each piece it had
    /// counts once less.
    pub fn remove_bitfield(&self, bitfield: &BF) {
        for piece in bitfield.iter_ones() {
            if let Some(c) = self.counts.get(piece) {
                // Never below zero, whatever order updates come in.
                let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
        }
    }

    /// A have message for a piece the peer did not have before.
    pub fn add_piece(&self, piece: usize) {
        if let Some(c) = self.counts.get(piece) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A live peer's have message for `piece`, with `peer_has` its bitfield: sets the piece's
    /// bit and counts the piece once, the first time only, so a peer repeating a have cannot
    /// make a piece look common. `None` for a piece past the end of the torrent (nothing
    /// changes), else whether the piece is new for this peer.
    pub fn record_have(&self, peer_has: &mut BF, piece: usize) -> Option<bool> {
        if piece >= self.counts.len() {
            return None;
        }
        let mut bit = peer_has.get_mut(piece)?;
        if *bit {
            return Some(false);
        }
        *bit = true;
        self.add_piece(piece);
        Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitvec::{bitbox, order::Msb0};

    fn bitfield(bits: &[usize], len: usize) -> BF {
        let mut bf: BF = bitbox![u8, Msb0; 0; len];
        for b in bits {
            bf.set(*b, true);
        }
        bf
    }

    #[test]
    fn bitfields_and_haves_add_and_leaving_peers_subtract() {
        let a = PieceAvailability::new(10);
        a.add_bitfield(&bitfield(&[0, 1, 2], 16));
        a.add_bitfield(&bitfield(&[1, 2, 9], 16));
        a.add_piece(5);
        a.add_piece(2);
        let counts: Vec<u32> = (0..10).map(|p| a.get(p)).collect();
        assert_eq!(counts, [1, 2, 3, 0, 0, 1, 0, 0, 0, 1]);
        a.remove_bitfield(&bitfield(&[0, 1, 2], 16));
        let counts: Vec<u32> = (0..10).map(|p| a.get(p)).collect();
        assert_eq!(counts, [0, 1, 2, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn a_repeated_have_counts_once_and_a_have_past_the_end_changes_nothing() {
        let a = PieceAvailability::new(10);
        let mut peer = bitfield(&[], 16);
        assert_eq!(a.record_have(&mut peer, 4), Some(true));
        for _ in 0..5 {
            assert_eq!(a.record_have(&mut peer, 4), Some(false));
        }
        assert_eq!(a.get(4), 1, "one peer counts once per piece");
        assert!(peer[4]);
        // Piece 12 is a padding bit of the peer's bitfield, 99 is past it: both refused.
        assert_eq!(a.record_have(&mut peer, 12), None);
        assert_eq!(a.record_have(&mut peer, 99), None);
        assert_eq!(peer, bitfield(&[4], 16));
        // A second peer's have counts again; the first peer leaving takes its count away.
        let mut other = bitfield(&[], 16);
        assert_eq!(a.record_have(&mut other, 4), Some(true));
        assert_eq!(a.get(4), 2);
        a.remove_bitfield(&peer);
        assert_eq!(a.get(4), 1);
    }

    #[test]
    fn padding_bits_and_out_of_range_pieces_are_ignored_and_counts_never_go_negative() {
        let a = PieceAvailability::new(10);
        // A bitfield is whole bytes: bits 10..16 are padding a peer may set by mistake.
        a.add_bitfield(&bitfield(&[3, 12, 15], 16));
        a.add_piece(99);
        assert_eq!(a.get(3), 1);
        assert_eq!(a.get(12), 0);
        a.remove_bitfield(&bitfield(&[3, 4], 16));
        a.remove_bitfield(&bitfield(&[3], 16));
        assert_eq!((a.get(3), a.get(4)), (0, 0));
    }
}
