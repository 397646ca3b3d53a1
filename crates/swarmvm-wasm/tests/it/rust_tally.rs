//! `sdk/rust`'s tally, built by `sdk/rust/build.sh` (Debian's rustc 1.63 and its wasm32
//! standard library): shared by these tests and the modules bench (`benches/modules.rs`).

/// The module built into `out`.
pub(crate) fn build(out: &std::path::Path) -> Vec<u8> {
    assert!(
        std::path::Path::new("/usr/bin/rustc").is_file()
            && std::path::Path::new("/usr/lib/rustlib/wasm32-unknown-unknown").is_dir(),
        "Debian's rustc and its wasm32 standard library are not installed; install the Debian packages rustc and libstd-rust-dev-wasm32 (as .ci/run does)"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk/rust/build.sh");
    let output = std::process::Command::new("sh").arg(script).arg(out).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    std::fs::read(out.join("tally.wasm")).unwrap()
}
