use crate::sim::metrics::Report;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct FrontierPlotArgs {
    /// Files of `prescient simulate --json` output (an object or a list of runs each), for
    /// example sweeps run one policy or knob per core.
    #[arg(required = true, value_name = "FILE.json")]
    pub json: Vec<PathBuf>,
    /// Where to write the SVG (it is replaced).
    #[arg(long, value_name = "FILE.svg")]
    pub out: PathBuf,
}

pub fn run(a: FrontierPlotArgs) -> super::CliResult {
    let mut reports: Vec<Report> = Vec::new();
    for path in &a.json {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        let runs = match value {
            serde_json::Value::Array(v) => v,
            one => vec![one],
        };
        for (i, run) in runs.into_iter().enumerate() {
            let r: Report = serde_json::from_value(run).map_err(|e| {
                format!(
                    "{} run {}: not a `prescient simulate --json` report: {e}",
                    path.display(),
                    i + 1
                )
            })?;
            reports.push(r);
        }
    }
    // Each policy's points in knob order, as a sweep lists them.
    reports.sort_by(|a, b| {
        a.policy
            .cmp(&b.policy)
            .then(a.knob.unwrap_or(0.0).total_cmp(&b.knob.unwrap_or(0.0)))
    });
    crate::sim::plot::frontiers(&a.out, &reports)?;
    outln!("plot: {} ({} runs)", a.out.display(), reports.len())?;
    Ok(())
}
