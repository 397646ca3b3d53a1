//! Coordinates piece download state by wrapping ChunkTracker with inflight piece tracking.
//!
//! This module provides the [`PieceTracker`] type which encapsulates the relationship between
//! queued pieces (in ChunkTracker) and in-flight pieces (being downloaded by a peer).
//!
//! The key invariant maintained is: a piece is in exactly one state at any time:
//! - HAVE (completed)
//! - QUEUED (available to download)
//! - IN_FLIGHT (currently being downloaded)
//! - NOT_NEEDED (not selected for download)

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use buffers::ByteBuf;
use librqbit_core::lengths::ValidPieceIndex;
use peer_binary_protocol::Piece;

use crate::{
    chunk_tracker::{ChunkMarkingResult, ChunkTracker},
    file_info::FileInfo,
    type_aliases::{FileInfos, FilePriorities, PeerHandle},
};

/// swarmvm patch: the shortest time a piece is in flight before another peer may take it
/// over (see `try_steal`).
pub const MIN_STEAL_AFTER: Duration = Duration::from_millis(300);

/// swarmvm patch: in the endgame (nothing left queued), a piece in flight this many times
/// longer than the taking peer's average piece time may be taken over.
pub const ENDGAME_TAKE_OVER: f64 = 10.0;

/// Tracks a piece currently being downloaded.
#[derive(Debug, Clone)]
pub struct InflightPiece {
    pub peer: PeerHandle,
    pub started: Instant,
}

/// Result of attempting to acquire a piece.
#[derive(Debug)]
pub enum AcquireResult {
    /// A new piece was reserved from the queue.
    Reserved(ValidPieceIndex),
    /// A piece was stolen from a slower peer.
    Stolen {
        piece: ValidPieceIndex,
        from_peer: PeerHandle,
    },
    /// No pieces are available for this peer.
    NoneAvailable,
}

/// Parameters for acquiring a piece.
pub struct AcquireRequest<'a, I, P, S>
where
    I: Iterator<Item = ValidPieceIndex>,
    P: Fn(ValidPieceIndex) -> bool,
    S: Fn(ValidPieceIndex) -> bool,
{
    /// The peer requesting a piece.
    pub peer: PeerHandle,
    /// The peer's average piece download time (for steal calculations).
    pub peer_avg_time: Option<Duration>,
    /// Priority pieces to check first (e.g., for streaming).
    pub priority_pieces: I,
    /// File download priority ordering.
    pub file_priorities: &'a FilePriorities,
    /// File metadata for iterating pieces.
    pub file_infos: &'a FileInfos,
    /// Returns true if the peer has the given piece.
    pub peer_has_piece: P,
    /// Returns true if the piece can be stolen (e.g., not locked for writing).
    pub can_steal: S,
}

/// Coordinates piece download state.
///
/// Wraps a [`ChunkTracker`] with tracking of which pieces are currently being downloaded
/// (in-flight) and by which peer. This ensures that:
///
/// - A piece is only assigned to one peer at a time (unless stolen)
/// - Pieces are properly requeued when a peer dies
/// - State transitions maintain invariants
pub struct PieceTracker {
    chunks: ChunkTracker,
    inflight: HashMap<ValidPieceIndex, InflightPiece>,
}

impl PieceTracker {
    // === CONSTRUCTION ===

    /// Create a new PieceTracker wrapping the given ChunkTracker.
    pub fn new(chunks: ChunkTracker) -> Self {
        Self {
            chunks,
            inflight: HashMap::new(),
        }
    }

    /// Read-only access to the underlying ChunkTracker.
    pub fn chunks(&self) -> &ChunkTracker {
        &self.chunks
    }

    /// Consume the PieceTracker, requeuing any in-flight pieces.
    ///
    /// This is used when pausing a torrent - any pieces that were being downloaded
    /// need to be put back in the queue so they can be re-downloaded on resume.
    pub fn into_chunks(mut self) -> ChunkTracker {
        // Requeue all in-flight pieces so they'll be re-downloaded on resume
        for piece in self.inflight.into_keys() {
            self.chunks.mark_piece_broken_if_not_have(piece);
        }
        self.chunks
    }

    // === PIECE ACQUISITION ===

