//! Host replay: the traces of VMs that ran at the same time, aligned on wall-clock time into
//! control intervals (see `../shared/traces/README.md`, "Host replay"):
//!
//! * interval k covers [T0 + 300k, T0 + 300(k+1)), T0 = the earliest timestamp of any file
//!   rounded down to a multiple of 300;
//! * a tenant's demand in an interval is the largest value among its rows in it;
//! * a tenant exists from its first row to its last; an interval without a row repeats the
//!   previous value when the gap between rows is at most an hour, otherwise the VM is absent
//!   (no demand, no allocation) until its next row;
//! * provisioned size (cores, memory) is the latest non-zero value seen so far.

use crate::model::Resource;
use crate::model::STEP_S;
use crate::trace::VmTrace;

/// Gaps between rows up to this long are carried forward.
pub const CARRY_MAX_S: i64 = 3600;

/// One VM on the replayed host. Values are in trace units (MHz, KiB, KiB/s); `NaN` marks an
/// interval in which the VM is absent.
pub struct ReplayTenant {
    pub name: String,
    pub demand: [Vec<f32>; 4],
    /// Latest non-zero provisioned cores and memory (KiB) up to the end of each interval
    /// (0 until the first non-zero row).
    pub cores: Vec<f32>,
    pub mem_capacity_kib: Vec<f32>,
}

impl ReplayTenant {
    pub fn present(&self, k: usize) -> bool {
        !self.demand[0][k].is_nan()
    }

    pub fn demand(&self, r: Resource, k: usize) -> f64 {
        self.demand[r.index()][k] as f64
    }
}

pub struct Replay {
    /// Unix seconds at the start of interval 0.
    pub t0: i64,
    pub steps: usize,
    pub tenants: Vec<ReplayTenant>,
    /// Intervals filled by carrying the previous value forward, and gaps left absent.
    pub short_gaps: usize,
    pub long_gaps: usize,
}

impl Replay {
    /// Align `traces` on wall-clock time, keeping at most `max_steps` intervals.
    pub fn align(traces: &[VmTrace], max_steps: Option<usize>) -> Replay {
        let t0 = traces
            .iter()
            .filter_map(|t| t.rows.first().map(|r| r.ts))
            .min()
            .unwrap_or(0)
            .div_euclid(STEP_S)
            * STEP_S;
        let t_end = traces
            .iter()
            .filter_map(|t| t.rows.last().map(|r| r.ts))
            .max()
            .unwrap_or(t0);
        let all_steps = ((t_end - t0) / STEP_S + 1) as usize;
        let steps = max_steps.map_or(all_steps, |m| m.min(all_steps));
        let mut replay = Replay {
            t0,
            steps,
            tenants: Vec::with_capacity(traces.len()),
            short_gaps: 0,
            long_gaps: 0,
        };
        for t in traces {
            let (tenant, short, long) = align_one(t, t0, steps);
            replay.short_gaps += short;
            replay.long_gaps += long;
            replay.tenants.push(tenant);
        }
        replay
    }

    /// Tenant-intervals with a tenant present: what a replay scores.
    pub fn tenant_intervals(&self) -> usize {
        (0..self.steps).map(|k| self.present(k)).sum()
    }

    /// How many tenants are present in interval `k`.
    pub fn present(&self, k: usize) -> usize {
        self.tenants.iter().filter(|t| t.present(k)).count()
    }

    /// Σ over tenants of the demand for `r` in interval `k`.
    pub fn total_demand(&self, r: Resource, k: usize) -> f64 {
        self.tenants
            .iter()
            .filter(|t| t.present(k))
            .map(|t| t.demand(r, k))
            .sum()
    }
}

