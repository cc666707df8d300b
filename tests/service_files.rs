//! What an operator installs besides the binary: the systemd unit passes
//! `systemd-analyze verify`, the man page renders with `man -l`, the bash completions load.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_prescient");

fn stdout(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn systemd_accepts_the_unit() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string("policies/systemd/prescient.service").unwrap();
    assert!(unit.contains("After=libvirtd.service"));
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "RuntimeDirectory=prescient",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
    // Verified as installed, with ExecStart at this build's binary.
    let path = dir.path().join("prescient.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/prescient", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/lab deps installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_man_page_renders() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("prescient.1");
    std::fs::write(&page, stdout(&["man"])).unwrap();
    let out = Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(&page)
        .env("MANWIDTH", "80")
        .output()
        .expect("man (Debian package man-db; scripts/lab deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "NAME",
        "SYNOPSIS",
        "prescient",
        "daemon",
        "override",
        "explain",
        // Every command's options, on this one page.
        "prescient override set",
        "--policy-file <FILE>",
        "--ttl <DURATION>",
        "FILES",
        "/var/lib/prescient/profile.db",
        "ENVIRONMENT",
        "PRESCIENT_SOCKET",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    // No pointers to pages that are not generated; the name said once.
    assert!(!text.contains("prescient-daemon(1)"), "{text}");
    assert!(!text.contains("prescient - prescient"), "{text}");
}

#[test]
fn bash_completions_load_and_complete_subcommands() {
    let script = stdout(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prescient.bash");
    std::fs::write(&file, script).unwrap();
    // Load it, then ask the completion function what follows `prescient ov`.
    let probe = format!(
        "source {}; complete -p prescient >/dev/null || exit 3; \
         COMP_WORDS=(prescient ov); COMP_CWORD=1; COMP_LINE='prescient ov'; COMP_POINT=12; \
         _prescient prescient ov prescient; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && words.lines().any(|w| w == "override"),
        "{words}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