    /// Attempt to acquire a piece for the requesting peer.
    ///
    /// The acquisition strategy is:
    /// 1. Try to steal a piece from a peer that's 10x slower
    /// 2. Try to reserve a piece from the queue (priority pieces first)
    /// 3. Try to steal a piece from a peer that's 3x slower
    ///
    /// If `Stolen` is returned, the caller MUST call `peers.on_steal()` to notify
    /// the old peer and update counters.
    // swarmvm patch: the live path calls `acquire_piece_rarest`; upstream's in-order
    // version stays for its tests and as the reference.
    #[allow(dead_code)]
    pub fn acquire_piece<I, P, S>(&mut self, req: AcquireRequest<I, P, S>) -> AcquireResult
    where
        I: Iterator<Item = ValidPieceIndex>,
        P: Fn(ValidPieceIndex) -> bool,
        S: Fn(ValidPieceIndex) -> bool,
    {
        // 1. Try steal with 10x threshold (very slow peer). swarmvm patch: moved here from
        // the shared `acquire`, as upstream's in-order picking alone keeps this rule.
        if let Some(result) = self.try_steal(&req, 10.0) {
            return result;
        }
        self.acquire(req, None::<fn(ValidPieceIndex) -> u32>, 0)
    }

    /// swarmvm patch: [`Self::acquire_piece`] with rarest-first selection. Priority pieces
    /// (streaming) still come first. Among the queued pieces the peer has, the one fewest
    /// live peers have (`availability`) is reserved; equals are taken in an order that starts
    /// at a random place (`start`, any number), so fetchers that start together spread over
    /// different pieces instead of all asking the seeder for piece 0. Endgame: only when no
    /// piece at all is left queued, it takes over an in-flight piece held
    /// [`ENDGAME_TAKE_OVER`] times its own average piece time (upstream takes over at 10x
    /// first and at 3x when nothing is left for this peer); librqbit keeps one owner per
    /// piece, so there are no duplicate requests to cancel.
    pub fn acquire_piece_rarest<I, P, S, A>(
        &mut self,
        req: AcquireRequest<I, P, S>,
        availability: A,
        start: u64,
    ) -> AcquireResult
    where
        I: Iterator<Item = ValidPieceIndex>,
        P: Fn(ValidPieceIndex) -> bool,
        S: Fn(ValidPieceIndex) -> bool,
        A: Fn(ValidPieceIndex) -> u32,
    {
        self.acquire(req, Some(availability), start)
    }

    fn acquire<I, P, S, A>(
        &mut self,
        mut req: AcquireRequest<I, P, S>,
        availability: Option<A>,
        start: u64,
    ) -> AcquireResult
    where
        I: Iterator<Item = ValidPieceIndex>,
        P: Fn(ValidPieceIndex) -> bool,
        S: Fn(ValidPieceIndex) -> bool,
        A: Fn(ValidPieceIndex) -> u32,
    {
        // 1. (Upstream's take-over at 10x before anything else is in `acquire_piece`.) With
        // rarest first a peer takes over pieces in the endgame alone (3. below): taken over
        // while it has queued pieces to fetch, a piece's chunks already on the wire from its
        // first peer arrive twice, and in a busy swarm, where a peer's upload is shared by
        // dozens and piece times vary tenfold, that was 15 to 20% of all that fetchers
        // received.

        // 2. Try reserve from priority_pieces then queued pieces
        // First check priority pieces that aren't already downloaded or in-flight
        for piece in &mut req.priority_pieces {
            if !self.chunks.is_piece_have(piece)
                && !self.inflight.contains_key(&piece)
                && (req.peer_has_piece)(piece)
            {
                return self.reserve_piece(piece, req.peer);
            }
        }

        // Then check naturally ordered queued pieces
        // Note: iter_queued_pieces only returns pieces in queue_pieces (not in-flight)
        let queued: Vec<_> = self
            .chunks
            .iter_queued_pieces(req.file_priorities, req.file_infos)
            .collect();

        let Some(availability) = availability else {
            for piece in queued {
                if (req.peer_has_piece)(piece) {
                    return self.reserve_piece(piece, req.peer);
                }
            }
            // 3. Try steal with 3x threshold (moderately slow peer)
            if let Some(result) = self.try_steal(&req, 3.0) {
                return result;
            }
            return AcquireResult::NoneAvailable;
        };
        if let Some(piece) = rarest(&queued, &req.peer_has_piece, &availability, start) {
            return self.reserve_piece(piece, req.peer);
        }
        // 3. Endgame: once no piece is left queued (every missing piece is in flight), take
        // over a piece held 10x this peer's piece time (`ENDGAME_TAKE_OVER`). Not before: a
        // peer that has nothing queued to offer this one is common mid-transfer (it has few
        // pieces yet, all taken), and taking over there made chunks arrive twice. Nor at 2x
        // (which this patch used first): in a busy swarm a peer's upload is shared by dozens,
        // piece times vary more than that, and 64 MiB to 32 fetchers received 1.07 to 1.16x
        // the bundle (1.00x at 10x), CPU-bound and slower for it.
        if queued.is_empty()
            && let Some(result) = self.try_steal(&req, ENDGAME_TAKE_OVER)
        {
            return result;
        }

        AcquireResult::NoneAvailable
    }

