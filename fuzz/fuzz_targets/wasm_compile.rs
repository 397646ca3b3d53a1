//! Fuzz target `wasm_compile`: see `swarmvm_test_support::fuzz::wasm_compile`. Every module the
//! check accepts must compile in the runtime's engine; a refusal panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _accepted = swarmvm_test_support::fuzz::wasm_compile(data);
});
