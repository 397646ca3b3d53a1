//! Integration tests of swarmvm-ledger on real redb files.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod apply;
mod order;
mod snapshot;
