//! `prescient forecast-eval` end to end on a slice of real traces (tests/data/bitbrains-slice).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn slice() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bitbrains-slice")
}

fn eval(extra: &[&str]) -> Output {
    let trace = slice();
    Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["forecast-eval", "--trace", trace.to_str().unwrap()])
        .args([
            "--warmup",
            "400",
            "--resources",
            "cpu",
            "--horizons",
            "1,48",
        ])
        .args(extra)
        .output()
        .expect("running prescient forecast-eval")
}

#[test]
fn per_series_writes_a_csv_and_never_overwrites_one() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("series.csv");
    let out = eval(&["--json", "--per-series", csv.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("file,resource,model,horizon,origins,mae,naive_mae,ratio")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // One row per series (4 files), model (the report's) and horizon (2).
    let models = report["results"].as_array().unwrap().len() / 2;
    assert_eq!(rows.len(), 4 * models * 2);
    assert!(rows.iter().all(|r| r.len() == 8 && r[1] == "cpu"));
    assert!(rows.iter().any(|r| r[2] == "ensemble" && r[3] == "48"));

    // A second run refuses the existing file, names it, and leaves it as it was.
    let again = eval(&["--per-series", csv.to_str().unwrap()]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("--per-series") && err.contains("series.csv"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), text);
}

/// On the slice with a one-day warm-up, one cpu series barely moves (naive MAE ~1e-7 against
/// a level of hundreds): left out of the gmrae and counted, `naive` scores 1 against itself.
/// Without a terminal on stderr there is no progress counter.
#[test]
fn near_constant_series_are_left_out_of_the_gmrae_and_no_progress_without_a_terminal() {
    let trace = slice();
    let run = |json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_prescient"));
        c.args(["forecast-eval", "--trace", trace.to_str().unwrap()])
            .args(["--warmup", "288", "--resources", "cpu", "--horizons", "12"])
            .args(["--models", "naive"]);
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let report: serde_json::Value = serde_json::from_slice(&run(true).stdout).unwrap();
    let naive = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "naive")
        .unwrap();
    let g = naive["gmrae"].as_f64().unwrap();
    assert!((g - 1.0).abs() < 1e-3, "{naive}");
    assert!(naive["negligible"].as_u64().unwrap() >= 1, "{naive}");
    let text = run(false);
    let err = String::from_utf8_lossy(&text.stderr);
    assert!(
        !err.contains("forecast-eval:") && !err.contains('\r'),
        "{err:?}"
    );
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(
        out.contains("naive error negligible against the level: "),
        "{out}"
    );
}