    /// Reserve a piece: remove from queue, add to inflight.
    fn reserve_piece(&mut self, piece: ValidPieceIndex, peer: PeerHandle) -> AcquireResult {
        self.chunks.reserve_needed_piece(piece);
        self.inflight.insert(
            piece,
            InflightPiece {
                peer,
                started: Instant::now(),
            },
        );
        AcquireResult::Reserved(piece)
    }

    /// Try to steal a piece from a slower peer.
    fn try_steal<I, P, S>(
        &mut self,
        req: &AcquireRequest<I, P, S>,
        threshold: f64,
    ) -> Option<AcquireResult>
    where
        I: Iterator<Item = ValidPieceIndex>,
        P: Fn(ValidPieceIndex) -> bool,
        S: Fn(ValidPieceIndex) -> bool,
    {
        let my_avg = req.peer_avg_time?;
        // swarmvm patch: never before MIN_STEAL_AFTER. Averages of a few milliseconds (fast
        // links, or loopback) made pieces change hands while their data was on the wire,
        // and every chunk then arrived twice (leechers uploaded 4x what they needed).
        let min_elapsed =
            Duration::from_secs_f64(my_avg.as_secs_f64() * threshold).max(MIN_STEAL_AFTER);

        // Find the slowest piece from another peer that exceeds threshold
        // and that the stealing peer actually has (can download)
        let (piece, old_peer, _) = self
            .inflight
            .iter()
            .filter(|(_, info)| info.peer != req.peer)
            .filter(|(p, _)| (req.peer_has_piece)(**p))
            .map(|(p, info)| (*p, info.peer, info.started.elapsed()))
            .filter(|(_, _, elapsed)| *elapsed >= min_elapsed)
            .max_by_key(|(_, _, elapsed)| *elapsed)?;

        // Check can_steal (e.g., per_piece_lock)
        if !(req.can_steal)(piece) {
            return None;
        }

        // Update ownership (piece stays in inflight, just changes owner)
        let info = self.inflight.get_mut(&piece)?;
        info.peer = req.peer;
        info.started = Instant::now();

        Some(AcquireResult::Stolen {
            piece,
            from_peer: old_peer,
        })
    }

    // === PIECE COMPLETION ===

    /// Remove piece from inflight tracking (e.g., after all chunks received).
    ///
    /// Returns download duration if piece was in-flight.
    /// Note: Does NOT mark the piece as downloaded - caller should do hash check
    /// and then call `mark_piece_hash_ok` or `mark_piece_hash_failed`.
    pub fn take_inflight(&mut self, piece: ValidPieceIndex) -> Option<Duration> {
        let inflight = self.inflight.remove(&piece)?;
        Some(inflight.started.elapsed())
    }

    /// Mark piece as downloaded after successful hash verification.
    pub fn mark_piece_hash_ok(&mut self, piece: ValidPieceIndex) {
        self.chunks.mark_piece_downloaded(piece);
    }

    /// Mark piece as failed after hash verification failure - requeues the piece.
    pub fn mark_piece_hash_failed(&mut self, piece: ValidPieceIndex) {
        self.chunks.mark_piece_broken_if_not_have(piece);
    }

    /// Release all pieces owned by a peer (on peer death).
    ///
    /// Moves all pieces owned by the peer from IN_FLIGHT back to QUEUED.
    /// Returns the number of pieces released.
    pub fn release_pieces_owned_by(&mut self, peer: PeerHandle) -> usize {
        // Collect pieces to release (can't modify while iterating)
        let pieces_to_release: Vec<_> = self
            .inflight
            .iter()
            .filter(|(_, info)| info.peer == peer)
            .map(|(p, _)| *p)
            .collect();

        let count = pieces_to_release.len();
        for piece in pieces_to_release {
            self.inflight.remove(&piece);
            self.chunks.mark_piece_broken_if_not_have(piece);
        }
        count
    }

