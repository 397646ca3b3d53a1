//! The drop folder: `.torrent` files and `.magnet` files (a magnet link inside) put there are
//! added to the node. Polled, so it works on every filesystem.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use swarmvm_swarm::{MagnetLink, Source, TorrentFile};
use tracing::warn;

use crate::node::{Node, one_line};

/// How often the folder is read.
const POLL: Duration = Duration::from_millis(250);

pub(crate) fn spawn(node: Node, folder: PathBuf) {
    let task_node = node.clone();
    node.spawn(async move {
        let node = task_node;
        let mut stop = node.stopping();
        let mut seen = BTreeSet::new();
        loop {
            scan(&node, &folder, &mut seen);
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    });
}

fn scan(node: &Node, folder: &PathBuf, seen: &mut BTreeSet<(PathBuf, u64)>) {
    let Ok(entries) = std::fs::read_dir(folder) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        let key = (path.clone(), meta.len());
        if !meta.is_file() || seen.contains(&key) {
            continue;
        }
        let source = match path.extension().and_then(|e| e.to_str()) {
            Some("torrent") => TorrentFile::read(&path).map(Source::Torrent),
            Some("magnet") => match std::fs::read_to_string(&path) {
                Ok(text) => MagnetLink::parse(text.trim()).map(Source::Magnet),
                Err(_) => continue,
            },
            _ => continue,
        };
        seen.insert(key);
        match source {
            Ok(source) => {
                if let Err(e) = node.add(source) {
                    warn!(file = %path.display(), "cannot add: {}", one_line(&e));
                }
            }
            Err(e) => warn!(file = %path.display(), "ignoring: {}", one_line(&e)),
        }
    }
}
