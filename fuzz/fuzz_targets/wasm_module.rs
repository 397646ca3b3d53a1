//! Fuzz target `wasm_module`: see `swarmvm_test_support::fuzz::wasm_module`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _accepted = swarmvm_test_support::fuzz::wasm_module(data);
});
