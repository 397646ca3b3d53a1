//! Integration tests of the `swarmvm` binary: real processes in temporary folders, asserting
//! stdout, `--json`, one-line stderr and exit codes.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod authority;
mod bundle;
mod clients;
mod crash;
mod exit;
mod explorer;
mod hardening;
mod interop;
mod lan;
mod ledger;
mod libtorrent;
mod live;
mod load;
mod node;
mod operators;
mod proofs;
mod replicas;
mod resources;
mod script;
mod secrets;
mod snapshots;
mod support;
mod testbed;
mod token;
mod vectors;
mod wallet;
mod wasm;
