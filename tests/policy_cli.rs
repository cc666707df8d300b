//! `prescient policy validate` and policy files in `simulate`, end to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn prescient(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(args)
        .output()
        .expect("running prescient")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// `policy validate FILE --json` of a valid file.
fn validate_json(file: &Path) -> serde_json::Value {
    let out = prescient(&["policy", "validate", file.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_shipped_policy_is_valid_and_is_the_default() {
    let file = root().join("policies/default.toml");
    let v = validate_json(&file);
    let weights: Vec<f64> = (0..3)
        .map(|i| v["classes"][i]["weight"].as_f64().unwrap())
        .collect();
    assert_eq!(weights, [4.0, 2.0, 1.0]);
    assert!(v["host_reserve"]["cpu"].is_null());
    let out = prescient(&["policy", "validate", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("valid") && text.contains("bronze"), "{text}");
}

#[test]
fn the_shipped_gold_target_policy_is_valid() {
    let file = root().join("policies/gold-995.toml");
    let v = validate_json(&file);
    for r in ["cpu", "mem", "disk", "net"] {
        assert_eq!(v["classes"][0]["target"][r], 0.995);
        assert!(v["classes"][1]["target"][r].is_null());
    }
}

#[test]
fn an_invalid_policy_is_refused_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.toml",
        "[classes.gold]\nweight = 4\n\n[classes.bronze]\nlimit = { cpu_cores = -1 }\n",
    );
    for args in [
        vec!["policy", "validate", bad.as_str()],
        vec![
            "simulate",
            "--trace",
            "tests/data/bitbrains-slice",
            "--policy-file",
            bad.as_str(),
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_prescient"))
            .current_dir(root())
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("bad.toml")
                && err.contains("line 5")
                && err.contains("classes.bronze.limit.cpu_cores"),
            "{args:?}: {err}"
        );
    }
    let missing = dir.path().join("none.toml");
    let out = prescient(&["policy", "validate", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read policy file"));
}

#[test]
fn a_policy_file_changes_what_the_replay_allocates() {
    // Bronze tenants held to a sliver of a core run short far more often than without the
    // limit; the replay records which file it obeyed.
    let dir = tempfile::tempdir().unwrap();
    let tight = write(
        dir.path(),
        "tight.toml",
        "[classes.bronze]\nlimit = { cpu_cores = 0.01 }\n",
    );
    let trace = root().join("tests/data/bitbrains-slice");
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "simulate",
            "--trace",
            trace.to_str().unwrap(),
            "--policy",
            "prescient",
            "--classes",
            "bronze=1",
            "--json",
        ];
        args.extend(extra);
        let out = prescient(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let free = run(&[]);
    let held = run(&["--policy-file", tight.as_str()]);
    let v = |r: &serde_json::Value| {
        r["resources"]["cpu"]["violation_rate"]["bronze"]
            .as_f64()
            .unwrap()
    };
    assert!(
        v(&held) > v(&free) * 3.0 + 0.1,
        "{} vs {}",
        v(&held),
        v(&free)
    );
    assert!(free["setup"]["policy_file"].is_null());
    assert_eq!(held["setup"]["policy_file"], tight.as_str());
}

#[test]
fn validate_refuses_a_reserve_beyond_this_host_and_names_the_first_foreign_table() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "huge.toml",
        "[host.reserve]\ncpu_cores = 1e12\n",
    );
    let out = prescient(&["policy", "validate", &f]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("huge.toml, line 2") && err.contains("host.reserve cpu"),
        "{err}"
    );
    let config = root().join("policies/prescient.toml");
    let out = prescient(&["policy", "validate", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("line 4") && err.contains("[daemon]"), "{err}");
}
