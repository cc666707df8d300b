//! The control API through a real Unix socket of a real daemon (libvirt's test driver, a
//! real SQLite profile): the CLI and curl against it, hostile and malformed requests, the
//! metrics in Prometheus text format, overrides that change the next allocation and survive
//! a restart, and (as root, creating test users) who may read and who may change.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code)] // not every helper is used here
mod common;

const BIN: &str = env!("CARGO_BIN_EXE_prescient");

/// A daemon running a policy, its files in a directory every user may enter.
struct Daemon {
    child: Child,
    /// Taken by [`Daemon::stop`] to start another daemon on the same files.
    dir: Option<tempfile::TempDir>,
}

impl Daemon {
    fn start(config: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Self::start_in(dir, config)
    }

    fn start_in(dir: tempfile::TempDir, config: &str) -> Daemon {
        Self::start_with(dir, config, &["--policy", "static"])
    }

    /// A daemon with `args` (the policy's, or none) besides its config.
    fn start_with(dir: tempfile::TempDir, config: &str, args: &[&str]) -> Daemon {
        Self::start_full(dir, config, args, "off")
    }

    /// With `/metrics` served over TCP at `metrics` (ADDR:PORT, or "off").
    fn start_serving(dir: tempfile::TempDir, config: &str, metrics: &str) -> Daemon {
        Self::start_full(dir, config, &["--policy", "static"], metrics)
    }

