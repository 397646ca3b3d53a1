//! A swarmvm peer: fetches bundles over BitTorrent, verifies them (manifest signed by a
//! trusted authority, every file matching it), applies them to its ledger strictly in order
//! (a bundle that arrives early waits), and keeps seeding every bundle it applied so later
//! peers fetch from many. It resumes where it stopped after a restart or a crash, and
//! answers an HTTP API (axum, JSON) built on the same [`Node`] facade as the command line.
//!
//! ```no_run
//! # async fn run() -> Result<(), swarmvm_node::NodeError> {
//! use swarmvm_node::{Node, NodeOptions};
//! use swarmvm_swarm::{Source, SwarmOptions};
//! use swarmvm_token::Network;
//!
//! # let network: Network = unimplemented!();
//! let node = Node::start(NodeOptions {
//!     data_dir: "peer1".into(),
//!     network: Some(network),
//!     swarm: SwarmOptions::loopback(),
//!     http: Some("127.0.0.1:0".parse().unwrap()),
//!     ..NodeOptions::default()
//! })
//! .await?;
//! node.add(Source::parse("bundle-1.torrent")?)?;
//! node.wait_applied(1, std::time::Duration::from_secs(60)).await;
//! println!("{}", node.status().state_root);
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod api;
mod applier;
mod batcher;
pub mod client;
mod conns;
mod core;
mod counters;
mod decisions;
mod dht;
mod error;
mod events;
mod explorer;
mod fetcher;
mod follow;
mod heads;
mod http;
mod metrics;
mod node;
mod pipeline;
pub mod proofs;
pub mod protocol;
mod queue;
pub mod reads;
mod relay;
mod replica;
mod sequencer;
mod snapshot_store;
mod snapshots;
mod submit;
mod tasks;
mod watch;
mod web;

pub use api::Api;
pub use conns::HttpLimits;
pub use dht::DhtOptions;
pub use error::NodeError;
pub use follow::FollowOptions;
pub use node::{Node, NodeLimits, NodeOptions};
pub use pipeline::{Applied, PipelineError, apply_opened, apply_opened_with};
pub use protocol::{
    AuthoritySummary, BundlePage, BundleState, BundleStatus, ClusterMember, ClusterSummary,
    EvidenceSummary, HeadSummary, Refusal, STATUS_BUNDLES, SequencerSummary, Status,
    TransferTotals,
};
pub use sequencer::SequencerOptions;
pub use submit::SubmitError;
pub use web::ApiError;
