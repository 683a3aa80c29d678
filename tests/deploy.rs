//! The systemd unit: `systemd-analyze verify` accepts it and its security
//! exposure stays at 2.0 or better. Runs where systemd-analyze exists (it is
//! part of Debian's systemd package); elsewhere it says so and passes.

mod common;

use std::process::Command;

fn analyze_available() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The shipped unit with ExecStart pointing at the binary under test.
fn unit_under_test() -> (tempfile::TempDir, std::path::PathBuf) {
    let text = std::fs::read_to_string(common::root().join("deploy/leadmail.service")).unwrap();
    assert!(text.contains("Type=notify") && text.contains("WatchdogSec="));
    let text = text.replace(
        "ExecStart=/usr/local/bin/leadmail run",
        &format!("ExecStart={} run", env!("CARGO_BIN_EXE_leadmail")),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leadmail.service");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    if !analyze_available() {
        eprintln!("systemd-analyze not found: unit not verified on this machine");
        return;
    }
    let (_dir, unit) = unit_under_test();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("exposure level for leadmail.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}
