//! `scripts/demo.sh`: the whole scenario one command at a time, as the README says.

use std::process::Command;

#[test]
fn the_demo_script_walks_the_whole_scenario() {
    let work = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/demo.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("SWARMVM", env!("CARGO_BIN_EXE_swarmvm"))
        .env("WORK", work.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for step in ["== wallets", "== registration tokens", "== contracts", "== the bundle"] {
        assert!(stdout.contains(step), "{step}: {stdout}");
    }
    assert!(stdout.contains("6 contracts"), "{stdout}");
    assert_eq!(stdout.matches("6 contracts applied, 0 rejected").count(), 3, "{stdout}");
    assert!(stdout.contains("proposal    P001 Increase Research Funding: 3 votes"), "{stdout}");
    assert!(stdout.contains("all three peers agree"), "{stdout}");
    // The forged token was refused with a one-line reason.
    let forged = std::fs::read_to_string(work.path().join("forged.err")).unwrap();
    assert!(forged.starts_with("error: ") && forged.trim_end().lines().count() == 1, "{forged}");
    // Each peer fetched the bundle itself and holds a ledger.
    for i in 1..=3 {
        assert!(work.path().join(format!("peer{i}/downloads/bundle-1/manifest.jwt")).exists());
        assert!(work.path().join(format!("peer{i}/ledger.redb")).exists());
    }
}
