//! Hostile modules: each is refused when checked, or rejects only its own contract with a
//! reason, leaving the state and root as they were and the next contract unaffected.

use serde_json::json;
use swarmvm_vm::Outcome;
use swarmvm_wasm::{ModuleError, check_module};

use crate::{WALLETS, default_fuel, machine, run, wat};

/// A module whose `run` is `body` (WebAssembly text), with one page of memory and the given
/// extra items (imports, functions, data).
fn module(items: &str, body: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
            (import "swarmvm" "get" (func $get (param i32 i32 i32 i32) (result i32)))
            (import "swarmvm" "set" (func $set (param i32 i32 i32 i32)))
            (import "swarmvm" "fail" (func $fail (param i32 i32)))
            (memory (export "memory") 1)
            {items}
            (func (export "run") (result i32) {body}))"#
    ))
}

/// Runs `bytes` as action `evil` for a contract of wallet 0 and checks that only that
/// contract was rejected: the root is unchanged and an ordinary contract still applies.
fn rejected(bytes: &[u8], fuel: u64) -> String {
    let (mut m, _) = machine(&[("evil", bytes, fuel)]);
    let student = json!({"action": "register_student", "student": {"id": "S1", "name": "N", "department": "D"}});
    assert!(run(&mut m, WALLETS[1], std::slice::from_ref(&student)).is_applied());
    let root = m.state_root();
    let nonce = m.nonce(WALLETS[0]);
    let Outcome::Rejected(reason) = run(&mut m, WALLETS[0], &[json!({"action": "evil"})]) else {
        panic!("the hostile module's contract applied");
    };
    assert_eq!(m.state_root(), root, "a rejected contract changed the state");
    assert_eq!(m.nonce(WALLETS[0]), nonce, "and used up the nonce");
    let next = json!({"action": "register_student", "student": {"id": "S2", "name": "N", "department": "D"}});
    assert!(run(&mut m, WALLETS[0], &[next]).is_applied(), "the next contract applies");
    reason.to_string()
}

#[test]
fn modules_that_run_away_are_stopped_and_only_their_contract_is_rejected() {
    let endless = module("", "(loop $l (br $l)) (i32.const 0)");
    assert!(rejected(&endless, 100_000).contains("module ran out of fuel (100000 units)"));
    // The default fuel stops it too, in a bounded time.
    let started = std::time::Instant::now();
    assert!(rejected(&endless, default_fuel()).contains("out of fuel"));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    let deep = module("(func $down (call $down))", "(call $down) (i32.const 0)");
    let reason = rejected(&deep, default_fuel());
    assert!(reason.contains("module trapped: call stack exhausted"), "recursion: {reason}");

    // memory.grow past 256 pages answers -1; writing past the memory traps.
    let grow = module(
        "",
        "(if (i32.ne (memory.grow (i32.const 300)) (i32.const -1)) (then (unreachable)))
         (i32.store (i32.const 0x1000000) (i32.const 1)) (i32.const 0)",
    );
    let reason = rejected(&grow, default_fuel());
    assert!(reason.contains("module trapped") && reason.contains("out of bounds"), "{reason}");

    let returned = module("", "(i32.const 7)");
    assert!(rejected(&returned, default_fuel()).contains("module returned 7"));
    let trap = module("", "(unreachable)");
    assert!(rejected(&trap, default_fuel()).contains("module trapped"));
}

#[test]
fn fail_messages_are_cut_short_and_made_valid() {
    // A 1 MiB message (16 pages of 'A'), and bytes that are not UTF-8.
    let long = wat(r#"(module
        (import "swarmvm" "fail" (func $fail (param i32 i32)))
        (memory (export "memory") 17)
        (func (export "run") (result i32)
          (local $i i32)
          (loop $fill
            (i32.store8 (local.get $i) (i32.const 65))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $fill (i32.lt_u (local.get $i) (i32.const 1048576))))
          (call $fail (i32.const 0) (i32.const 1048576)) (i32.const 0)))"#);
    let reason = rejected(&long, 100_000_000);
    let message = reason.split("module failed: ").nth(1).unwrap();
    assert!(message.len() <= 256 * 4 + 3, "{} bytes kept", message.len());
    assert!(message.starts_with("AAAA"));
    let binary = module(
        r#"(data (i32.const 0) "ok\ff\fe\n")"#,
        "(call $fail (i32.const 0) (i32.const 5)) (i32.const 0)",
    );
    let reason = rejected(&binary, default_fuel());
    assert!(reason.contains("module failed: ok\u{fffd}\u{fffd}\\n"), "{reason}");
    // A message outside memory traps instead.
    let outside = module("", "(call $fail (i32.const 65530) (i32.const 100)) (i32.const 0)");
    assert!(rejected(&outside, default_fuel()).contains("outside the module's memory"));
}

