//! Fuzz target `zip215_batch`: see `swarmvm_test_support::fuzz::zip215_batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _any_held = swarmvm_test_support::fuzz::zip215_batch(data);
});
