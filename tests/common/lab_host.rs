//! The system libvirtd the lab's guests run on (the lab and the Vagrant lab): `virsh`
//! against it and `prescient daemon` on it.

use std::path::Path;
use std::process::Command;

pub const URI: &str = "qemu:///system";

/// `virsh -c URI ARGS…`'s stdout; panics with its stderr when it fails.
pub fn virsh(args: &[&str]) -> String {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .expect("running virsh");
    assert!(
        out.status.success(),
        "virsh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The sorted names `virsh list --name LIST_ARGS…` prints that start with `prefix`.
pub fn domains(list_args: &[&str], prefix: &str) -> Vec<String> {
    let mut args = vec!["list", "--name"];
    args.extend_from_slice(list_args);
    let mut names: Vec<String> = virsh(&args)
        .lines()
        .map(str::trim)
        .filter(|n| n.starts_with(prefix))
        .map(String::from)
        .collect();
    names.sort();
    names
}

/// `prescient daemon` on the system libvirtd every 2 s, with the profile `db` and the
/// control socket `socket` (no metrics listener).
pub fn daemon(db: &Path, socket: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prescient"));
    cmd.args([
        "daemon",
        "--uri",
        URI,
        "--interval",
        "2",
        "--metrics",
        "off",
    ])
    .arg("--socket")
    .arg(socket)
    .arg("--db")
    .arg(db);
    cmd
}
