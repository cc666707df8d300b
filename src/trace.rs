//! Reader for per-VM resource traces in the GWA-T-12 layout (Bitbrains): one CSV file per VM
//! (`.csv` or `.csv.gz`), a header line, fields separated by `;` and a tab, timestamps in Unix
//! seconds (despite the header's `[ms]`).
//!
//! Rows are sorted by timestamp and a duplicate timestamp keeps the file's last row for it.
//! A malformed row (wrong field count, not a number, NaN or infinite, negative) is an error
//! that names the file, the line and the column: nothing is guessed, so no model is ever fed
//! a poisoned value. Shared by the simulator's replay and `forecast-eval`.

use crate::model::Resource;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The columns of the layout, in order.
pub const COLUMNS: [&str; 11] = [
    "Timestamp [ms]",
    "CPU cores",
    "CPU capacity provisioned [MHZ]",
    "CPU usage [MHZ]",
    "CPU usage [%]",
    "Memory capacity provisioned [KB]",
    "Memory usage [KB]",
    "Disk read throughput [KB/s]",
    "Disk write throughput [KB/s]",
    "Network received throughput [KB/s]",
    "Network transmitted throughput [KB/s]",
];

/// One row, reduced to what prescient uses. Trace units: MHz, KiB, KiB/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub ts: i64,
    pub cores: f64,
    pub cpu_capacity_mhz: f64,
    pub cpu_mhz: f64,
    pub mem_capacity_kib: f64,
    pub mem_kib: f64,
    /// Disk read + write.
    pub disk_kib_per_s: f64,
    /// Network received + transmitted.
    pub net_kib_per_s: f64,
}

impl Row {
    /// The value of a resource in trace units (cpu MHz, mem KiB, disk and net KiB/s).
    pub fn get(&self, r: Resource) -> f64 {
        match r {
            Resource::Cpu => self.cpu_mhz,
            Resource::Mem => self.mem_kib,
            Resource::Disk => self.disk_kib_per_s,
            Resource::Net => self.net_kib_per_s,
        }
    }

    /// All-zero rows mark a VM that was off.
    pub fn is_off(&self) -> bool {
        self.cores == 0.0 && self.cpu_capacity_mhz == 0.0 && self.mem_capacity_kib == 0.0
    }
}

/// One VM's trace: rows sorted by time, one per timestamp.
#[derive(Debug, Clone)]
pub struct VmTrace {
    /// The file name without `.csv`/`.csv.gz`, e.g. `17`.
    pub name: String,
    pub path: PathBuf,
    pub rows: Vec<Row>,
    /// Rows dropped because a later row had the same timestamp.
    pub duplicates: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: empty file (expected a header line and rows)")]
    Empty { path: PathBuf },
    #[error(
        "{path} line 1: not a GWA-T-12 header (expected {expected} fields starting with \"Timestamp\", found {found:?})"
    )]
    Header {
        path: PathBuf,
        expected: usize,
        found: String,
    },
    #[error("{path} line {line}: {message}")]
    Row {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{path}: not a gzip file (its name ends in .gz); compress it with gzip or rename it to .csv"
    )]
    NotGzip { path: PathBuf },
    #[error("{path}: the gzip data is damaged or cut short ({source})")]
    Gzip {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{dir}: no .csv or .csv.gz trace files")]
    NoFiles { dir: PathBuf },
    #[error(
        "{first} and {second} are both the trace of VM {name}: keep one of them (remove or \
         move the other out of the directory)"
    )]
    SameVm {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
}

/// The name a trace file goes by: its file name without `.csv` / `.csv.gz`.
pub fn vm_name(path: &Path) -> String {
    let f = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    f.strip_suffix(".csv.gz")
        .or_else(|| f.strip_suffix(".csv"))
        .unwrap_or(&f)
        .to_string()
}

/// Read one trace file.
pub fn read_file(path: &Path) -> Result<VmTrace, TraceError> {
    let io = |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    if path.extension().is_none_or(|e| e != "gz") {
        return parse(path, BufReader::with_capacity(1 << 16, file));
    }
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut file, &mut magic).map_err(io)?;
    if n < 2 || magic != [0x1f, 0x8b] {
        return Err(TraceError::NotGzip {
            path: path.to_path_buf(),
        });
    }
    let file = std::io::Cursor::new(magic).chain(file);
    let reader = flate2::read::MultiGzDecoder::new(file);
    parse(path, BufReader::with_capacity(1 << 16, reader)).map_err(|e| match e {
        TraceError::Io { path, source } => TraceError::Gzip { path, source },
        e => e,
    })
}

