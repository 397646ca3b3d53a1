//! Bundles travel as torrents: this crate makes `.torrent` files, seeds folders and fetches
//! torrents and magnet links over the real BitTorrent network, with
//! [librqbit](https://docs.rs/librqbit) underneath. Nothing of librqbit shows in this API.
//!
//! Torrents are BitTorrent v1 (BEP 3), made deterministically (files in byte order of their
//! paths, a piece length chosen from the size) and read defensively (safe names and paths,
//! bounded piece counts and sizes). Data to seed is verified before the engine opens it, and a
//! fetch never overwrites a folder holding other data.
//!
//! ```no_run
//! # async fn run() -> Result<(), swarmvm_swarm::SwarmError> {
//! use std::path::Path;
//! use swarmvm_swarm::{Swarm, SwarmOptions, TorrentFile};
//!
//! let torrent = TorrentFile::create(Path::new("bundle-1"), &[], None)?;
//! let seeder = Swarm::start(SwarmOptions::loopback(), Path::new("seeder")).await?;
//! seeder.seed(&torrent, Path::new("bundle-1")).await?;
//! let peer = seeder.listen_addr().expect("listening");
//!
//! let fetcher = Swarm::start(SwarmOptions::loopback(), Path::new("fetcher")).await?;
//! let transfer = fetcher.fetch(&torrent, Path::new("downloads"), &[peer]).await?;
//! transfer.wait_complete().await?;
//! println!("{} bytes in {}", transfer.progress().done, transfer.path().display());
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod error;
mod partial;
mod space;
mod storage;
mod swarm;
mod torrent;

pub use error::{Result, SwarmError};
pub use partial::PARTIAL_DIR;
pub use swarm::{
    Listen, PeerView, Progress, REQUEST_WINDOW, Source, Swarm, SwarmOptions, Transfer,
    TransferState,
};
pub use torrent::{
    InfoHash, MAX_FILES, MAX_MAGNET_LEN, MAX_MAGNET_TRACKERS, MAX_PIECE_LENGTH, MAX_PIECES,
    MAX_TORRENT_FILE, MIN_PIECE_LENGTH, MagnetLink, TorrentEntry, TorrentFile, auto_piece_length,
    check_tracker,
};