    fn start_full(dir: tempfile::TempDir, config: &str, args: &[&str], metrics: &str) -> Daemon {
        let cfg = dir.path().join("prescient.toml");
        std::fs::write(&cfg, config).unwrap();
        let db = dir.path().join("profile.db");
        let child = common::daemon_with_metrics(Path::new(BIN), &db, metrics)
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            dir: Some(dir),
        };
        d.wait_for_cycles(2);
        d
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn socket(&self) -> PathBuf {
        common::socket_of(&self.path().join("profile.db"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("daemon.log")).unwrap_or_default()
    }

    /// Wait until the daemon has run `n` cycles (as `status` says).
    fn wait_for_cycles(&mut self, n: u64) {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!("the daemon exited ({s}):\n{}", self.log());
            }
            if let Ok((200, body)) = request(&self.socket(), "GET", "/v1/status", "")
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
                && v["cycles"].as_u64().unwrap_or(0) >= n
            {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no {n} cycles in 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `prescient --socket … ARGS` as root (or whoever runs the tests).
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .unwrap()
    }

    fn stop(mut self) -> tempfile::TempDir {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "daemon exit {status}:\n{}", self.log());
        assert!(!self.socket().exists(), "the socket is removed at exit");
        self.dir.take().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 request; the status and body of the answer.
fn request(socket: &Path, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let (head, rest) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, rest.to_string()))
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// The newest recorded memory allocation (KiB) of the test driver's tenant.
fn newest_mem_allocation(db: &Path) -> f64 {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row(
        "SELECT mem_kib FROM allocations ORDER BY ts_ms DESC LIMIT 1",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn operators_steer_the_daemon_through_the_cli_and_it_survives_a_restart() {
    let d = Daemon::start("");
    let status = json(&d.cli(&["status", "--json"]));
    assert_eq!(status["backend"], "libvirt test:///default");
    assert!(status["policy"].as_str().unwrap().starts_with("static"));
    assert_eq!(status["paused"], false);
    let human = ok(&d.cli(&["status"]));
    assert!(
        human.contains("last cycle:") && human.contains("applied"),
        "{human}"
    );
    // No rise in usage yet: zeros per resource, in the text and the JSON.
    assert!(
        human.contains("  cpu   hour     0 / 0 / 0  day     0 / 0 / 0\n"),
        "{human}"
    );
    assert_eq!(status["rises"]["mem"]["day"]["not_covered"], 0, "{status}");

    let tenants = json(&d.cli(&["tenants", "--json"]));
    assert_eq!(tenants[0]["name"], "test");
    assert!(ok(&d.cli(&["tenants"])).contains("test"));
    // The test driver reports no usage: shown as missing, not failing.
    assert!(tenants[0]["usage"]["cpu"].is_null());
    let db = d.path().join("profile.db");
    let before = newest_mem_allocation(&db);
    assert!(
        before > 1024.0 * 1024.0,
        "static gives the one tenant the host: {before}"
    );

    // An override: refused with the reason when wrong, obeyed from the next cycle when right.
    let bad = d.cli(&[
        "override", "set", "test", "--min", "mem=4096", "--max", "mem=1024",
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("minimum"),
        "{bad:?}"
    );
    let unknown = d.cli(&["override", "set", "nosuch", "--class", "gold"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no tenant named"));
    ok(&d.cli(&[
        "override", "set", "test", "--class", "gold", "--max", "mem=1024",
    ]));
    let mut d = d;
    let cycles = json(&d.cli(&["status", "--json"]))["cycles"]
        .as_u64()
        .unwrap();
    d.wait_for_cycles(cycles + 3);
    let after = newest_mem_allocation(&db);
    assert!(
        after <= 1024.0 * 1024.0 + 1e-6,
        "the override's maximum holds: {after}"
    );
    let explain = json(&d.cli(&["explain", "test", "--json"]));
    assert_eq!(explain["override"]["class"], "gold");
    assert_eq!(explain["tenant"]["class"], "gold");
    assert_eq!(explain["bounds"]["mem"][1], 1024.0 * 1024.0);
    assert_eq!(explain["rises"]["cpu"]["hour"]["ahead"], 0, "{explain}");
    assert!(explain["last_rises"]["cpu"].is_null(), "{explain}");
    let text = ok(&d.cli(&["explain", "test"]));
    assert!(text.contains("an operator's override"), "{text}");
    assert!(
        text.contains("rises in usage (ahead / late / not covered): last hour 0 / 0 / 0"),
        "{text}"
    );

    // Pause and resume: the dry-run switch.
    ok(&d.cli(&["pause"]));
    assert_eq!(json(&d.cli(&["status", "--json"]))["paused"], true);
    // Every operator command answers JSON with --json, and takes --socket after it.
    let resumed = Command::new(BIN)
        .args(["resume", "--json", "--socket"])
        .arg(d.socket())
        .output()
        .unwrap();
    assert_eq!(json(&resumed), serde_json::json!({ "paused": false }));
    assert_eq!(json(&d.cli(&["pause", "--json"]))["paused"], true);
    ok(&d.cli(&["resume"]));
    assert_eq!(json(&d.cli(&["status", "--json"]))["paused"], false);

    // No intents on a tenant that is not forecast yet: a clear refusal.
    let intent = d.cli(&[
        "intent",
        "add",
        "test",
        "--start",
        "+1m",
        "--duration",
        "10m",
        "--cpu",
        "2",
    ]);
    let refusal = String::from_utf8_lossy(&intent.stderr);
    assert!(refusal.contains("not forecast yet"), "{refusal}");
    assert!(!refusal.contains("  "), "stray spaces: {refusal:?}");

    // A restart keeps the override.
    let dir = d.stop();
    let d = Daemon::start_in(dir, "");
    let list = json(&d.cli(&["override", "list", "--json"]));
    assert_eq!(list[0]["name"], "test");
    assert_eq!(list[0]["max"]["mem"], 1024.0 * 1024.0);
    assert_eq!(
        json(&d.cli(&["override", "clear", "test", "--json"]))["cleared"],
        true
    );
    assert_eq!(
        json(&d.cli(&["override", "list", "--json"])),
        serde_json::json!([])
    );
    let audit = std::fs::read_to_string(d.path().join("audit.log")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|l| {
        l["action"]
            .as_str()
            .unwrap()
            .starts_with("override set test")
            && l["result"] == "ok"
    }));
    assert!(
        lines
            .iter()
            .any(|l| l["result"].as_str().unwrap().starts_with("400"))
    );
    assert!(lines.iter().any(|l| l["action"] == "pause"));
    d.stop();
}

#[test]
fn curl_works_and_bad_requests_get_a_clear_4xx() {
    let d = Daemon::start("");
    let sock = d.socket();
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--unix-socket"])
            .arg(&sock)
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.parse::<u16>().unwrap(), body.to_string())
    };
    let (code, body) = curl(&["http://localhost/v1/status"]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"cycles\""));
    let (code, body) = curl(&[
        "-X",
        "PUT",
        "-d",
        r#"{"class":"bronze","ttl_seconds":600}"#,
        "http://localhost/v1/overrides/test",
    ]);
    assert_eq!(code, 200, "{body}");
    let (code, _) = curl(&["-X", "DELETE", "http://localhost/v1/overrides/test"]);
    assert_eq!(code, 200);
    for (args, want, says) in [
        (vec!["http://localhost/v1/nothing"], 404, "no such endpoint"),
        (
            vec!["-X", "DELETE", "http://localhost/v1/status"],
            405,
            "not allowed",
        ),
        (
            vec![
                "-X",
                "PUT",
                "-d",
                "{not json",
                "http://localhost/v1/overrides/test",
            ],
            400,
            "request body",
        ),
        (
            vec![
                "-X",
                "PUT",
                "-d",
                r#"{"clas":"gold"}"#,
                "http://localhost/v1/overrides/test",
            ],
            400,
            "clas",
        ),
        (
            vec![
                "-X",
                "PUT",
                "-d",
                r#"{"max":{"cpu_cores":1e999}}"#,
                "http://localhost/v1/overrides/test",
            ],
            400,
            "",
        ),
        (
            vec!["-X", "DELETE", "http://localhost/v1/intents/zz"],
            400,
            "whole number",
        ),
        (
            vec!["-X", "DELETE", "http://localhost/v1/overrides/test"],
            404,
            "no override",
        ),
        (
            vec!["-X", "POST", "http://localhost/v1/policy/reload"],
            400,
            "no policy file",
        ),
    ] {
        let (code, body) = curl(&args);
        assert_eq!(code, want, "{args:?}: {body}");
        assert!(body.contains(says), "{args:?}: {body}");
    }
    let big = "x".repeat(70 * 1024);
    let (code, _) = curl(&[
        "-X",
        "PUT",
        "-d",
        &big,
        "http://localhost/v1/overrides/test",
    ]);
    assert_eq!(code, 413);

    // Garbage, half requests and a stuck client: answered or dropped, the daemon goes on
    // and others are served meanwhile.
    let mut stuck = UnixStream::connect(&sock).unwrap();
    stuck
        .write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let t0 = Instant::now();
    assert_eq!(request(&sock, "GET", "/v1/status", "").unwrap().0, 200);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "a stuck client stalls others"
    );
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..200 {
        let mut bytes = Vec::new();
        for _ in 0..(i * 7 % 300) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push(seed as u8);
        }
        if i % 3 == 0 {
            bytes.splice(
                0..0,
                b"PUT /v1/overrides/test HTTP/1.1\r\nContent-Length: 9999\r\n\r\n"
                    .iter()
                    .copied(),
            );
        }
        let mut s = UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let mut stuck_answer = Vec::new();
    stuck
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = stuck.read_to_end(&mut stuck_answer);
    assert_eq!(request(&sock, "GET", "/v1/status", "").unwrap().0, 200);
    d.stop();
}

#[test]
fn metrics_parse_as_prometheus_text_with_conventional_names() {
    let d = Daemon::start("");
    let (code, text) = request(&d.socket(), "GET", "/metrics", "").unwrap();
    assert_eq!(code, 200);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let names: Vec<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for want in [
        "prescient_up",
        "prescient_cycles_total",
        "prescient_denials_total",
        "prescient_cycle_duration_seconds",
        "prescient_solve_duration_seconds",
        "prescient_host_capacity_memory_bytes",
        "prescient_tenant_allocation_memory_bytes",
        "prescient_tenant_allocation_cpu_cores",
        "prescient_rises_total",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for s in &scrape.samples {
        assert!(s.metric.starts_with("prescient_"), "{}", s.metric);
        if let prometheus_parse::Value::Counter(_) = s.value {
            assert!(s.metric.ends_with("_total"), "{}", s.metric);
        }
    }
    assert!(
        text.contains("prescient_rise_late_seconds_count{resource=\"net\"} 0\n"),
        "{text}"
    );
    let alloc = (scrape.samples.iter())
        .find(|s| s.metric == "prescient_tenant_allocation_memory_bytes")
        .unwrap();
    assert_eq!(alloc.labels.get("tenant"), Some("test"));
    d.stop();
}

/// Create a group and a system user once (idempotent); the user's uid and primary gid.
fn ensure_user(name: &str, groups: &[&str]) -> (u32, u32) {
    for g in groups {
        let _ = Command::new("groupadd").args(["-f", g]).status();
    }
    if !Command::new("id")
        .arg(name)
        .output()
        .unwrap()
        .status
        .success()
    {
        let mut cmd = Command::new("useradd");
        cmd.args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ]);
        if !groups.is_empty() {
            cmd.args(["--groups", &groups.join(",")]);
        }
        assert!(cmd.arg(name).status().unwrap().success(), "useradd {name}");
    }
    let id = |flag| {
        let out = Command::new("id").args([flag, name]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

fn gid_of(group: &str) -> u32 {
    let out = Command::new("getent")
        .args(["group", group])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split(':').nth(2).unwrap().trim().parse().unwrap()
}

#[test]
#[ignore = "needs root to create the test users; scripts/test runs it"]
fn a_stranger_is_refused_a_reader_reads_and_root_and_admins_change() {
    assert!(
        nix_is_root(),
        "run as root (scripts/test does): the test creates users and groups"
    );
    let read = "prescient-test";
    let admin = "prescient-test-admin";
    let (outsider_uid, outsider_gid) = ensure_user("prescient-test-outsider", &[]);
    let (reader_uid, _) = ensure_user("prescient-test-reader", &[read]);
    let (admin_uid, _) = ensure_user("prescient-test-op", &[read, admin]);
    let read_gid = gid_of(read);
    let d = Daemon::start(&format!(
        "[control]\ngroup = \"{read}\"\nadmin_group = \"{admin}\"\nmetrics_listen = \"off\"\n"
    ));
    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // std's Command drops supplementary groups when it changes user: the socket group is
    // given as the primary group of the readers, membership of the admin group comes from
    // the group database.
    let as_user = |uid: u32, gid: u32, args: &[&str]| cli_as(&d, uid, gid, args);
    let stranger = as_user(outsider_uid, outsider_gid, &["status"]);
    assert!(!stranger.status.success());
    let err = String::from_utf8_lossy(&stranger.stderr);
    assert!(err.contains("permission denied"), "{err}");

    let reads = as_user(reader_uid, read_gid, &["status", "--json"]);
    assert!(reads.status.success(), "{reads:?}");
    assert!(as_user(reader_uid, read_gid, &["tenants"]).status.success());
    assert!(
        as_user(reader_uid, read_gid, &["explain", "test"])
            .status
            .success()
    );
    let change = as_user(
        reader_uid,
        read_gid,
        &["override", "set", "test", "--class", "gold"],
    );
    assert!(!change.status.success());
    let err = String::from_utf8_lossy(&change.stderr);
    assert!(err.contains("may read but not change"), "{err}");
    assert!(!as_user(reader_uid, read_gid, &["pause"]).status.success());

    let op = as_user(
        admin_uid,
        read_gid,
        &["override", "set", "test", "--class", "gold"],
    );
    assert!(op.status.success(), "{op:?}");
    ok(&d.cli(&["override", "clear", "test"]));
    ok(&d.cli(&["pause"]));
    ok(&d.cli(&["resume"]));

    let audit = std::fs::read_to_string(d.path().join("audit.log")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by = |uid: u32| lines.iter().filter(move |l| l["uid"] == uid);
    assert!(by(reader_uid).all(|l| l["result"].as_str().unwrap().starts_with("403")));
    assert_eq!(by(reader_uid).count(), 2, "{audit}");
    assert!(by(admin_uid).any(|l| l["result"] == "ok"));
    assert_eq!(by(0).count(), 3, "{audit}");
    d.stop();
}

/// `prescient --socket … ARGS` as the user `uid` with the (only) group `gid`.
fn cli_as(d: &Daemon, uid: u32, gid: u32, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--socket")
        .arg(d.socket())
        .args(args)
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap()
}

fn nix_is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The audit log's lines, parsed.
fn audit_lines(d: &Daemon) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(d.path().join("audit.log")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_change_is_audited_even_when_its_client_goes_away() {
    let d = Daemon::start("");
    let changes = [
        (
            "PUT",
            "/v1/overrides/test",
            r#"{"class":"gold"}"#,
            "override set test",
        ),
        ("POST", "/v1/pause", "", "pause"),
        ("POST", "/v1/resume", "", "resume"),
    ];
    for (method, path, body, described) in changes {
        // As `socat` or `nc -N` do: send, close the write side, read the answer.
        let mut s = UnixStream::connect(d.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{described}: {answer:?}"
        );
        let t0 = Instant::now();
        while !audit_lines(&d)
            .iter()
            .any(|l| l["action"].as_str().unwrap().starts_with(described))
        {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{described}: no audit line in 10 s: {:?}\n{}",
                audit_lines(&d),
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let list = json(&d.cli(&["override", "list", "--json"]));
    assert_eq!(list[0]["name"], "test", "the override was made: {list}");
    for l in audit_lines(&d) {
        assert_eq!(l["result"], "ok", "{l}");
        assert_eq!(l["uid"], nix_uid(), "{l}");
    }
    d.stop();
}

fn nix_uid() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A free TCP port on the loopback (bound and released: the daemon binds it next).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_flood_of_metrics_connections_leaves_the_control_socket_served() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_serving(dir, "", &addr);
    // Anyone on the host may connect to the metrics listener: hold more idle connections
    // than it serves.
    let held: Vec<std::net::TcpStream> = (0..24)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let status = d.cli(&["status", "--json"]);
    assert_eq!(json(&status)["cycles"].as_u64().map(|c| c > 0), Some(true));
    // One more scrape is told why it is not served, not reset.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("metrics connections are open already"),
        "{answer}"
    );
    drop(held);
    d.stop();
}

#[test]
fn a_body_shorter_than_its_length_is_told_so() {
    let d = Daemon::start("");
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT /v1/overrides/test HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{\"class\":"
    )
    .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("Content-Length: 100"), "{answer}");
    assert!(!answer.contains("over 65536"), "{answer}");
    d.stop();
}

/// Holds `n` idle connections to `socket`, then asks for the status on one more and prints
/// the answer and `HELD`, and keeps them all a few seconds more.
const HOLDER: &str = r#"
use IO::Socket::UNIX; use Socket;
my ($path, $n) = @ARGV; my @held; $| = 1;
for (1..$n) { push @held, IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path) or die "connect: $!\n"; }
select(undef, undef, undef, 0.3);
my $c = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path) or die "connect: $!\n";
print $c "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
local $/; my $answer = <$c>; print "$answer\nHELD\n"; sleep 4;
"#;

#[test]
#[ignore = "needs root to create the test users; scripts/test runs it"]
fn readers_cannot_crowd_out_admins_and_an_admin_needs_no_reader_group() {
    assert!(nix_is_root(), "run as root (scripts/test does)");
    let read = "prescient-test";
    let admin = "prescient-test-admin";
    let (reader_uid, _) = ensure_user("prescient-test-reader", &[read]);
    let (only_admin_uid, _) = ensure_user("prescient-test-adminonly", &[admin]);
    let read_gid = gid_of(read);
    // std's Command drops supplementary groups: the admin group is given as primary group.
    let only_admin_gid = gid_of(admin);
    let d = Daemon::start(&format!(
        "[control]\ngroup = \"{read}\"\nadmin_group = \"{admin}\"\n"
    ));
    let as_user = |uid: u32, gid: u32, args: &[&str]| cli_as(&d, uid, gid, args);
    // In the admin group only (not the socket's group): may connect, read and change.
    ok(&as_user(only_admin_uid, only_admin_gid, &["status"]));
    ok(&as_user(
        only_admin_uid,
        only_admin_gid,
        &["override", "set", "test", "--class", "gold"],
    ));

    // A reader holds more connections than readers are served.
    let mut holder = Command::new("perl")
        .args(["-e", HOLDER])
        .arg(d.socket())
        .arg((server_limits::READERS + 8).to_string())
        .uid(reader_uid)
        .gid(read_gid)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut stdout = holder.stdout.take().unwrap();
    let mut buf = [0u8; 4096];
    while !out.contains("HELD") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "the holder stopped: {out}");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(out.contains("connections of readers already"), "{out}");
    // Admins are served all the same, root and the admin group alike.
    ok(&d.cli(&["status"]));
    ok(&as_user(only_admin_uid, only_admin_gid, &["status"]));
    let _ = holder.kill();
    let _ = holder.wait();
    d.stop();
}

/// The daemon's limits, as `src/control/server.rs` sets them.
mod server_limits {
    pub const READERS: usize = prescient::control::server::READER_CONNECTIONS;
}

#[test]
fn the_daemon_listens_where_prescient_socket_says() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("from-env.sock");
    let mut child = Command::new(BIN)
        .args(["daemon", "--uri", "test:///default", "--interval", "0.05"])
        .args(["--metrics", "off", "--db"])
        .arg(dir.path().join("profile.db"))
        .env("PRESCIENT_SOCKET", &socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while request(&socket, "GET", "/v1/status", "").is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "nothing listens at $PRESCIENT_SOCKET"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The operator's commands find it the same way.
    let status = Command::new(BIN)
        .args(["status", "--json"])
        .env("PRESCIENT_SOCKET", &socket)
        .output()
        .unwrap();
    ok(&status);
    let _ = child.kill();
    let _ = child.wait();
}

/// One raw HTTP/1.1 request with extra header lines; the whole head and the body.
fn request_with(socket: &Path, method: &str, path: &str, headers: &str) -> (String, String) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.to_string(), body.to_string())
}