/// Read until `buf` is full or the input ends; how many bytes were read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Parse trace text (the reader of [`read_file`], exposed for tests).
pub fn parse(path: &Path, mut input: impl BufRead) -> Result<VmTrace, TraceError> {
    let io = |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut line = String::new();
    if input.read_line(&mut line).map_err(io)? == 0 {
        return Err(TraceError::Empty {
            path: path.to_path_buf(),
        });
    }
    let header: Vec<&str> = line.trim_end().split(';').map(str::trim).collect();
    if header.len() != COLUMNS.len() || !header[0].starts_with("Timestamp") {
        return Err(TraceError::Header {
            path: path.to_path_buf(),
            expected: COLUMNS.len(),
            found: line.trim_end().chars().take(120).collect(),
        });
    }
    let mut rows = Vec::with_capacity(9000);
    let mut lineno = 1;
    let mut fields = [0f64; 11];
    loop {
        line.clear();
        if input.read_line(&mut line).map_err(io)? == 0 {
            break;
        }
        lineno += 1;
        let text = line.trim_end();
        if text.is_empty() {
            continue;
        }
        let bad = |message: String| TraceError::Row {
            path: path.to_path_buf(),
            line: lineno,
            message,
        };
        let mut n = 0;
        for raw in text.split(';') {
            if n == fields.len() {
                return Err(bad(format!("more than {} fields", fields.len())));
            }
            let raw = raw.trim();
            let v: f64 = raw.parse().map_err(|_| {
                bad(format!(
                    "field {} ({}) is {raw:?}, not a number",
                    n + 1,
                    COLUMNS[n]
                ))
            })?;
            if !v.is_finite() {
                return Err(bad(format!(
                    "field {} ({}) is {raw:?}, not a finite number",
                    n + 1,
                    COLUMNS[n]
                )));
            }
            if v < 0.0 {
                return Err(bad(format!(
                    "field {} ({}) is negative ({raw})",
                    n + 1,
                    COLUMNS[n]
                )));
            }
            fields[n] = v;
            n += 1;
        }
        if n != fields.len() {
            return Err(bad(format!("{n} fields, expected {}", fields.len())));
        }
        rows.push(Row {
            ts: fields[0] as i64,
            cores: fields[1],
            cpu_capacity_mhz: fields[2],
            cpu_mhz: fields[3],
            mem_capacity_kib: fields[5],
            mem_kib: fields[6],
            disk_kib_per_s: fields[7] + fields[8],
            net_kib_per_s: fields[9] + fields[10],
        });
    }
    // Stable sort keeps file order among equal timestamps; then the last of each run wins.
    rows.sort_by_key(|r| r.ts);
    let before = rows.len();
    let mut out: Vec<Row> = Vec::with_capacity(rows.len());
    for r in rows {
        match out.last_mut() {
            Some(last) if last.ts == r.ts => *last = r,
            _ => out.push(r),
        }
    }
    Ok(VmTrace {
        name: vm_name(path),
        path: path.to_path_buf(),
        duplicates: before - out.len(),
        rows: out,
    })
}

/// The trace files of a directory, in natural order (`2` before `10`).
pub fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, TraceError> {
    let entries = std::fs::read_dir(dir).map_err(|source| TraceError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".csv") || n.ends_with(".csv.gz")
        })
        .collect();
    if files.is_empty() {
        return Err(TraceError::NoFiles {
            dir: dir.to_path_buf(),
        });
    }
    files.sort_by_key(|p| {
        let name = vm_name(p);
        (name.parse::<u64>().unwrap_or(u64::MAX), name, p.clone())
    });
    // `1.csv` and `1.csv.gz` would be one VM counted twice.
    if let Some(w) = files.windows(2).find(|w| vm_name(&w[0]) == vm_name(&w[1])) {
        return Err(TraceError::SameVm {
            name: vm_name(&w[0]),
            first: w[0].clone(),
            second: w[1].clone(),
        });
    }
    Ok(files)
}

