//! Integration tests of swarmvm-token: one test binary, one module per subject.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod refusals;
mod round_trip;
mod vectors;
mod zip215;
