//! Fuzz target `contract_execute`: see `swarmvm_test_support::fuzz::contract_execute`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _accepted = swarmvm_test_support::fuzz::contract_execute(data);
});
