use crate::forecast::plot;
use crate::model::Resource;
use crate::trace;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ForecastPlotArgs {
    /// One trace file (`N.csv` or `N.csv.gz`).
    #[arg(long, value_name = "FILE")]
    pub trace: PathBuf,
    /// Resource to draw.
    #[arg(long, default_value = "cpu", value_name = "RESOURCE")]
    pub resource: String,
    /// The forecast origin, as a step (row) index (default: 60 steps before the end).
    #[arg(long, value_name = "STEP")]
    pub at: Option<usize>,
    /// Where to write the SVG.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(a: ForecastPlotArgs) -> super::CliResult {
    let r = Resource::ALL
        .into_iter()
        .find(|r| r.name() == a.resource)
        .ok_or_else(|| {
            format!(
                "--resource {:?}: expected cpu, mem, disk or net",
                a.resource
            )
        })?;
    let t = trace::read_file(&a.trace)?;
    let rows: Vec<(i64, f64)> = t.rows.iter().map(|row| (row.ts, row.get(r))).collect();
    let at = a.at.unwrap_or(rows.len().saturating_sub(60));
    let title = format!("{} {} ({}), origin step {at}", t.name, r.name(), r_unit(r));
    let svg = plot::svg(&rows, at, &title).ok_or_else(|| {
        format!(
            "step {at} needs 288 steps before it and 48 after ({} rows)",
            rows.len()
        )
    })?;
    std::fs::write(&a.out, svg).map_err(|e| format!("{}: {e}", a.out.display()))?;
    Ok(())
}

fn r_unit(r: Resource) -> &'static str {
    match r {
        Resource::Cpu => "MHz",
        Resource::Mem => "KiB",
        Resource::Disk | Resource::Net => "KiB/s",
    }
}
