//! The drop folder: `.torrent` files and `.magnet` files (a magnet link inside) put there are
//! added to the node. Polled, so it works on every filesystem.
//!
//! A file is done with once it was added or refused for what it holds (not a torrent, not a
//! bundle); it is tried again when it changes (size or time). A failure that says nothing
//! about the file (out of descriptors, the node at its bound of pending bundles) is retried
//! at the next poll. Each poll looks at a bounded number of new files, and files that left the
//! folder are forgotten, so a flood of files costs a bounded amount of work and memory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use swarmvm_swarm::{MagnetLink, Source, SwarmError, TorrentFile};
use tracing::warn;

use crate::error::NodeError;
use crate::error::one_line;
use crate::fetcher::Fetcher;

/// How often the folder is read.
const POLL: Duration = Duration::from_millis(250);
/// New files looked at per poll, at most.
const PER_POLL: usize = 64;
/// The longest magnet file read.
const MAX_MAGNET_FILE: u64 = 16 * 1024;

/// A file as seen: its path, size and modification time.
type Key = (PathBuf, u64, Option<SystemTime>);

/// What the watcher remembers between polls.
#[derive(Debug, Default)]
struct Watcher {
    /// Files done with (added, or refused for their content).
    done: BTreeSet<Key>,
    /// Files whose last try failed for a passing reason, with the reason already logged.
    retry: BTreeMap<Key, String>,
}

pub(crate) fn spawn(node: Fetcher, folder: PathBuf) {
    let task_node = node.clone();
    node.tasks().spawn(async move {
        let node = task_node;
        let mut stop = node.tasks().stopping();
        let mut watcher = Watcher::default();
        loop {
            watcher.scan(&node, &folder);
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    });
}

/// What became of one try.
enum Outcome {
    /// Added, or refused for good: do not look at this version of the file again.
    Done,
    /// Failed for a reason that may pass: try again at the next poll.
    Retry(String),
}

fn read_source(path: &Path) -> Result<Source, (bool, String)> {
    let transient = |e: &SwarmError| matches!(e, SwarmError::Io { .. });
    match path.extension().and_then(|e| e.to_str()) {
        Some("torrent") => {
            TorrentFile::read(path).map(Source::Torrent).map_err(|e| (transient(&e), one_line(&e)))
        }
        _ => {
            use std::io::Read as _;
            let mut text = String::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(MAX_MAGNET_FILE).read_to_string(&mut text))
                .map_err(|e| (true, format!("cannot read: {e}")))?;
            MagnetLink::parse(text.trim()).map(Source::Magnet).map_err(|e| (false, one_line(&e)))
        }
    }
}

fn try_add(node: &Fetcher, path: &Path) -> Outcome {
    match read_source(path) {
        Ok(source) => match node.add(source) {
            Ok(_) => Outcome::Done,
            Err(e @ NodeError::Busy { .. }) => Outcome::Retry(one_line(&e)),
            Err(e) => {
                warn!(file = %path.display(), "cannot add: {}", one_line(&e));
                Outcome::Done
            }
        },
        Err((true, why)) => Outcome::Retry(why),
        Err((false, why)) => {
            warn!(file = %path.display(), "ignoring: {why}");
            Outcome::Done
        }
    }
}

impl Watcher {
    fn scan(&mut self, node: &Fetcher, folder: &Path) {
        let entries = match std::fs::read_dir(folder) {
            Ok(entries) => entries,
            Err(e) => {
                // Out of descriptors, or the folder is gone for a moment: next poll.
                tracing::debug!(folder = %folder.display(), "cannot read the drop folder: {e}");
                return;
            }
        };
        let mut present = BTreeSet::new();
        let mut tried = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let wanted = path.extension().is_some_and(|e| e == "torrent" || e == "magnet");
            // A link or anything but a regular file is not picked up.
            let Ok(meta) = entry.metadata() else { continue };
            if !wanted || !meta.is_file() {
                continue;
            }
            let key: Key = (path.clone(), meta.len(), meta.modified().ok());
            present.insert(key.clone());
            if self.done.contains(&key) || tried >= PER_POLL {
                continue;
            }
            tried += 1;
            match try_add(node, &path) {
                Outcome::Done => {
                    self.retry.remove(&key);
                    self.done.insert(key);
                }
                Outcome::Retry(why) => {
                    if self.retry.get(&key) != Some(&why) {
                        warn!(file = %path.display(), "will try again: {why}");
                    }
                    self.retry.insert(key, why);
                }
            }
        }
        // Forget files that left the folder or changed.
        self.done.retain(|k| present.contains(k));
        self.retry.retain(|k, _| present.contains(k));
    }
}
