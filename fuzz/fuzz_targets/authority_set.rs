//! Fuzz target `authority_set`: see `swarmvm_test_support::fuzz::authority_set`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _accepted = swarmvm_test_support::fuzz::authority_set(data);
});