fn align_one(t: &VmTrace, t0: i64, steps: usize) -> (ReplayTenant, usize, usize) {
    let nan = || vec![f32::NAN; steps];
    let mut demand = [nan(), nan(), nan(), nan()];
    let mut cores = vec![0f32; steps];
    let mut mem_cap = vec![0f32; steps];
    let mut have = vec![false; steps];
    // Provisioned values as of each row, applied from that row's interval on.
    let mut prov_at: Vec<(usize, f32, f32)> = Vec::new();
    let (mut last_cores, mut last_mem) = (0f32, 0f32);
    for row in &t.rows {
        let k = ((row.ts - t0) / STEP_S) as usize;
        if row.cores > 0.0 {
            last_cores = row.cores as f32;
        }
        if row.mem_capacity_kib > 0.0 {
            last_mem = row.mem_capacity_kib as f32;
        }
        if k >= steps {
            break;
        }
        prov_at.push((k, last_cores, last_mem));
        for r in Resource::ALL {
            let v = row.get(r) as f32;
            let d = &mut demand[r.index()][k];
            if !have[k] || v > *d {
                *d = v;
            }
        }
        have[k] = true;
    }
    // Fill the gaps between rows.
    let (mut short, mut long) = (0, 0);
    let mut prev: Option<usize> = None;
    for k in (0..steps).filter(|&k| have[k]) {
        if let Some(p) = prev
            && k > p + 1
        {
            if (k - p) as i64 * STEP_S <= CARRY_MAX_S {
                short += 1;
                for j in p + 1..k {
                    for d in demand.iter_mut() {
                        d[j] = d[p];
                    }
                }
            } else {
                long += 1;
            }
        }
        prev = Some(k);
    }
    let mut i = 0;
    let (mut c, mut m) = (0f32, 0f32);
    for k in 0..steps {
        while i < prov_at.len() && prov_at[i].0 <= k {
            c = prov_at[i].1;
            m = prov_at[i].2;
            i += 1;
        }
        cores[k] = c;
        mem_cap[k] = m;
    }
    (
        ReplayTenant {
            name: t.name.clone(),
            demand,
            cores,
            mem_capacity_kib: mem_cap,
        },
        short,
        long,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Row;

    fn row(ts: i64, cpu: f64) -> Row {
        Row {
            ts,
            cores: 2.0,
            cpu_capacity_mhz: 5000.0,
            cpu_mhz: cpu,
            mem_capacity_kib: 1000.0,
            mem_kib: cpu * 10.0,
            disk_kib_per_s: 1.0,
            net_kib_per_s: 2.0,
        }
    }

    fn vm(name: &str, rows: Vec<Row>) -> VmTrace {
        VmTrace {
            name: name.into(),
            path: name.into(),
            rows,
            duplicates: 0,
        }
    }

    #[test]
    fn aligns_on_wall_clock_with_max_per_interval() {
        let a = vm("a", vec![row(1000, 1.0), row(1100, 5.0), row(1300, 2.0)]);
        let b = vm("b", vec![row(1550, 7.0)]);
        let r = Replay::align(&[a, b], None);
        assert_eq!(r.t0, 900);
        assert_eq!(r.steps, 3); // 900, 1200, 1500
        let a = &r.tenants[0];
        assert_eq!(
            a.demand(Resource::Cpu, 0),
            5.0,
            "largest row of the interval"
        );
        assert_eq!(a.demand(Resource::Cpu, 1), 2.0);
        assert!(!a.present(2), "after its last row");
        let b = &r.tenants[1];
        assert!(
            !b.present(0) && !b.present(1) && b.present(2),
            "before its first row"
        );
    }

    #[test]
    fn short_gaps_carry_long_gaps_are_absent() {
        // Rows at steps 0, 3 (gap 900 s: carried), 20 (gap 5100 s: absent between).
        let a = vm("a", vec![row(0, 1.0), row(900, 2.0), row(6000, 3.0)]);
        let r = Replay::align(&[a], None);
        let a = &r.tenants[0];
        assert_eq!(a.demand(Resource::Cpu, 1), 1.0);
        assert_eq!(a.demand(Resource::Cpu, 2), 1.0);
        assert!((4..20).all(|k| !a.present(k)));
        assert_eq!(a.demand(Resource::Cpu, 20), 3.0);
        assert_eq!((r.short_gaps, r.long_gaps), (1, 1));
    }

    #[test]
    fn provisioned_size_is_latest_nonzero_never_future() {
        let mut rows = vec![row(0, 1.0), row(300, 1.0), row(600, 1.0)];
        rows[1].cores = 0.0; // VM off: all-zero row
        rows[1].mem_capacity_kib = 0.0;
        rows[2].cores = 8.0;
        let r = Replay::align(&[vm("a", rows)], None);
        let a = &r.tenants[0];
        assert_eq!(&a.cores[..], &[2.0, 2.0, 8.0]);
        assert_eq!(&a.mem_capacity_kib[..], &[1000.0, 1000.0, 1000.0]);
    }

    #[test]
    fn max_steps_cuts_the_replay() {
        let a = vm("a", (0..100).map(|i| row(i * 300, i as f64)).collect());
        let r = Replay::align(&[a], Some(10));
        assert_eq!(r.steps, 10);
        assert_eq!(r.tenants[0].demand(Resource::Cpu, 9), 9.0);
    }
}