/// Every trace of a directory. A malformed file is an error, unless `skip_bad`, when it is
/// left out and returned in the second list (the caller reports it).
pub fn read_dir(
    dir: &Path,
    skip_bad: bool,
    mut progress: impl FnMut(usize, usize),
) -> Result<(Vec<VmTrace>, Vec<TraceError>), TraceError> {
    let files = list_dir(dir)?;
    let mut traces = Vec::with_capacity(files.len());
    let mut skipped = Vec::new();
    for (i, f) in files.iter().enumerate() {
        match read_file(f) {
            Ok(t) => traces.push(t),
            Err(e) if skip_bad => skipped.push(e),
            Err(e) => return Err(e),
        }
        progress(i + 1, files.len());
    }
    Ok((traces, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]\n";

    fn p(text: &str) -> Result<VmTrace, TraceError> {
        parse(Path::new("t/42.csv"), text.as_bytes())
    }

    fn row(ts: i64, cpu: f64) -> String {
        format!(
            "{ts};\t2;\t5851.9989;\t{cpu};\t1.5;\t8218624.0;\t1034592.8;\t160.5;\t21.5;\t0.25;\t1.5\n"
        )
    }

    #[test]
    fn one_vm_in_two_files_is_refused_with_both_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1.csv"), HEADER).unwrap();
        std::fs::write(dir.path().join("10.csv"), HEADER).unwrap();
        assert_eq!(list_dir(dir.path()).unwrap().len(), 2);
        std::fs::write(dir.path().join("1.csv.gz"), HEADER).unwrap();
        let e = list_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("1.csv and ") && e.contains("1.csv.gz") && e.contains("VM 1:"),
            "{e}"
        );
    }

    #[test]
    fn reads_sorts_and_keeps_the_last_duplicate() {
        let text = format!(
            "{HEADER}{}{}{}{}",
            row(600, 3.0),
            row(300, 1.0),
            row(600, 9.0),
            row(900, 4.0)
        );
        let t = p(&text).unwrap();
        assert_eq!(t.name, "42");
        assert_eq!(
            t.rows.iter().map(|r| r.ts).collect::<Vec<_>>(),
            [300, 600, 900]
        );
        assert_eq!(t.rows[1].cpu_mhz, 9.0, "the later row of a duplicate wins");
        assert_eq!(t.duplicates, 1);
        let r = t.rows[0];
        assert_eq!(r.disk_kib_per_s, 182.0);
        assert_eq!(r.net_kib_per_s, 1.75);
        assert_eq!(r.mem_kib, 1034592.8);
        assert_eq!(r.get(Resource::Cpu), 1.0);
    }

    #[test]
    fn malformed_rows_name_file_line_and_column() {
        for (bad, needle) in [
            (
                "300;\t2;\t5851;\tNaN;\t1;\t1;\t1;\t1;\t1;\t1;\t1\n",
                "CPU usage [MHZ]",
            ),
            (
                "300;\t2;\t5851;\t1;\t1;\t1;\t-5;\t1;\t1;\t1;\t1\n",
                "negative",
            ),
            (
                "300;\t2;\t5851;\tabc;\t1;\t1;\t1;\t1;\t1;\t1;\t1\n",
                "\"abc\"",
            ),
            ("300;\t2;\t5851\n", "3 fields"),
            (
                "300;\t2;\t5851;\t1;\t1;\t1;\t1;\t1;\t1;\t1;\t1;\t1\n",
                "more than 11",
            ),
            (
                "300;\t2;\t5851;\tinf;\t1;\t1;\t1;\t1;\t1;\t1;\t1\n",
                "finite",
            ),
        ] {
            let text = format!("{HEADER}{}{bad}", row(0, 1.0));
            let e = p(&text).unwrap_err().to_string();
            assert!(e.starts_with("t/42.csv line 3:"), "{e}");
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_header_and_empty_file() {
        assert!(matches!(p(""), Err(TraceError::Empty { .. })));
        let e = p("a;b;c\n1;2;3\n").unwrap_err();
        assert!(matches!(e, TraceError::Header { .. }), "{e}");
    }

    #[test]
    fn gz_and_plain_read_alike() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{HEADER}{}{}", row(300, 1.0), row(600, 2.0));
        std::fs::write(dir.path().join("10.csv"), &text).unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(dir.path().join("2.csv.gz")).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap();
        std::fs::write(dir.path().join("3.csv"), format!("{HEADER}1;2\n")).unwrap();
        std::fs::write(dir.path().join("README.md"), "not a trace").unwrap();

        assert!(read_dir(dir.path(), false, |_, _| {}).is_err());
        let (traces, skipped) = read_dir(dir.path(), true, |_, _| {}).unwrap();
        assert_eq!(
            traces.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["2", "10"]
        );
        assert_eq!(traces[0].rows, traces[1].rows);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].to_string().contains("3.csv line 2"));
    }
}
