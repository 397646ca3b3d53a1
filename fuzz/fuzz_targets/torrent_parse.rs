//! Fuzz target `torrent_parse`: see `swarmvm_test_support::fuzz::torrent_parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _accepted = swarmvm_test_support::fuzz::torrent_parse(data);
});
