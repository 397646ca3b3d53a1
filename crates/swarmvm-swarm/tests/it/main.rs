//! Integration tests of swarmvm-swarm: real librqbit sessions on 127.0.0.1.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod descriptors;
mod e2e;
mod hostile_peers;
mod interop;
mod magnet;
mod support;
mod trade;