#[test]
fn keys_and_values_over_the_limits_trap() {
    let cases = [
        ("(call $set (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1))", "a key of 0 bytes"),
        (
            "(call $set (i32.const 0) (i32.const 257) (i32.const 0) (i32.const 1))",
            "a key of 257 bytes",
        ),
        (
            "(call $set (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 65537))",
            "a value of 65537 bytes",
        ),
        (
            "(call $set (i32.const 0) (i32.const 1) (i32.const 65000) (i32.const 1000))",
            "outside the module's memory",
        ),
        (
            "(drop (call $get (i32.const 0) (i32.const 1) (i32.const 65000) (i32.const 1000)))",
            "outside the module's memory",
        ),
        (
            "(drop (call $get (i32.const -1) (i32.const 1) (i32.const 0) (i32.const 0)))",
            "negative pointer",
        ),
    ];
    for (body, says) in cases {
        let reason = rejected(&module("", &format!("{body} (i32.const 0)")), default_fuel());
        assert!(reason.contains(says), "{body}: {reason}");
    }
    // Writing more than 1 MiB in one action traps, whatever the fuel.
    let flood = module(
        "",
        "(local $i i32)
         (loop $w
           (i32.store (i32.const 0) (local.get $i))
           (call $set (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 65536))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $w (i32.lt_u (local.get $i) (i32.const 100))))
         (i32.const 0)",
    );
    let reason = rejected(&flood, 1_000_000_000);
    assert!(reason.contains("set: the action write budget is spent"), "{reason}");
}

