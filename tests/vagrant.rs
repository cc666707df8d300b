//! The Vagrant lab (`vagrant/`): its Vagrantfile validates, and (ignored in a plain
//! `cargo test`; `scripts/test` runs it as its own step) the box builds, `vagrant up`
//! brings up the tenants, `vagrant ssh` answers, prescient lists and manages them and
//! `scripts/lab vagrant-down` leaves nothing behind. Needs root, libvirtd and the packages
//! `scripts/lab deps --vagrant` installs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

#[path = "common/lab_host.rs"]
mod lab_host;
use lab_host::virsh;

const TENANTS: usize = 3;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn vagrant(args: &[&str]) -> Command {
    let mut cmd = Command::new("vagrant");
    cmd.current_dir(root().join("vagrant")).args(args);
    cmd
}

fn vagrant_domains() -> Vec<String> {
    lab_host::domains(&["--all"], "prescient-vagrant-")
}

fn schedinfo(domain: &str, field: &str) -> i64 {
    let out = virsh(&["schedinfo", domain]);
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == field)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in `virsh schedinfo {domain}`:\n{out}"))
}

/// `vagrant validate` with `var=value` fails; its error output.
fn refused(var: &str, value: &str) -> String {
    let bad = vagrant(&["validate"])
        .env(var, value)
        .output()
        .expect("vagrant");
    assert!(!bad.status.success(), "{var}={value} was accepted");
    String::from_utf8_lossy(&bad.stderr).into_owned()
}

#[test]
fn vagrantfile_validates_and_names_a_bad_setting() {
    let out = run(&mut vagrant(&["validate"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("validated successfully"),
        "{out:?}"
    );
    let text = refused("PRESCIENT_TENANTS", "zero");
    assert!(
        text.contains("PRESCIENT_TENANTS=\"zero\" is not a positive integer"),
        "{text}"
    );
    // A schedule with random busy phases, and a chance that is no percentage.
    run(vagrant(&["validate"]).env("PRESCIENT_SCHEDULE", "idle,cpu,rand"));
    let text = refused("PRESCIENT_RAND_PERCENT", "200");
    assert!(
        text.contains("PRESCIENT_RAND_PERCENT=\"200\" must be 0..100"),
        "{text}"
    );
}

/// Tears the Vagrant lab down even when an assertion fails half-way.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/lab"))
            .arg("vagrant-down")
            .status();
    }
}

#[test]
#[ignore = "boots Vagrant machines (minutes): scripts/test runs it"]
fn vagrant_lab_comes_up_is_managed_and_goes() {
    let _down = Down;
    let t0 = Instant::now();
    run(Command::new(root().join("scripts/lab")).args([
        "vagrant-up",
        "--tenants",
        &TENANTS.to_string(),
        "--phase-seconds",
        "15",
    ]));
    eprintln!("vagrant-up: {:.0} s", t0.elapsed().as_secs_f64());
    let names = vagrant_domains();
    let want: Vec<String> = (1..=TENANTS)
        .map(|i| format!("prescient-vagrant-tenant-{i}"))
        .collect();
    assert_eq!(names, want);

    // Vagrant reaches each guest over SSH forwarded on loopback.
    let out = run(&mut vagrant(&["ssh", "tenant-1", "-c", "uptime"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("load average"),
        "{out:?}"
    );
    let out = run(&mut vagrant(&["ssh-config", "tenant-2"]));
    let config = String::from_utf8_lossy(&out.stdout);
    assert!(config.contains("HostName 127.0.0.1"), "{config}");
    // The workload agent runs, on the lab NIC the Vagrantfile gave it.
    let out = run(&mut vagrant(&[
        "ssh",
        "tenant-2",
        "-c",
        "systemctl is-active prescient-lab-workload && ip -brief addr",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("169.254.77.112/24"), "{text}");

    // The management NIC is QEMU's user-mode one: no host bridge carries it.
    let xml = virsh(&["dumpxml", &want[0]]);
    assert_eq!(xml.matches("<interface type=").count(), 1, "{xml}");
    assert!(xml.contains("network='prescient-lab'"), "{xml}");
    assert!(xml.contains("hostfwd=tcp:127.0.0.1:"), "{xml}");
    assert!(xml.contains("class=\"gold\""), "{xml}");
    assert!(xml.contains("<stats period='2'/>"), "{xml}");

    // prescient lists the tenants with their classes and sets their CPU shares.
    let before: Vec<i64> = want.iter().map(|d| schedinfo(d, "cpu_shares")).collect();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("prescient.sock");
    let db = dir.path().join("profile.db");
    let log = dir.path().join("daemon.log");
    let mut daemon = lab_host::daemon(&db, &socket)
        .args(["--policy", "prescient"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting the daemon");
    let managed = wait_managed(&socket, &want, &before, Duration::from_secs(120));
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let status = daemon.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let (classes, after) = managed.unwrap_or_else(|e| panic!("{e}\ndaemon log:\n{text}"));
    assert!(status.success(), "daemon exit {status:?}:\n{text}");
    assert_eq!(classes, ["gold", "silver", "bronze"]);
    assert_ne!(after, before, "no CPU shares changed:\n{text}");
    eprintln!("cpu_shares before {before:?}, with prescient {after:?}");

    // Down: no domain, no box volume in the pool.
    run(Command::new(root().join("scripts/lab")).arg("vagrant-down"));
    assert_eq!(vagrant_domains(), Vec::<String>::new());
    let vols = virsh(&["vol-list", "default"]);
    assert!(!vols.contains("lab-tenant_vagrant_box_image"), "{vols}");
}

type Managed = (Vec<String>, Vec<i64>);

/// Until the daemon lists every domain in `names` and has changed some CPU share from
/// `before`: the classes it lists (in `names`' order) and the shares then.
fn wait_managed(
    socket: &Path,
    names: &[String],
    before: &[i64],
    within: Duration,
) -> Result<Managed, String> {
    let t0 = Instant::now();
    let mut last = String::new();
    while t0.elapsed() < within {
        std::thread::sleep(Duration::from_secs(2));
        let Ok(out) = Command::new(env!("CARGO_BIN_EXE_prescient"))
            .arg("--socket")
            .arg(socket)
            .args(["tenants", "--json"])
            .output()
        else {
            continue;
        };
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        let Ok(list) = serde_json::from_str::<Vec<serde_json::Value>>(&last) else {
            continue;
        };
        let classes: Option<Vec<String>> = names
            .iter()
            .map(|n| {
                let t = list.iter().find(|t| t["name"] == n.as_str())?;
                t["allocation"].as_object()?;
                Some(t["class"].as_str()?.to_string())
            })
            .collect();
        let after: Vec<i64> = names.iter().map(|d| schedinfo(d, "cpu_shares")).collect();
        if let Some(classes) = classes
            && after != before
        {
            return Ok((classes, after));
        }
    }
    Err(format!(
        "the daemon did not list and manage {names:?} within {within:?}; last `tenants --json`:\n{last}"
    ))
}
