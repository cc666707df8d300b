//! Domain names are the host's users' to choose: a newline, a control character or a
//! right-to-left override in one must neither split a log line nor break the tenants table,
//! and wide characters must not misalign it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_prescient");
const FORGED: &str = "2026-12-07T00:00:00Z  INFO prescient: forged";

fn node_xml() -> String {
    let domain = |name: &str, n: u32| {
        format!(
            "<domain type='test'><name>{name}</name>\
             <uuid>11111111-2222-3333-4444-55555555555{n}</uuid><memory>1048576</memory>\
             <vcpu>1</vcpu><os><type>hvm</type></os></domain>"
        )
    };
    format!(
        "<node>{}{}{}</node>",
        domain(&format!("evil&#10;{FORGED}"), 1),
        domain("数据库-ünï", 2),
        domain("plain", 3)
    )
}

fn cycles(socket: &std::path::Path) -> u64 {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return 0;
    };
    let _ = write!(
        s,
        "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["cycles"].as_u64())
        .unwrap_or(0)
}

#[test]
fn names_are_escaped_in_the_log_and_the_tenants_table() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node.xml");
    std::fs::write(&node, node_xml()).unwrap();
    let socket = dir.path().join("prescient.sock");
    let log = dir.path().join("daemon.log");
    let mut child = Command::new(BIN)
        .args(["daemon", "--interval", "0.05", "--metrics", "off", "--uri"])
        .arg(format!("test://{}", node.display()))
        .arg("--socket")
        .arg(&socket)
        .arg("--db")
        .arg(dir.path().join("profile.db"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while cycles(&socket) < 2 {
        if let Some(s) = child.try_wait().unwrap() {
            panic!(
                "daemon exited {s}: {}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no cycles in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(BIN)
        .arg("tenants")
        .arg("--socket")
        .arg(&socket)
        .output()
        .unwrap();
    // The tenant named by its UUID (its name cannot be typed): explain escapes it too.
    let explain = Command::new(BIN)
        .args([
            "explain",
            "11111111-2222-3333-4444-555555555551",
            "--socket",
        ])
        .arg(&socket)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.status.success(), "{out:?}");
    assert!(explain.status.success(), "{explain:?}");
    let explained = String::from_utf8(explain.stdout).unwrap();
    assert!(
        explained.lines().next().unwrap().contains("evil\\n2026"),
        "{explained}"
    );
    assert!(
        !explained.lines().any(|l| l.starts_with(FORGED)),
        "a name forged a line of explain:\n{explained}"
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let text = std::fs::read_to_string(&log).unwrap();

    // The log: one line per tenant that appeared, none starting with the forged text.
    assert!(
        !text.lines().any(|l| l.starts_with(FORGED)),
        "a name forged a log line:\n{text}"
    );
    let appeared: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("tenant appeared"))
        .collect();
    assert_eq!(appeared.len(), 3, "{text}");
    assert!(appeared.iter().any(|l| l.contains("evil\\n2026")), "{text}");

    // The table: 4 rows per tenant (one a resource) after the header, plus the units line;
    // the escaped name on its row, and every row's CLASS column at the same terminal column.
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 1 + 3 * 4 + 1, "{table}");
    assert!(table.contains("evil\\n2026"), "{table}");
    let class_col = |l: &str| {
        let at = ["silver", "CLASS"]
            .iter()
            .find_map(|w| l.find(w))
            .unwrap_or_else(|| panic!("no class in {l:?}"));
        unicode_width::UnicodeWidthStr::width(&l[..at])
    };
    let header = class_col(lines[0]);
    for l in lines.iter().filter(|l| l.contains("silver")) {
        assert_eq!(class_col(l), header, "misaligned:\n{table}");
    }
}
