//! Fuzz target `token_verify`: see `swarmvm_test_support::fuzz::token_verify`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _accepted = swarmvm_test_support::fuzz::token_verify(data);
});