    // === QUERIES ===

    /// Get the inflight info for a piece, if it's currently being downloaded.
    pub fn get_inflight(&self, piece: ValidPieceIndex) -> Option<&InflightPiece> {
        self.inflight.get(&piece)
    }

    /// Check if a piece is currently in-flight.
    #[allow(dead_code)]
    pub fn is_inflight(&self, piece: ValidPieceIndex) -> bool {
        self.inflight.contains_key(&piece)
    }

    /// Get the number of pieces currently in-flight.
    #[allow(dead_code)]
    pub fn inflight_count(&self) -> usize {
        self.inflight.len()
    }

    // === PASS-THROUGH METHODS ===

    /// Mark a chunk as downloaded. Returns the result indicating if the piece is complete.
    pub fn mark_chunk_downloaded(
        &mut self,
        piece: &Piece<ByteBuf<'_>>,
    ) -> Option<ChunkMarkingResult> {
        self.chunks.mark_chunk_downloaded(piece)
    }

    /// Update which files are selected for download.
    pub fn update_only_files(
        &mut self,
        file_infos: &FileInfos,
        new_only_files: &HashSet<usize>,
    ) -> anyhow::Result<crate::chunk_tracker::HaveNeededSelected> {
        self.chunks.update_only_files(file_infos, new_only_files)
    }

    /// Update per-file have bytes when a piece completes. Returns remaining bytes for the file.
    pub fn update_file_have_on_piece_completed(
        &mut self,
        piece_id: ValidPieceIndex,
        file_id: usize,
        file_info: &FileInfo,
    ) -> u64 {
        self.chunks
            .update_file_have_on_piece_completed(piece_id, file_id, file_info)
    }

    /// Flush the have pieces bitfield to disk.
    pub fn flush_have_pieces(&mut self, flush_async: bool) -> anyhow::Result<()> {
        self.chunks.get_have_pieces_mut().flush(flush_async)
    }
}

