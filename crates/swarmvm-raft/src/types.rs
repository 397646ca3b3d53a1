//! The types the consensus engine is built over.

use serde::{Deserialize, Serialize};

/// A replica's id in the engine: the first 8 bytes (little-endian) of the SHA-256 of its
/// authority member's wallet id ([`node_id`]).
pub type NodeId = u64;

/// A command in the log: JSON text whose meaning is the node's (submissions, cuts,
/// signatures). The engine only orders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(pub String);

/// What the engine knows of a replica: the authority member whose key it holds and the HTTP
/// base URL it answers on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// The member's wallet id.
    pub member: String,
    /// Its HTTP base URL (`http://host:port`).
    pub url: String,
}

impl std::fmt::Display for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.member, self.url)
    }
}

openraft::declare_raft_types!(
    /// The engine's type configuration for authority replicas.
    pub TypeConfig:
        D = Command,
        R = u64,
        NodeId = NodeId,
        Node = Replica,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// The engine id of the replica holding member `member`'s key.
pub fn node_id(member: &str) -> NodeId {
    let hash = swarmvm_primitives::Hash32::digest(member.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}
