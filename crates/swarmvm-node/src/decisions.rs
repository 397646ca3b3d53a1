//! What an authority replica decided about each cut it was asked to sign: signed, or refused
//! and why. Kept in `DATA_DIR/replica-decisions.json`, written and synced before the signature
//! or the refusal leaves the replica, so that an honest replica never both signs and refuses
//! one cut, even across a crash: the rule the replicas' abandoning of refused cuts rests on
//! (`SECURITY.md`, "Refused cuts are abandoned, not stalled on").

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use swarmvm_primitives::Hash32;

/// The file, in the data folder.
pub(crate) const FILE: &str = "replica-decisions.json";
/// Decisions kept at most (those for the newest seqs).
const MAX_KEPT: usize = 256;

/// A replica's decision about one cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub(crate) enum Decision {
    /// It signed the cut's manifest payload.
    Signed,
    /// It refused it for good: why, and the items it refused (by arrival).
    Refused { why: String, items: Vec<u64> },
}

/// One decision as the file holds it.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    seq: u64,
    /// The SHA-256 of the cut's manifest payload.
    manifest: Hash32,
    #[serde(flatten)]
    decision: Decision,
}

/// The decisions of one replica, in memory and on disk.
#[derive(Debug)]
pub(crate) struct Decisions {
    path: PathBuf,
    kept: Mutex<BTreeMap<(u64, Hash32), Decision>>,
}

impl Decisions {
    /// Reads the decisions kept in `data_dir` (none when there is no file yet). A file that
    /// cannot be read is an error: starting without it could sign what was refused.
    pub(crate) fn open(data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join(FILE);
        let kept = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Vec<Entry>>(&bytes)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .into_iter()
                .map(|e| ((e.seq, e.manifest), e.decision))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Self { path, kept: Mutex::new(kept) })
    }

    /// The decision taken about the cut for `seq` whose manifest payload hashes to `manifest`.
    pub(crate) fn get(&self, seq: u64, manifest: Hash32) -> Option<Decision> {
        self.kept.lock().get(&(seq, manifest)).cloned()
    }

    /// The manifests (payload hashes) this replica signed for `seq`.
    pub(crate) fn signed_for(&self, seq: u64) -> Vec<Hash32> {
        self.kept
            .lock()
            .range((seq, Hash32([0; 32]))..)
            .take_while(|((s, _), _)| *s == seq)
            .filter(|(_, d)| **d == Decision::Signed)
            .map(|((_, m), _)| *m)
            .collect()
    }

    /// Takes `decision` about a cut, on disk before this returns; the decision taken first
    /// about a cut stands, and asking for another is an error.
    pub(crate) fn decide(
        &self,
        seq: u64,
        manifest: Hash32,
        decision: Decision,
    ) -> Result<(), String> {
        let mut kept = self.kept.lock();
        if let Some(before) = kept.get(&(seq, manifest)) {
            return if std::mem::discriminant(before) == std::mem::discriminant(&decision) {
                Ok(())
            } else {
                Err(format!("this replica decided otherwise about that cut before: {before:?}"))
            };
        }
        let mut next = kept.clone();
        next.insert((seq, manifest), decision);
        while next.len() > MAX_KEPT {
            next.pop_first();
        }
        write(&self.path, &next)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        *kept = next;
        Ok(())
    }
}

/// Writes `kept` to `path` durably: beside it, synced, renamed over it, the folder synced.
fn write(path: &Path, kept: &BTreeMap<(u64, Hash32), Decision>) -> std::io::Result<()> {
    let entries: Vec<Entry> = kept
        .iter()
        .map(|((seq, manifest), decision)| Entry {
            seq: *seq,
            manifest: *manifest,
            decision: decision.clone(),
        })
        .collect();
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(&entries).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_kept_across_a_restart_and_never_changed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Hash32::digest(b"a"), Hash32::digest(b"b"));
        let kept = Decisions::open(dir.path()).unwrap();
        assert_eq!(kept.get(2, a), None);
        kept.decide(2, a, Decision::Signed).unwrap();
        let refused = Decision::Refused { why: "item 11: nonce".into(), items: vec![11] };
        kept.decide(3, b, refused.clone()).unwrap();
        // The decision taken first stands.
        assert!(kept.decide(2, a, refused.clone()).is_err());
        assert!(kept.decide(3, b, Decision::Signed).is_err());
        kept.decide(2, a, Decision::Signed).unwrap();
        let again = Decisions::open(dir.path()).unwrap();
        assert_eq!(again.get(2, a), Some(Decision::Signed));
        assert_eq!(again.get(3, b), Some(refused));
        assert_eq!(again.signed_for(2), vec![a]);
        assert!(again.signed_for(3).is_empty());
    }

    #[test]
    fn a_decisions_file_that_cannot_be_read_stops_the_replica() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"[{\"seq\": 2, \"manif").unwrap();
        let e = Decisions::open(dir.path()).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn only_the_newest_decisions_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let kept = Decisions::open(dir.path()).unwrap();
        for seq in 1..=(MAX_KEPT as u64 + 10) {
            kept.decide(seq, Hash32::digest(&seq.to_le_bytes()), Decision::Signed).unwrap();
        }
        let again = Decisions::open(dir.path()).unwrap();
        assert_eq!(again.get(1, Hash32::digest(&1u64.to_le_bytes())), None);
        let last = MAX_KEPT as u64 + 10;
        assert_eq!(again.get(last, Hash32::digest(&last.to_le_bytes())), Some(Decision::Signed));
    }
}