/// swarmvm patch: the piece of `queued` that `peer_has` with the lowest `availability`; the
/// scan starts at `start % queued.len()` and wraps, so equals are taken from a random place,
/// and it stops at a piece only one peer has (none can be rarer for a peer that has it).
fn rarest(
    queued: &[ValidPieceIndex],
    peer_has: impl Fn(ValidPieceIndex) -> bool,
    availability: impl Fn(ValidPieceIndex) -> u32,
    start: u64,
) -> Option<ValidPieceIndex> {
    if queued.is_empty() {
        return None;
    }
    let offset = (start % queued.len() as u64) as usize;
    let mut best: Option<(u32, ValidPieceIndex)> = None;
    for piece in queued[offset..].iter().chain(&queued[..offset]) {
        if !peer_has(*piece) {
            continue;
        }
        let count = availability(*piece);
        if best.is_none_or(|(b, _)| count < b) {
            best = Some((count, *piece));
            if count <= 1 {
                break;
            }
        }
    }
    best.map(|(_, piece)| piece)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bitv::BitV as BitVTrait, type_aliases::BF};
    use librqbit_core::lengths::Lengths;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    fn peer(id: u8) -> PeerHandle {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, id)), 6881)
    }

    /// Create a simple ChunkTracker for testing.
    /// Creates a torrent with the specified number of pieces, all selected.
    fn make_test_chunk_tracker(num_pieces: u32) -> ChunkTracker {
        // Create a simple single-file torrent
        let piece_length = 16384u32; // 16KB pieces
        let total_length = piece_length as u64 * num_pieces as u64;

        let lengths = Lengths::new(total_length, piece_length).unwrap();

        let bf_len = lengths.piece_bitfield_bytes();

        // No pieces downloaded yet (empty have)
        let have = BF::from_boxed_slice(vec![0u8; bf_len].into_boxed_slice());

        // All pieces selected
        let mut selected = BF::from_boxed_slice(vec![0u8; bf_len].into_boxed_slice());
        for i in 0..num_pieces as usize {
            selected.set(i, true);
        }

        // Single file spanning all pieces
        let file_infos = vec![crate::file_info::FileInfo {
            relative_filename: "test.dat".into(),
            offset_in_torrent: 0,
            len: total_length,
            piece_range: 0..num_pieces,
            attrs: Default::default(),
        }];

        ChunkTracker::new(have.into_dyn(), selected, lengths, &file_infos).unwrap()
    }

    fn make_test_file_infos(num_pieces: u32) -> FileInfos {
        let piece_length = 16384u64;
        vec![crate::file_info::FileInfo {
            relative_filename: "test.dat".into(),
            offset_in_torrent: 0,
            len: piece_length * num_pieces as u64,
            piece_range: 0..num_pieces,
            attrs: Default::default(),
        }]
    }

    fn make_default_file_priorities(file_infos: &FileInfos) -> FilePriorities {
        (0..file_infos.len()).collect()
    }

    #[test]
    fn test_new_piece_tracker() {
        let chunks = make_test_chunk_tracker(10);
        let tracker = PieceTracker::new(chunks);
        assert_eq!(tracker.inflight_count(), 0);
    }

    #[test]
    fn test_reserve_piece_from_queue() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        let result = tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true, // Peer has all pieces
            can_steal: |_| true,
        });

        // Should reserve piece 0 (first in queue)
        match result {
            AcquireResult::Reserved(piece) => {
                assert_eq!(piece.get(), 0);
                assert!(tracker.is_inflight(piece));
                assert_eq!(tracker.inflight_count(), 1);
            }
            _ => panic!("Expected Reserved, got {:?}", result),
        }
    }

    #[test]
    fn test_reserve_filters_by_peer_has_piece() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        // Peer only has piece 2 and later
        // Note: iter_queued_pieces iterates in order: first, last, middle
        // So for 0..5: 0, 4, 1, 2, 3
        // With filter >= 2, we get 4 first (skips 0, takes 4)
        let result = tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |p| p.get() >= 2,
            can_steal: |_| true,
        });

        match result {
            AcquireResult::Reserved(piece) => {
                // Got piece 4 (first one peer has in iteration order)
                assert!(piece.get() >= 2, "Should have gotten a piece >= 2");
            }
            _ => panic!("Expected Reserved, got {:?}", result),
        }
    }

    #[test]
    fn test_complete_piece() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        // Reserve a piece first
        let result = tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        });

        let piece = match result {
            AcquireResult::Reserved(p) => p,
            _ => panic!("Expected Reserved"),
        };

        // Complete the piece (take_inflight + hash check + mark_piece_hash_ok)
        let duration = tracker.take_inflight(piece);
        assert!(duration.is_some());
        assert!(!tracker.is_inflight(piece));
        // Simulate successful hash check
        tracker.mark_piece_hash_ok(piece);
        assert!(tracker.chunks().is_piece_have(piece));
    }

    #[test]
    fn test_fail_piece_requeues() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        // Reserve piece 0
        let result = tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        });

        let piece = match result {
            AcquireResult::Reserved(p) => p,
            _ => panic!("Expected Reserved"),
        };

        assert!(tracker.is_inflight(piece));

        // Fail the piece (take_inflight + hash check fails + mark_piece_hash_failed)
        let duration = tracker.take_inflight(piece);
        assert!(duration.is_some());
        // Simulate failed hash check
        tracker.mark_piece_hash_failed(piece);

        // Should no longer be in-flight
        assert!(!tracker.is_inflight(piece));
        // Should not be in have
        assert!(!tracker.chunks().is_piece_have(piece));
        // Should be back in queue - verify by trying to reserve it again
        let result2 = tracker.acquire_piece(AcquireRequest {
            peer: peer(2),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |p| p == piece, // Only has the failed piece
            can_steal: |_| true,
        });

        match result2 {
            AcquireResult::Reserved(p) => assert_eq!(p, piece),
            _ => panic!("Expected piece to be re-reservable after fail"),
        }
    }

    #[test]
    fn test_release_pieces_owned_by_peer() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        let peer_a = peer(1);
        let peer_b = peer(2);

        // Peer A reserves first two pieces (order: 0, 4, 1, 2, 3)
        // So peer A gets pieces 0 and 4
        let piece_a1 = match tracker.acquire_piece(AcquireRequest {
            peer: peer_a,
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        }) {
            AcquireResult::Reserved(p) => p,
            _ => panic!("Expected Reserved"),
        };
        let piece_a2 = match tracker.acquire_piece(AcquireRequest {
            peer: peer_a,
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        }) {
            AcquireResult::Reserved(p) => p,
            _ => panic!("Expected Reserved"),
        };

        // Peer B reserves next piece
        let piece_b = match tracker.acquire_piece(AcquireRequest {
            peer: peer_b,
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        }) {
            AcquireResult::Reserved(p) => p,
            _ => panic!("Expected Reserved"),
        };

        assert_eq!(tracker.inflight_count(), 3);
        assert!(tracker.is_inflight(piece_a1));
        assert!(tracker.is_inflight(piece_a2));
        assert!(tracker.is_inflight(piece_b));

        // Peer A dies
        let released = tracker.release_pieces_owned_by(peer_a);
        assert_eq!(released, 2);
        assert_eq!(tracker.inflight_count(), 1); // Only peer B's piece remains

        // Verify peer B's piece is still in-flight
        assert!(tracker.is_inflight(piece_b));
        // Verify peer A's pieces are no longer in-flight
        assert!(!tracker.is_inflight(piece_a1));
        assert!(!tracker.is_inflight(piece_a2));
    }

    #[test]
    fn test_into_chunks_requeues_inflight() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        // Reserve pieces 0 and 1
        tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        });
        tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        });

        assert_eq!(tracker.inflight_count(), 2);

        // Convert back to chunks (simulates pause)
        let chunks = tracker.into_chunks();

        // Create a new tracker and verify pieces are back in queue
        let mut new_tracker = PieceTracker::new(chunks);
        let result = new_tracker.acquire_piece(AcquireRequest {
            peer: peer(2),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        });

        // Should get piece 0 again (was requeued)
        match result {
            AcquireResult::Reserved(p) => assert_eq!(p.get(), 0),
            _ => panic!("Expected to reserve piece 0 after into_chunks"),
        }
    }

    #[test]
    fn test_priority_pieces_checked_first() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        // Priority pieces: piece 3, then piece 2
        let piece3 = tracker
            .chunks()
            .get_lengths()
            .validate_piece_index(3)
            .unwrap();
        let piece2 = tracker
            .chunks()
            .get_lengths()
            .validate_piece_index(2)
            .unwrap();
        let priority = vec![piece3, piece2];

        let result = tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: priority.into_iter(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        });

        // Should get piece 3 (first priority piece)
        match result {
            AcquireResult::Reserved(p) => assert_eq!(p.get(), 3),
            _ => panic!("Expected Reserved(3), got {:?}", result),
        }
    }

    #[test]
    fn test_none_available_when_no_pieces() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        // Peer has no pieces
        let result = tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| false, // Peer has nothing
            can_steal: |_| true,
        });

        match result {
            AcquireResult::NoneAvailable => {}
            _ => panic!("Expected NoneAvailable, got {:?}", result),
        }
    }

    #[test]
    fn test_take_inflight_nonexistent_piece_returns_none() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);
        let piece = tracker
            .chunks()
            .get_lengths()
            .validate_piece_index(0)
            .unwrap();

        // Try to take a piece that's not in-flight
        let result = tracker.take_inflight(piece);
        assert!(result.is_none());
    }

    #[test]
    fn test_steal_only_pieces_peer_has() {
        // This test verifies the fix for a bug where try_steal didn't check
        // if the stealing peer actually has the piece in their bitfield.
        // Without this check, a peer could "steal" a piece they can't download,
        // leaving it stuck in inflight forever.

        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        let peer_a = peer(1);
        let peer_b = peer(2);

        // Peer A reserves pieces 0 and 4 (first two in iteration order)
        let piece_0 = match tracker.acquire_piece(AcquireRequest {
            peer: peer_a,
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        }) {
            AcquireResult::Reserved(p) => {
                assert_eq!(p.get(), 0);
                p
            }
            _ => panic!("Expected Reserved"),
        };

        let piece_4 = match tracker.acquire_piece(AcquireRequest {
            peer: peer_a,
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        }) {
            AcquireResult::Reserved(p) => {
                assert_eq!(p.get(), 4);
                p
            }
            _ => panic!("Expected Reserved"),
        };

        // Sleep so pieces become stealable (swarmvm patch: past the floor too)
        std::thread::sleep(MIN_STEAL_AFTER + Duration::from_millis(5));

        // Peer B tries to acquire with:
        // - Very short avg_time (1ms) so 3x threshold = 3ms < 5ms elapsed
        // - peer_has_piece returns true ONLY for piece 4, NOT piece 0
        let result = tracker.acquire_piece(AcquireRequest {
            peer: peer_b,
            peer_avg_time: Some(Duration::from_millis(1)),
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |p| p.get() == 4, // Peer B only has piece 4
            can_steal: |_| true,
        });

        // Should steal piece 4 (which peer B has), NOT piece 0 (which peer B doesn't have)
        match result {
            AcquireResult::Stolen { piece, from_peer } => {
                assert_eq!(piece, piece_4, "Should steal piece 4 (the one peer B has)");
                assert_eq!(from_peer, peer_a);
                // Verify piece 0 is still owned by peer A (wasn't stolen)
                assert_eq!(tracker.get_inflight(piece_0).unwrap().peer, peer_a);
            }
            _ => panic!("Expected Stolen, got {:?}", result),
        }
    }

    // swarmvm patch: rarest-first.

    fn reserve_rarest(
        tracker: &mut PieceTracker,
        who: PeerHandle,
        has: impl Fn(ValidPieceIndex) -> bool,
        counts: &[u32],
        start: u64,
    ) -> Option<u32> {
        let file_infos = make_test_file_infos(counts.len() as u32);
        let file_priorities = make_default_file_priorities(&file_infos);
        let result = tracker.acquire_piece_rarest(
            AcquireRequest {
                peer: who,
                peer_avg_time: None,
                priority_pieces: std::iter::empty(),
                file_priorities: &file_priorities,
                file_infos: &file_infos,
                peer_has_piece: has,
                can_steal: |_| true,
            },
            |p| counts[p.get_usize()],
            start,
        );
        match result {
            AcquireResult::Reserved(p) => Some(p.get()),
            AcquireResult::NoneAvailable => None,
            other => panic!("expected a reservation, got {other:?}"),
        }
    }

    #[test]
    fn rarest_piece_the_peer_has_is_taken_first() {
        let mut tracker = PieceTracker::new(make_test_chunk_tracker(6));
        let counts = [3, 2, 5, 1, 2, 1];
        // The peer lacks piece 3: of what it has, piece 5 is the rarest.
        let first = reserve_rarest(&mut tracker, peer(1), |p| p.get() != 3, &counts, 0);
        assert_eq!(first, Some(5));
        // Then among the pieces two peers have, then three, then five.
        let next: Vec<_> = (0..4)
            .map(|_| reserve_rarest(&mut tracker, peer(1), |p| p.get() != 3, &counts, 0).unwrap())
            .collect();
        assert_eq!(&next[2..], &[0, 2]);
        let mut twos = next[..2].to_vec();
        twos.sort();
        assert_eq!(twos, [1, 4]);
        assert_eq!(reserve_rarest(&mut tracker, peer(1), |p| p.get() != 3, &counts, 0), None);
    }

    #[test]
    fn equally_rare_pieces_are_taken_from_a_random_place() {
        // Eight peers starting together with everything equally rare: the start spreads them
        // over different pieces, where in-order picking would give every one piece 0.
        let counts = [1u32; 16];
        let firsts: HashSet<u32> = (0..8u64)
            .map(|start| {
                let mut tracker = PieceTracker::new(make_test_chunk_tracker(16));
                reserve_rarest(&mut tracker, peer(1), |_| true, &counts, start * 7).unwrap()
            })
            .collect();
        assert_eq!(firsts.len(), 8, "{firsts:?}");
        // Upstream's order, for contrast: always piece 0.
        let mut tracker = PieceTracker::new(make_test_chunk_tracker(16));
        let file_infos = make_test_file_infos(16);
        let file_priorities = make_default_file_priorities(&file_infos);
        let upstream = tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        });
        assert!(matches!(upstream, AcquireResult::Reserved(p) if p.get() == 0));
    }

    #[test]
    fn priority_pieces_come_before_rare_ones_for_streaming() {
        let mut tracker = PieceTracker::new(make_test_chunk_tracker(4));
        let file_infos = make_test_file_infos(4);
        let file_priorities = make_default_file_priorities(&file_infos);
        let lengths = *tracker.chunks().get_lengths();
        let wanted = lengths.validate_piece_index(2).unwrap();
        let result = tracker.acquire_piece_rarest(
            AcquireRequest {
                peer: peer(1),
                peer_avg_time: None,
                priority_pieces: std::iter::once(wanted),
                file_priorities: &file_priorities,
                file_infos: &file_infos,
                peer_has_piece: |_| true,
                can_steal: |_| true,
            },
            |p| if p.get() == 2 { 9 } else { 1 },
            0,
        );
        assert!(matches!(result, AcquireResult::Reserved(p) if p == wanted), "{result:?}");
    }

    /// What `who`, whose pieces take `avg_ms` on average, is given by the rarest-first
    /// picker when every piece is equally rare and it has the pieces `has` says.
    fn acquire_timed(
        tracker: &mut PieceTracker,
        who: PeerHandle,
        avg_ms: u64,
        has: impl Fn(ValidPieceIndex) -> bool,
    ) -> AcquireResult {
        let file_infos = make_test_file_infos(tracker.chunks().get_lengths().total_pieces());
        let file_priorities = make_default_file_priorities(&file_infos);
        tracker.acquire_piece_rarest(
            AcquireRequest {
                peer: who,
                peer_avg_time: Some(Duration::from_millis(avg_ms)),
                priority_pieces: std::iter::empty(),
                file_priorities: &file_priorities,
                file_infos: &file_infos,
                peer_has_piece: has,
                can_steal: |_| true,
            },
            |_| 1,
            0,
        )
    }

    #[test]
    fn no_take_over_while_the_peer_has_queued_pieces_to_fetch() {
        let mut tracker = PieceTracker::new(make_test_chunk_tracker(2));
        let counts = [1u32, 1];
        let first = reserve_rarest(&mut tracker, peer(1), |_| true, &counts, 0).unwrap();
        std::thread::sleep(MIN_STEAL_AFTER + Duration::from_millis(25));
        // Peer 2 takes 10 ms a piece; peer 1 has held its piece for 325 ms, over 10x (where
        // upstream takes it over first), but another piece is still queued: peer 2 gets that.
        let result = acquire_timed(&mut tracker, peer(2), 10, |_| true);
        assert!(
            matches!(result, AcquireResult::Reserved(p) if p.get() == 1 - first),
            "{result:?}"
        );
    }

    #[test]
    fn no_take_over_before_the_endgame_even_when_the_peer_has_nothing_queued() {
        let mut tracker = PieceTracker::new(make_test_chunk_tracker(2));
        let counts = [1u32, 1];
        // Peer 1 fetches piece 0; piece 1 stays queued.
        assert_eq!(reserve_rarest(&mut tracker, peer(1), |p| p.get() == 0, &counts, 0), Some(0));
        std::thread::sleep(MIN_STEAL_AFTER + Duration::from_millis(25));
        // Peer 2 (30 ms a piece) has only piece 0, held 325 ms by peer 1: over 10x, but piece
        // 1 is still queued, so this is not the endgame and nothing is taken over.
        let only_piece_0 = |p: ValidPieceIndex| p.get() == 0;
        let result = acquire_timed(&mut tracker, peer(2), 30, only_piece_0);
        assert!(matches!(result, AcquireResult::NoneAvailable), "{result:?}");
        // Once piece 1 is in flight too, it is the endgame: peer 2 takes piece 0 over.
        assert_eq!(reserve_rarest(&mut tracker, peer(3), |_| true, &counts, 0), Some(1));
        let result = acquire_timed(&mut tracker, peer(2), 30, only_piece_0);
        assert!(
            matches!(result, AcquireResult::Stolen { piece, from_peer } if piece.get() == 0 && from_peer == peer(1)),
            "{result:?}"
        );
    }

    #[test]
    fn endgame_takes_over_a_piece_held_ten_times_as_long() {
        let mut tracker = PieceTracker::new(make_test_chunk_tracker(1));
        let counts = [1u32];
        assert_eq!(reserve_rarest(&mut tracker, peer(1), |_| true, &counts, 0), Some(0));
        std::thread::sleep(MIN_STEAL_AFTER + Duration::from_millis(25));
        // Peer 2 takes 30 ms a piece; the piece has been with peer 1 for 325 ms: over 10x and
        // over the floor. At 60 ms a piece (5x) it stays with peer 1.
        let result = acquire_timed(&mut tracker, peer(2), 60, |_| true);
        assert!(matches!(result, AcquireResult::NoneAvailable), "{result:?}");
        let result = acquire_timed(&mut tracker, peer(2), 30, |_| true);
        assert!(
            matches!(result, AcquireResult::Stolen { from_peer, .. } if from_peer == peer(1)),
            "{result:?}"
        );
    }
}
