//! `prescient simulate` end to end on a slice of real traces (tests/data/bitbrains-slice).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn slice() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bitbrains-slice")
}

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prescient"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("running prescient simulate")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn one_policy_prints_one_object_with_every_field() {
    let trace = slice();
    let v = json(&simulate(&[
        "--trace",
        trace.to_str().unwrap(),
        "--policy",
        "reactive",
        "--json",
    ]));
    assert_eq!(v["policy"], "reactive");
    assert_eq!(v["knob"], 0.2);
    for r in ["cpu", "mem", "disk", "net"] {
        let m = &v["resources"][r];
        for f in [
            "shortfall",
            "weighted_shortfall",
            "slack",
            "changes_per_tenant_day",
        ] {
            assert!(m[f].is_number(), "{r}.{f}");
        }
        for c in ["gold", "silver", "bronze"] {
            assert!(m["violation_rate"][c].is_number() || m["violation_rate"][c].is_null());
        }
    }
    assert!(v["overall"]["weighted_shortfall"].is_number());
}

#[test]
fn several_policies_print_a_list_and_the_oracle_wins() {
    let trace = slice();
    let v = json(&simulate(&[
        "--trace",
        trace.to_str().unwrap(),
        "--policy",
        "all",
        "--json",
    ]));
    let runs = v.as_array().unwrap();
    assert_eq!(runs.len(), 5);
    let ws = |p: &str| {
        runs.iter().find(|r| r["policy"] == p).unwrap()["overall"]["weighted_shortfall"]
            .as_f64()
            .unwrap()
    };
    for p in ["static", "reactive", "vpa", "nsigma"] {
        assert!(
            ws("oracle") <= ws(p),
            "oracle {} vs {p} {}",
            ws("oracle"),
            ws(p)
        );
    }
}

#[test]
fn sweep_reports_a_frontier_and_draws_it() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("frontier.svg");
    let trace = slice();
    let v = json(&simulate(&[
        "--trace",
        trace.to_str().unwrap(),
        "--policy",
        "reactive,static",
        "--sweep",
        "--json",
        "--plot",
        svg.to_str().unwrap(),
    ]));
    let runs = v.as_array().unwrap();
    assert_eq!(runs.len(), 8, "7 reactive margins and the one static split");
    let knobs: Vec<f64> = runs[..7]
        .iter()
        .map(|r| r["knob"].as_f64().unwrap())
        .collect();
    assert!(knobs.windows(2).all(|w| w[0] < w[1]));
    // A larger margin leaves more slack.
    let slack = |i: usize| runs[i]["overall"]["slack"].as_f64().unwrap();
    assert!(slack(6) > slack(0));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("reactive") && text.contains("static"));
}

#[test]
fn malformed_rows_stop_the_run_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(slice()).unwrap() {
        let f = f.unwrap().path();
        if f.to_string_lossy().ends_with(".csv.gz") {
            std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        dir.path().join("7.csv"),
        "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]\n\
         1372629804;\t2;\t5851.9;\t87.7;\t1.5;\t8218624.0;\t1034592.8;\t1.0;\t2.0;\t0.2;\t1.4\n\
         1372630104;\t2;\t5851.9;\tNaN;\t1.5;\t8218624.0;\t1034592.8;\t1.0;\t2.0;\t0.2;\t1.4\n",
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let out = simulate(&["--trace", d, "--policy", "static", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("7.csv line 3") && err.contains("CPU usage [MHZ]"),
        "{err}"
    );

    let out = simulate(&["--trace", d, "--policy", "static", "--json", "--skip-bad"]);
    let v = json(&out);
    assert_eq!(v["policy"], "static");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("skipped") && err.contains("7.csv line 3"),
        "{err}"
    );
}

#[test]
fn operator_mistakes_get_clear_errors() {
    let trace = slice();
    let t = trace.to_str().unwrap();
    for (args, needle) in [
        (vec!["--policy", "mom"], "unknown policy \"mom\""),
        (
            vec!["--policy", "static", "--knob", "2"],
            "none of static has a knob",
        ),
        (vec!["--policy", "vpa", "--knob", "2"], "percentile"),
        (vec!["--classes", "gold=0.9,silver=0.9"], "add up"),
        (vec!["--capacity-fraction", "0"], "--capacity-fraction"),
    ] {
        let mut all = vec!["--trace", t];
        all.extend(args);
        let out = simulate(&all);
        assert_eq!(out.status.code(), Some(1), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{all:?}: {err}");
    }
    let out = simulate(&["--trace", "/nonexistent/traces"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/traces"));
}

#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    // `prescient simulate … | head -1`: the reader is gone before the report is written.
    let trace = slice();
    let mut child = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["simulate", "--trace", trace.to_str().unwrap()])
        .args(["--policy", "all"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running prescient simulate");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("waiting for prescient");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status {:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("error"), "{err}");
}
