//! Integration tests of swarmvm-node: real nodes and sessions on 127.0.0.1.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod api;
mod authority;
mod busy;
mod cuts;
mod dht;
mod explorer;
mod following;
mod fuzz_corpus;
mod hostile;
mod layers;
mod limits;
mod live;
mod order;
mod registrations;
mod replicas;
mod support;