#[test]
fn modules_outside_the_abi_are_refused_when_checked() {
    let refused = |text: &str| check_module(&wat(text)).unwrap_err();
    let float = refused(
        r#"(module (memory (export "memory") 1) (func (export "run") (result i32) (drop (f64.const 1)) (i32.const 0)))"#,
    );
    assert!(matches!(&float, ModuleError::Feature(f) if f == "floating point"), "{float}");
    // Features a newer compiler may emit are named, each of them.
    for (body, named) in [
        ("(memory.copy (i32.const 0) (i32.const 1) (i32.const 1))", "bulk memory"),
        ("(drop (ref.null func))", "reference types"),
        (
            "(drop (i32.trunc_sat_f32_s (f32.const 1)))",
            "floating point, saturating float-to-int conversions",
        ),
    ] {
        let e = refused(&format!(
            r#"(module (memory (export "memory") 1) (func (export "run") (result i32) {body} (i32.const 0)))"#
        ));
        assert!(matches!(&e, ModuleError::Feature(f) if f == named), "{body}: {e}");
        assert!(e.to_string().contains(&format!("the module uses {named};")), "{e}");
    }
    let multi = refused(
        r#"(module (memory (export "memory") 1) (func $f (result i32 i32) (i32.const 0) (i32.const 0)) (func (export "run") (result i32) (call $f) (drop)))"#,
    );
    assert!(matches!(&multi, ModuleError::Feature(f) if f == "multi-value"), "{multi}");
    // Invalid for another reason: the validator's own words.
    let wrong = refused(
        r#"(module (memory (export "memory") 1) (func (export "run") (result i32) (i64.const 0)))"#,
    );
    assert!(matches!(wrong, ModuleError::Invalid(_)), "{wrong}");
    let import = refused(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) (memory (export "memory") 1) (func (export "run") (result i32) (i32.const 0)))"#,
    );
    assert!(matches!(import, ModuleError::Import { .. }), "{import}");
    let wrong_type = refused(
        r#"(module (import "swarmvm" "get" (func (param i32) (result i32))) (memory (export "memory") 1) (func (export "run") (result i32) (i32.const 0)))"#,
    );
    assert!(matches!(wrong_type, ModuleError::ImportType(_)), "{wrong_type}");
    let memory_import = refused(
        r#"(module (import "swarmvm" "memory" (memory 1)) (func (export "run") (result i32) (i32.const 0)))"#,
    );
    assert!(matches!(memory_import, ModuleError::Import { .. }), "{memory_import}");
    let start = refused(
        r#"(module (memory (export "memory") 1) (func $s) (start $s) (func (export "run") (result i32) (i32.const 0)))"#,
    );
    assert_eq!(start, ModuleError::StartFunction);
    let bulk = refused(
        r#"(module (memory (export "memory") 1) (func (export "run") (result i32) (memory.fill (i32.const 0) (i32.const 0) (i32.const 1)) (i32.const 0)))"#,
    );
    assert!(matches!(&bulk, ModuleError::Feature(f) if f == "bulk memory"), "{bulk}");
    let run_type = refused(
        r#"(module (memory (export "memory") 1) (func (export "run") (param i32) (result i32) (i32.const 0)))"#,
    );
    assert_eq!(run_type, ModuleError::RunType);
    let no_memory = refused(r#"(module (func (export "run") (result i32) (i32.const 0)))"#);
    assert_eq!(no_memory, ModuleError::NoMemory);
    // 2 MiB of data.
    let mut big = wat(
        r#"(module (memory (export "memory") 1) (func (export "run") (result i32) (i32.const 0)))"#,
    );
    big.extend(std::iter::repeat_n(0u8, 2 << 20));
    assert!(matches!(check_module(&big), Err(ModuleError::TooLarge { .. })));
    // Sign extension and mutable globals are allowed.
    check_module(&wat(r#"(module (global $g (mut i32) (i32.const 0)) (memory (export "memory") 1)
        (func (export "run") (result i32) (global.set $g (i32.extend8_s (i32.const 255))) (i32.const 0)))"#))
    .unwrap();
}

#[test]
fn an_action_never_sees_what_an_earlier_one_left_in_memory_or_globals() {
    // Returns 0 only when memory byte 100 and the global are as at instantiation, then
    // changes both (and grows memory every other time).
    let nosy = module(
        r#"(global $g (mut i32) (i32.const 5))"#,
        "(if (i32.or (i32.ne (i32.load8_u (i32.const 100)) (i32.const 0))
                     (i32.ne (global.get $g) (i32.const 5)))
           (then (return (i32.const 9))))
         (i32.store8 (i32.const 100) (i32.const 1))
         (global.set $g (i32.const 6))
         (drop (memory.grow (i32.const 1)))
         (i32.const 0)",
    );
    let (mut m, _) = machine(&[("nosy", &nosy, default_fuel())]);
    let many: Vec<_> = (0..10).map(|_| json!({"action": "nosy"})).collect();
    assert!(run(&mut m, WALLETS[0], &many).is_applied());
    let no_grow = module(
        r#"(global $g (mut i32) (i32.const 5))"#,
        "(if (i32.or (i32.ne (i32.load8_u (i32.const 100)) (i32.const 0))
                     (i32.ne (global.get $g) (i32.const 5)))
           (then (return (i32.const 9))))
         (i32.store8 (i32.const 100) (i32.const 1))
         (global.set $g (i32.const 6))
         (i32.const 0)",
    );
    let (mut m, _) = machine(&[("still", &no_grow, default_fuel())]);
    let many: Vec<_> = (0..10).map(|_| json!({"action": "still"})).collect();
    assert!(run(&mut m, WALLETS[0], &many).is_applied(), "reused instances are reset");
}

#[test]
fn a_reset_restores_data_and_zeros_in_every_chunk_of_every_page() {
    // Two pages with data in the first and in the last kilobyte of the first page; every
    // action checks bytes that are data or zeros at instantiation, across both pages, then
    // changes them all (so the reset must copy data back and zero what it finds written).
    let spots =
        [(2_000, 97), (65_530, 122), (0, 0), (1_024, 0), (65_535, 0), (65_536, 0), (131_071, 0)];
    let checks: String = spots
        .iter()
        .map(|(at, was)| {
            format!(
                "(if (i32.ne (i32.load8_u (i32.const {at})) (i32.const {was})) (then (return (i32.const 9))))
                 (i32.store8 (i32.const {at}) (i32.const 255))"
            )
        })
        .collect();
    let module_text = format!(
        r#"(module (memory (export "memory") 2)
            (data (i32.const 2000) "abc") (data (i32.const 65530) "z")
            (func (export "run") (result i32) {checks} (i32.const 0)))"#
    );
    let bytes = wat(&module_text);
    let (mut m, _) = machine(&[("spots", &bytes, default_fuel())]);
    let many: Vec<_> = (0..5).map(|_| json!({"action": "spots"})).collect();
    // Two contracts: the second's instance starts from the image the first one kept.
    assert!(run(&mut m, WALLETS[0], &many).is_applied(), "one contract");
    assert!(run(&mut m, WALLETS[0], &many).is_applied(), "a second contract");
}