#[test]
fn metrics_negotiate_their_format_answer_head_and_pass_promtool() {
    let d = Daemon::start("");
    let sock = d.socket();
    let (head, text) = request_with(&sock, "GET", "/metrics", "");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(!text.contains("# EOF"), "{text}");
    assert!(
        text.contains("# TYPE prescient_cycles_total counter"),
        "{text}"
    );
    let (head, om) = request_with(
        &sock,
        "GET",
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n",
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    let (head, body) = request_with(&sock, "HEAD", "/metrics", "");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.is_empty(), "HEAD has no body: {body}");
    // One naming style: the capped flag is one metric with a resource label.
    assert!(text.contains("prescient_tenant_capped{"), "{text}");
    assert!(!text.contains("prescient_tenant_capped_mem"), "{text}");
    // Disk and network capacity are unknown on the test driver: the tenant is unthrottled,
    // so its allocation has no sample (and the API says null).
    assert!(
        !text.contains("prescient_tenant_allocation_disk_bytes_per_second"),
        "{text}"
    );
    let tenants: serde_json::Value =
        serde_json::from_str(&request(&sock, "GET", "/v1/tenants", "").unwrap().1).unwrap();
    assert!(tenants[0]["allocation"]["disk"].is_null(), "{tenants}");
    assert!(tenants[0]["allocation"]["cpu"].is_number(), "{tenants}");
    let table = ok(&d.cli(&["tenants"]));
    assert!(
        table.contains("unlimited") && !table.contains("0.00M"),
        "{table}"
    );
    match Command::new("promtool").arg("--version").output() {
        Err(_) => eprintln!(
            "SKIPPED promtool check: promtool is not installed (Debian package prometheus)"
        ),
        Ok(_) => {
            // promtool reads Prometheus' text format.
            let mut check = Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (check.stdin.take().unwrap())
                .write_all(text.as_bytes())
                .unwrap();
            let out = check.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics:\n{}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    d.stop();
}

#[test]
fn overrides_the_domain_or_the_host_cannot_honour_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "").unwrap();
    let policy_arg = policy.to_str().unwrap().to_string();
    let d = Daemon::start_with(
        dir,
        "",
        &["--policy", "static", "--policy-file", &policy_arg],
    );
    // More than the domain's vCPUs can use.
    let out = d.cli(&["override", "set", "test", "--min", "cpu=20"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vCPUs") && err.contains("cpu"), "{err}");
    // A resource given twice, a TTL beyond 30 days: refused by the command, naming the flag.
    let out = d.cli(&[
        "override", "set", "test", "--min", "cpu=1", "--min", "cpu=3",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--min cpu is given twice"),
        "{err}"
    );
    let out = d.cli(&["override", "set", "test", "--class", "gold", "--ttl", "40d"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--ttl") && err.contains("30 days"),
        "{err}"
    );
    // The host keeps back all but one core: a minimum of 2 cannot fit.
    std::fs::write(&policy, "[host.reserve]\ncpu_cores = 15\n").unwrap();
    ok(&d.cli(&["policy", "reload"]));
    let mut d = d;
    let c = d.cli(&["status", "--json"]);
    let cycles = json(&c)["cycles"].as_u64().unwrap();
    d.wait_for_cycles(cycles + 1);
    let out = d.cli(&["override", "set", "test", "--min", "cpu=2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot be honoured"),
        "{err}"
    );
    ok(&d.cli(&["override", "set", "test", "--min", "cpu=0.5"]));
    // A reserve raised later leaves 0.2 cores: the reservation no longer fits, and the
    // daemon says so in status, the log and a metric.
    std::fs::write(&policy, "[host.reserve]\ncpu_cores = 15.8\n").unwrap();
    ok(&d.cli(&["policy", "reload"]));
    let cycles = json(&d.cli(&["status", "--json"]))["cycles"]
        .as_u64()
        .unwrap();
    d.wait_for_cycles(cycles + 2);
    let status = ok(&d.cli(&["status"]));
    assert!(
        status.contains("WARNING") && status.contains("cpu reservations (0.50)"),
        "{status}"
    );
    assert!(status.contains("cpu SHORT"), "{status}");
    let (_, metrics) = request_with(&d.socket(), "GET", "/metrics", "");
    assert!(
        metrics.contains("prescient_reservations_unmet{resource=\"cpu\"} 1"),
        "{metrics}"
    );
    assert!(
        d.log().contains("reservations exceed what they may have"),
        "{}",
        d.log()
    );
    // A reserve of more than the host has is refused, and the rules in force stay.
    std::fs::write(&policy, "[host.reserve]\ncpu_cores = 1e12\n").unwrap();
    let out = d.cli(&["policy", "reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("host.reserve cpu"),
        "{err}"
    );
    // The baseline explains what bound it.
    let text = ok(&d.cli(&["explain", "test"]));
    assert!(
        text.contains("its static share of the host")
            && text.contains("held down by the host's capacity")
            && !text.contains("no reasons"),
        "{text}"
    );
    let status = ok(&d.cli(&["status"]));
    assert!(
        status.contains("capacity:") && !status.contains("room to spare"),
        "{status}"
    );
    d.stop();
}

#[test]
fn without_a_policy_overrides_are_refused_as_pause_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = Daemon::start_with(dir, "", &[]);
    let out = d.cli(&["override", "set", "test", "--class", "gold"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no allocation policy"),
        "{err}"
    );
    assert!(
        json(&d.cli(&["override", "list", "--json"]))
            .as_array()
            .unwrap()
            .is_empty()
    );
    d.stop();
}

#[test]
fn a_host_reserve_beyond_the_host_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[host.reserve]\ncpu_cores = 1e12\n").unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = common::daemon(Path::new(BIN), &dir.path().join("profile.db"))
        .args(["--policy", "static", "--policy-file"])
        .arg(&policy)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.is_some_and(|s| !s.success()), "it ran on:\n{err}");
    assert!(
        err.contains("host.reserve cpu") && err.contains("line 2"),
        "{err}"
    );
}
