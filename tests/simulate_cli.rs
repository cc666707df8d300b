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
    // The facts the table's first line gives.
    let setup = &v["setup"];
    assert_eq!(setup["tenants"], 4);
    assert!(setup["intervals"].as_u64().unwrap() > 0);
    assert_eq!(setup["interval_s"], 300);
    assert_eq!(setup["capacity_fraction"], 1.0);
    for r in ["cpu", "mem", "disk", "net"] {
        assert!(setup["capacity"][r].as_f64().unwrap() >= 0.0, "{r}");
    }
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
    assert_eq!(
        runs.len(),
        prescient::sim::POLICIES.len(),
        "`all` runs every policy"
    );
    let ws = |p: &str| {
        runs.iter().find(|r| r["policy"] == p).unwrap()["overall"]["weighted_shortfall"]
            .as_f64()
            .unwrap()
    };
    for p in ["static", "reactive", "vpa", "nsigma", "prescient"] {
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
        // A negative number reaches the range check, with or without `=`.
        (vec!["--days", "-2"], "--days -2 must be > 0"),
        (
            vec!["--capacity-fraction", "-1"],
            "--capacity-fraction -1 must be > 0",
        ),
        (
            vec!["--balloon-speed", "-1"],
            "--balloon-speed -1 must be > 0",
        ),
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

/// The GWA-T-12 header line alone.
const HEADER: &str = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]\n";

#[test]
fn no_data_is_an_error_not_a_perfect_score() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("1.csv"), HEADER).unwrap();
    let d = dir.path().to_str().unwrap();
    let out = simulate(&["--trace", d, "--policy", "static"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no tenant-interval") && err.contains(d),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no table of zeros");

    // Every file bad, skipped: nothing left to replay.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("1.csv"), "garbage\n").unwrap();
    let b = bad.path().to_str().unwrap();
    let out = simulate(&["--trace", b, "--policy", "static", "--skip-bad", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no tenant-interval") && err.contains("1 skipped"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_gz_file_that_is_not_gzip_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("4.csv.gz"), HEADER).unwrap();
    let out = simulate(&["--trace", dir.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("4.csv.gz: not a gzip file"), "{err}");
}

fn prescient(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(args)
        .output()
        .expect("running prescient")
}

#[test]
fn forecast_eval_and_bench_refuse_traces_with_nothing_to_measure() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("1.csv"), HEADER).unwrap();
    let d = dir.path().to_str().unwrap();
    for (args, needle) in [
        (
            vec!["forecast-eval", "--trace", d],
            "no series could be scored (1 file read",
        ),
        (
            vec!["bench", "forecast", "--trace", d, "--passes", "1"],
            "no trace of the 1 file read has more than 2016 rows",
        ),
        (vec!["bench", "forecast", "--passes", "0"], "--passes"),
        (vec!["bench", "forecast", "--files", "0"], "--files"),
    ] {
        let out = prescient(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("0.00 µs"),
            "{args:?}: no zero timings"
        );
    }
}

#[test]
fn frontier_plot_draws_saved_runs_and_names_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let trace = slice();
    let out = simulate(&[
        "--trace",
        trace.to_str().unwrap(),
        "--policy",
        "reactive,oracle",
        "--sweep",
        "--json",
    ]);
    assert!(out.status.success());
    let runs = dir.path().join("runs.json");
    std::fs::write(&runs, &out.stdout).unwrap();
    let svg = dir.path().join("f.svg");
    let out = prescient(&[
        "frontier-plot",
        runs.to_str().unwrap(),
        "--out",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("reactive") && text.contains("oracle"));
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "[{\"knob\": 1}]").unwrap();
    let out = prescient(&[
        "frontier-plot",
        bad.to_str().unwrap(),
        "--out",
        svg.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("bad.json run 1") && err.contains("policy"),
        "{err}"
    );
}

/// One tenant is "1 tenant"; a VM whose trace is in two files (`1.csv` and `1.csv.gz`) is
/// refused with both named, not counted twice.
#[test]
fn one_tenant_reads_as_one_and_a_vm_in_two_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(slice().join("1.csv.gz"), dir.path().join("1.csv.gz")).unwrap();
    let trace = dir.path().to_str().unwrap();
    let out = simulate(&["--trace", trace, "--policy", "static", "--days", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("1 tenant ("), "{text}");
    let raw = std::fs::read(slice().join("1.csv.gz")).unwrap();
    let mut csv = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut csv).unwrap();
    std::fs::write(dir.path().join("1.csv"), csv).unwrap();
    let out = simulate(&["--trace", trace, "--policy", "static", "--days", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1.csv and ") && err.contains("1.csv.gz"),
        "{err}"
    );
}
