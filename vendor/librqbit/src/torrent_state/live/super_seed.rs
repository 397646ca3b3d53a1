//! swarmvm patch: super-seeding (BEP 16) for an initial seeder.
//!
//! A super-seeding session that holds the whole torrent sends no bitfield. It shows each peer
//! [`SHOW_AHEAD`] pieces with have messages and shows it another as soon as one of them is
//! no longer outstanding: the peer asked for its last chunk (the seeder then counts the
//! piece as the peer's, since a peer never announces a piece it believes the seeder has), or
//! another peer announced it. Only pieces no peer has (as far as the seeder knows) are
//! shown, those shown least first, so each piece leaves the seeder about once and the peers
//! get everything else from each other; a piece is shown a second time only while nobody
//! has it yet (its first peer left, or is still fetching it at the end of the transfer). A
//! seeder whose link is the slowest in the swarm (the authority's uplink, say) then carries
//! little more than one copy, however many peers fetch.
//!
//! Whether a peer is super-seeded is decided once, when its connection starts ([`helps`]):
//! a torrent of one piece, or one with fewer pieces than the peers that lack them, is seeded
//! to that peer with a normal bitfield.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::type_aliases::BF;

use super::peers::availability::PieceAvailability;

/// Pieces shown to a peer and not yet announced by it, at most.
pub(crate) const SHOW_AHEAD: usize = 4;

/// How long a peer that lacks pieces may go without progress before it is shown pieces other
/// peers have too, at most (for a torrent of [`STALL_FULL_BYTES`] or more).
pub(crate) const STALL: std::time::Duration = std::time::Duration::from_secs(1);
/// The shortest stall, for the smallest torrents.
pub(crate) const MIN_STALL: std::time::Duration = std::time::Duration::from_millis(100);
/// The size from which a torrent's stall is the whole [`STALL`].
pub(crate) const STALL_FULL_BYTES: u64 = 8 * 1024 * 1024;

/// The stall of a torrent of `bytes`: [`STALL`] in proportion to its size up to
/// [`STALL_FULL_BYTES`], and at least [`MIN_STALL`]. A peer that knows only the seeder waits
/// this long for each piece it could have had from another peer; for a bundle of a few
/// hundred KiB (a second of contracts) a whole second was most of the time it took to reach
/// every follower, while the bytes it saves the seeder are few.
pub(crate) fn stall_for(bytes: u64) -> std::time::Duration {
    let full = u64::try_from(STALL.as_micros()).unwrap_or(u64::MAX);
    let scaled = full * bytes.min(STALL_FULL_BYTES) / STALL_FULL_BYTES;
    std::time::Duration::from_micros(scaled).max(MIN_STALL)
}

/// Whether super-seeding a peer that is connecting can help: the torrent has more than one
/// piece, and no fewer pieces than `leechers`, the live peers that lack pieces (the new one
/// included). A lone piece leaves the seeder once per peer whatever is shown, and showing it
/// by a have message makes the peer see the whole torrent in the first have, before it could
/// say it is interested: libtorrent then drops us as an "uninteresting upload-only peer".
/// With fewer pieces than leechers, a late peer would be shown only pieces others already
/// fetch, and could only wait for them.
pub(crate) fn helps(total_pieces: usize, leechers: usize) -> bool {
    total_pieces > 1 && total_pieces >= leechers
}

/// How many times each piece was shown to a peer.
#[derive(Debug)]
pub(crate) struct SuperSeed {
    shown: Box<[AtomicU32]>,
    stall: std::time::Duration,
}

impl SuperSeed {
    /// The state for a torrent of `total_pieces` pieces and `total_bytes` bytes.
    pub fn new(total_pieces: usize, total_bytes: u64) -> Self {
        Self {
            shown: (0..total_pieces).map(|_| AtomicU32::new(0)).collect(),
            stall: stall_for(total_bytes),
        }
    }

    /// How long a peer may go without progress before it is shown pieces others have too
    /// ([`stall_for`] the torrent's size).
    pub fn stall(&self) -> std::time::Duration {
        self.stall
    }

    /// How many pieces shown to a peer have not spread yet: no peer announced them, and the
    /// peer did not have them before.
    pub fn outstanding(
        &self,
        peer_has: &BF,
        shown_to_peer: &BF,
        availability: &PieceAvailability,
    ) -> usize {
        shown_to_peer
            .iter_ones()
            .filter(|p| *p < self.shown.len())
            .filter(|p| !peer_has.get(*p).is_some_and(|b| *b) && availability.get(*p) == 0)
            .count()
    }

    /// Up to `want` pieces to show a peer: ones it does not have and was not shown, and (unless
    /// `relaxed`) that no peer has, those shown least first, from a random place (`start`)
    /// among equals. Counts them as shown. A peer is relaxed once it stalled: it may not be
    /// connected to the peers that have what it lacks (a node that knows only the seeder).
    pub fn pick(
        &self,
        peer_has: &BF,
        shown_to_peer: &BF,
        want: usize,
        availability: &PieceAvailability,
        start: u64,
        relaxed: bool,
    ) -> Vec<usize> {
        let total = self.shown.len();
        if want == 0 || total == 0 {
            return Vec::new();
        }
        let bit = |bf: &BF, p: usize| bf.get(p).is_some_and(|b| *b);
        let offset = (start % total as u64) as usize;
        // The `want` best (smallest keys), kept sorted; `want` is small.
        let mut best: Vec<(u32, usize)> = Vec::with_capacity(want + 1);
        for p in (offset..total).chain(0..offset) {
            if bit(peer_has, p) || bit(shown_to_peer, p) || (!relaxed && availability.get(p) > 0)
            {
                continue;
            }
            let key = self.shown[p].load(Ordering::Relaxed);
            if best.len() == want && key >= best[want - 1].0 {
                continue;
            }
            let at = best.partition_point(|(k, _)| *k <= key);
            best.insert(at, (key, p));
            best.truncate(want);
        }
        best.into_iter()
            .map(|(_, p)| {
                self.shown[p].fetch_add(1, Ordering::Relaxed);
                p
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitvec::{bitbox, order::Msb0};

    fn bf(bits: &[usize]) -> BF {
        let mut b: BF = bitbox![u8, Msb0; 0; 16];
        for i in bits {
            b.set(*i, true);
        }
        b
    }

    #[test]
    fn small_torrents_stall_sooner_in_proportion_to_their_size() {
        assert_eq!(stall_for(0), MIN_STALL);
        assert_eq!(stall_for(400 * 1024), MIN_STALL, "a second of contracts");
        assert_eq!(stall_for(STALL_FULL_BYTES / 2), STALL / 2);
        assert_eq!(stall_for(STALL_FULL_BYTES), STALL);
        assert_eq!(stall_for(64 * 1024 * 1024), STALL, "the testbed's bundles keep a second");
    }

    #[test]
    fn a_torrent_of_one_piece_is_never_super_seeded() {
        for leechers in 0..4 {
            assert!(!helps(1, leechers), "{leechers} leechers");
        }
        assert!(!helps(0, 1));
        assert!(helps(2, 1));
    }

    #[test]
    fn a_torrent_of_fewer_pieces_than_leechers_is_not_super_seeded() {
        assert!(helps(3, 1));
        assert!(helps(3, 3), "as many pieces as leechers");
        assert!(!helps(3, 4), "a fourth leecher");
        assert!(helps(256, 64));
    }

    #[test]
    fn each_piece_is_shown_once_before_any_is_shown_twice() {
        let ss = SuperSeed::new(8, 8 * 16384);
        let avail = PieceAvailability::new(8);
        let mut seen = Vec::new();
        // Four peers with nothing, two pieces each: eight different pieces.
        for start in [0u64, 3, 5, 7] {
            seen.extend(ss.pick(&bf(&[]), &bf(&[]), 2, &avail, start, false));
        }
        seen.sort();
        assert_eq!(seen, (0..8).collect::<Vec<_>>());
        // A fifth peer gets pieces shown once, never one it has or was shown.
        let again = ss.pick(&bf(&[0, 1, 2]), &bf(&[3]), 2, &avail, 0, false);
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|p| *p >= 4), "{again:?}");
    }

    #[test]
    fn pieces_some_peer_announced_are_not_shown_and_spread_ones_are_not_outstanding() {
        let ss = SuperSeed::new(6, 6 * 16384);
        let avail = PieceAvailability::new(6);
        for p in [0, 1, 2, 4, 5] {
            avail.add_piece(p);
        }
        // Only piece 3 has not spread: it is shown, and nothing else.
        assert_eq!(ss.pick(&bf(&[]), &bf(&[]), 2, &avail, 0, false), [3]);
        assert_eq!(ss.outstanding(&bf(&[]), &bf(&[3]), &avail), 1);
        // Once a peer announces it, it has spread.
        avail.add_piece(3);
        assert_eq!(ss.outstanding(&bf(&[]), &bf(&[3]), &avail), 0);
        assert!(ss.pick(&bf(&[]), &bf(&[]), 2, &avail, 0, false).is_empty());
        // A stalled peer is shown what others have, least shown first (piece 3 was shown).
        let relaxed = ss.pick(&bf(&[0]), &bf(&[]), 2, &avail, 0, true);
        assert_eq!(relaxed.len(), 2);
        assert!(!relaxed.contains(&0) && !relaxed.contains(&3), "{relaxed:?}");
    }
}
