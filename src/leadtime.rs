//! Lead time: whether each rise in a tenant's usage found what it needed already in force.
//!
//! A *rise* of a resource is a sample whose usage stands at least [`threshold`] above the
//! lowest of the tenant's previous [`BASE_SAMPLES`] samples (its base). It is classified
//!
//! * **ahead** when its first sample ran uncapped and the amount in force during it covered
//!   the level reached (within [`TOLERANCE`]) in it and in the next sample, itself uncapped:
//!   a step that came within the first sample's interval shows in it only in part, so the
//!   next sample tells the level the amount had to cover (a rise one sample long that the
//!   amount covered is ahead too);
//! * **late** at the first later sample that ran uncapped with the amount in force covering
//!   the level (the highest usage seen so far in the rise), late by the seconds from the
//!   rise's start to the start of that sample (when the amount that covered it came into
//!   force);
//! * **not covered** when usage fell back (below the midpoint between the base and the
//!   level) before that.
//!
//! A rise starts at the start of the sample interval that first showed it (the previous
//! observation's time): the step happened within that interval. A cap hides how far demand
//! rose, so a sample capped by the amount in force opens a candidate: it becomes a rise
//! (from that sample's start) once the served usage shows the threshold, under a cap that
//! grows or when the cap lets go, and is dropped if the cap lets go below it. A rise whose
//! served usage never shows the threshold cannot be told from a tenant held a little
//! below what it wants, and is not counted. Only observation
//! timestamps are used, never the clock, so the daemon and the simulator count alike. A
//! rise still open when its tenant vanishes is dropped.

use crate::collect::{Observation, TenantStats};
use crate::model::{PerResource, Resource};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// How many previous samples the base of a rise is the lowest of.
pub const BASE_SAMPLES: usize = 3;

/// A rise is at least this share of the domain's size (its vCPUs, its maximum memory)
/// above its base, where the size is known and the share exceeds the floor.
pub const SIZE_SHARE: f64 = 0.1;

/// The amount in force covers a level `x` from `x × (1 − TOLERANCE)` on: a tenant's
/// usage sampled over an interval jitters by a few per cent around what it was given (CPU
/// accounting, the balloon's granularity), and a tenant that was held back shows it as
/// capped, which rules the sample out whatever the amounts say.
pub const TOLERANCE: f64 = 0.1;

/// The upper bounds of the histogram of seconds late.
pub const LATE_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The smallest step up that counts as a rise, in the pipeline's units: a quarter of a
/// core, 128 MiB, 1 MB/s of disk or network throughput.
pub fn floor(r: Resource) -> f64 {
    match r {
        Resource::Cpu => 0.25,
        Resource::Mem => 128.0 * 1024.0,
        Resource::Disk | Resource::Net => 1e6,
    }
}

/// How far above its base usage must stand to be a rise, for a domain of size `most`.
pub fn threshold(r: Resource, most: Option<f64>) -> f64 {
    floor(r).max(SIZE_SHARE * most.unwrap_or(0.0))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ahead,
    Late,
    NotCovered,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Ahead, Outcome::Late, Outcome::NotCovered];

    /// As the profile and the metrics' `outcome` label spell it.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ahead => "ahead",
            Outcome::Late => "late",
            Outcome::NotCovered => "not_covered",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        (Outcome::ALL.into_iter())
            .find(|o| o.name() == s)
            .ok_or_else(|| {
                format!("unknown rise outcome {s:?} (expected ahead, late or not_covered)")
            })
    }
}

/// One classified rise, as the profile keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rise {
    pub uuid: Arc<str>,
    pub resource: Resource,
    /// The start of the sample interval that first showed the rise (Unix ms).
    pub start_ms: i64,
    /// The usage it rose to, in the pipeline's units.
    pub level: f64,
    /// The amount in force during its first sample (None: unlimited).
    pub in_force: Option<f64>,
    pub outcome: Outcome,
    /// For a late rise: the seconds until the amount in force covered it.
    pub late_s: Option<f64>,
    /// When it was classified (ahead, late) or ended (not covered), Unix ms.
    pub end_ms: i64,
}

/// Rises by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RiseCounts {
    pub ahead: u64,
    pub late: u64,
    pub not_covered: u64,
}

impl RiseCounts {
    pub fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Ahead => self.ahead += 1,
            Outcome::Late => self.late += 1,
            Outcome::NotCovered => self.not_covered += 1,
        }
    }

    pub fn get(&self, o: Outcome) -> u64 {
        match o {
            Outcome::Ahead => self.ahead,
            Outcome::Late => self.late,
            Outcome::NotCovered => self.not_covered,
        }
    }
}

/// Rises over the last hour and the last day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RiseWindows {
    pub hour: RiseCounts,
    pub day: RiseCounts,
}

/// The seconds late of late rises: counts per bucket of [`LATE_BUCKETS`] (not cumulative),
/// the last one above them all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LateHistogram {
    pub buckets: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl LateHistogram {
    fn observe(&mut self, s: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; LATE_BUCKETS.len() + 1];
        }
        let i = LATE_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATE_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += s;
        self.count += 1;
    }
}

/// A rise not over yet.
#[derive(Debug, Clone)]
struct Open {
    start_ms: i64,
    base: f64,
    level: f64,
    in_force: Option<f64>,
    /// Seen to stand a threshold above its base. A sample capped by the amount in force
    /// hides how far demand rose: a rise that starts capped is a candidate until its usage
    /// shows the threshold (under a growing cap, or once uncovered).
    confirmed: bool,
    /// Classified (ahead or late): only its end is waited for.
    done: bool,
    /// Its first sample ran uncapped under an amount that covered it: ahead if that amount
    /// also covers the next sample (a step within the first sample's interval shows in it
    /// only in part).
    tentative: bool,
}

/// One tenant's resource, between samples.
#[derive(Debug, Clone, Default)]
struct Track {
    recent: VecDeque<f64>,
    open: Option<Open>,
}

#[derive(Debug, Default)]
struct TenantTrack {
    /// The time of the tenant's previous observation.
    last_ms: Option<i64>,
    resources: PerResource<Track>,
}

/// The classifier and what it counted: since the start (the metrics) and the rises of the
/// last day (the operator's views), per tenant.
#[derive(Debug, Default)]
pub struct LeadTime {
    tracks: HashMap<Arc<str>, TenantTrack>,
    recent: HashMap<Arc<str>, VecDeque<Rise>>,
    totals: PerResource<RiseCounts>,
    late: PerResource<LateHistogram>,
    /// The newest observation's time.
    now_ms: i64,
}

impl LeadTime {
    /// Take in one cycle's observation; `in_force` tells the amount of a resource in force
    /// on a tenant during the interval the observation covers (None: unlimited). Returns
    /// the rises classified in this cycle.
    pub fn observe(
        &mut self,
        obs: &Observation,
        in_force: impl Fn(&TenantStats, Resource) -> Option<f64>,
    ) -> Vec<Rise> {
        let at = obs.at_unix_ms;
        self.now_ms = self.now_ms.max(at);
        let present: HashSet<&str> = obs.tenants.iter().map(|t| &*t.id.uuid).collect();
        self.tracks.retain(|uuid, _| present.contains(&**uuid));
        let mut out = Vec::new();
        for t in &obs.tenants {
            let track = self.tracks.entry(t.id.uuid.clone()).or_default();
            let since = track.last_ms.replace(at);
            for r in Resource::ALL {
                let Some(u) = *t.usage.get(r) else { continue };
                let f = in_force(t, r).filter(|f| f.is_finite());
                let capped = *t.capped.get(r);
                let covers =
                    |level: f64| !capped && f.is_none_or(|f| f >= level * (1.0 - TOLERANCE));
                let tr = track.resources.get_mut(r);
                let rise = |outcome, level, in_force, start_ms, late_s| Rise {
                    uuid: t.id.uuid.clone(),
                    resource: r,
                    start_ms,
                    level,
                    in_force,
                    outcome,
                    late_s,
                    end_ms: at,
                };
                match &mut tr.open {
                    Some(open) if !capped && u < (open.base + open.level) / 2.0 => {
                        if open.tentative {
                            // One sample long, and covered.
                            out.push(rise(
                                Outcome::Ahead,
                                open.level,
                                open.in_force,
                                open.start_ms,
                                None,
                            ));
                        } else if open.confirmed && !open.done {
                            out.push(rise(
                                Outcome::NotCovered,
                                open.level,
                                open.in_force,
                                open.start_ms,
                                None,
                            ));
                        }
                        tr.open = None;
                    }
                    Some(open) => {
                        open.level = open.level.max(u);
                        open.confirmed |= open.level >= open.base + threshold(r, t.most(r));
                        if std::mem::take(&mut open.tentative) {
                            let first = open.in_force;
                            if !capped && first.is_none_or(|f| f >= open.level * (1.0 - TOLERANCE))
                            {
                                out.push(rise(
                                    Outcome::Ahead,
                                    open.level,
                                    first,
                                    open.start_ms,
                                    None,
                                ));
                                open.done = true;
                            }
                        }
                        if !open.done && covers(open.level) {
                            if open.confirmed {
                                let covered_from = since.unwrap_or(at);
                                let late_s = (covered_from - open.start_ms).max(0) as f64 / 1000.0;
                                out.push(rise(
                                    Outcome::Late,
                                    open.level,
                                    open.in_force,
                                    open.start_ms,
                                    Some(late_s),
                                ));
                                open.done = true;
                            } else {
                                // Uncapped below the threshold: the cap hid no rise.
                                tr.open = None;
                            }
                        }
                    }
                    None => {
                        let base = tr.recent.iter().copied().reduce(f64::min);
                        if let (Some(base), Some(start_ms)) = (base, since) {
                            let confirmed = u >= base + threshold(r, t.most(r));
                            if confirmed || capped {
                                tr.open = Some(Open {
                                    start_ms,
                                    base,
                                    level: u,
                                    in_force: f,
                                    confirmed,
                                    done: false,
                                    tentative: confirmed && covers(u),
                                });
                            }
                        }
                    }
                }
                if tr.recent.len() == BASE_SAMPLES {
                    tr.recent.pop_front();
                }
                tr.recent.push_back(u);
            }
        }
        for r in &out {
            self.totals.get_mut(r.resource).add(r.outcome);
            if let Some(s) = r.late_s {
                self.late.get_mut(r.resource).observe(s);
            }
        }
        self.remember(out.iter().cloned());
        out
    }

    /// Start with the rises of the last day the profile kept (they count in the hour and
    /// day, not in the totals since the start).
    pub fn adopt(&mut self, rises: Vec<Rise>) {
        if let Some(newest) = rises.iter().map(|r| r.end_ms).max() {
            self.now_ms = self.now_ms.max(newest);
        }
        self.remember(rises);
    }

    fn remember(&mut self, rises: impl IntoIterator<Item = Rise>) {
        for r in rises {
            self.recent.entry(r.uuid.clone()).or_default().push_back(r);
        }
        let cut = self.now_ms - DAY_MS;
        self.recent.retain(|_, list| {
            list.retain(|r| r.start_ms >= cut);
            !list.is_empty()
        });
    }

    /// Rises classified since the start, per resource.
    pub fn totals(&self) -> PerResource<RiseCounts> {
        self.totals
    }

    /// Seconds late of the late rises since the start, per resource.
    pub fn late_seconds(&self) -> PerResource<LateHistogram> {
        let mut h = self.late.clone();
        for r in Resource::ALL {
            if h.get(r).buckets.is_empty() {
                h.get_mut(r).buckets = vec![0; LATE_BUCKETS.len() + 1];
            }
        }
        h
    }

    /// Rises that started in the hour and the day before the newest observation, of one
    /// tenant or all.
    pub fn windows(&self, uuid: Option<&str>) -> PerResource<RiseWindows> {
        let mut w = PerResource::<RiseWindows>::default();
        let lists: Vec<&VecDeque<Rise>> = match uuid {
            Some(u) => self.recent.get(u).into_iter().collect(),
            None => self.recent.values().collect(),
        };
        for r in lists.into_iter().flatten() {
            let c = w.get_mut(r.resource);
            if r.start_ms >= self.now_ms - DAY_MS {
                c.day.add(r.outcome);
            }
            if r.start_ms >= self.now_ms - HOUR_MS {
                c.hour.add(r.outcome);
            }
        }
        w
    }

    /// A tenant's last classified rise of each resource in the last day.
    pub fn last(&self, uuid: &str) -> PerResource<Option<Rise>> {
        let mut last = PerResource::<Option<Rise>>::default();
        for r in self.recent.get(uuid).into_iter().flatten() {
            let slot = last.get_mut(r.resource);
            if slot.as_ref().is_none_or(|s| s.start_ms <= r.start_ms) {
                *slot = Some(r.clone());
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TenantId;

    /// One 1-vCPU tenant's samples every 10 s: (cpu usage, capped, cpu in force).
    fn run(samples: &[(f64, bool, Option<f64>)]) -> (LeadTime, Vec<Rise>) {
        let mut lt = LeadTime::default();
        let mut all = Vec::new();
        for (i, (u, capped, f)) in samples.iter().enumerate() {
            let obs = Observation {
                at_unix_ms: (i as i64 + 1) * 10_000,
                tenants: vec![tenant("u1", *u, *capped)],
                ..Default::default()
            };
            all.extend(lt.observe(&obs, |_, r| (r == Resource::Cpu).then_some(*f).flatten()));
        }
        (lt, all)
    }

    fn tenant(uuid: &str, cpu: f64, capped: bool) -> TenantStats {
        TenantStats {
            id: TenantId {
                uuid: uuid.into(),
                name: uuid.into(),
            },
            vcpus: 1,
            max_memory_kib: 1 << 20,
            size_is_limit: true,
            usage: PerResource {
                cpu: Some(cpu),
                mem: Some(300_000.0),
                ..Default::default()
            },
            capped: PerResource {
                cpu: capped,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    const IDLE: (f64, bool, Option<f64>) = (0.01, false, Some(0.3));

    #[test]
    fn a_step_the_allocation_already_covered_is_ahead() {
        let (lt, rises) = run(&[
            IDLE,
            IDLE,
            IDLE,
            (0.97, false, Some(1.2)),
            (1.0, false, Some(1.2)),
        ]);
        assert_eq!(rises.len(), 1, "{rises:?}");
        let r = &rises[0];
        assert_eq!(r.outcome, Outcome::Ahead);
        assert_eq!((r.start_ms, r.end_ms), (30_000, 50_000));
        assert_eq!((r.level, r.in_force, r.late_s), (1.0, Some(1.2), None));
        assert_eq!(lt.totals().cpu.ahead, 1);
        assert_eq!(lt.windows(None).cpu.hour.ahead, 1);
        // Within the tolerance it still covers; capped it does not.
        let (_, rises) = run(&[IDLE, (1.0, false, Some(0.92)), (1.0, false, Some(0.92))]);
        assert_eq!(rises[0].outcome, Outcome::Ahead);
        let (_, rises) = run(&[IDLE, (1.0, true, Some(1.2))]);
        assert!(rises.is_empty(), "{rises:?}");
        // One sample long and covered: ahead when it ends.
        let (_, rises) = run(&[IDLE, IDLE, (1.0, false, Some(1.2)), IDLE]);
        let r = &rises[0];
        assert_eq!(
            (r.outcome, r.start_ms, r.end_ms),
            (Outcome::Ahead, 20_000, 40_000)
        );
    }

    #[test]
    fn a_step_in_part_of_its_first_sample_is_judged_by_the_level_it_reached() {
        // The step came in the middle of the sample ending at 30 s: 0.5 shows, which the
        // 0.55 in force covers, but the next sample is capped at 0.55: late, covered from
        // 40 s on.
        let (_, rises) = run(&[
            IDLE,
            IDLE,
            (0.5, false, Some(0.55)),
            (0.55, true, Some(0.55)),
            (1.0, false, Some(1.2)),
        ]);
        assert_eq!(rises.len(), 1, "{rises:?}");
        let r = &rises[0];
        assert_eq!(
            (r.outcome, r.start_ms, r.level, r.in_force, r.late_s),
            (Outcome::Late, 20_000, 1.0, Some(0.55), Some(20.0))
        );
        // Raised in time for the level the next sample shows: ahead.
        let (_, rises) = run(&[IDLE, IDLE, (0.5, false, Some(1.2)), (1.0, false, Some(1.2))]);
        let r = &rises[0];
        assert_eq!(
            (r.outcome, r.level, r.end_ms),
            (Outcome::Ahead, 1.0, 40_000)
        );
    }

    #[test]
    fn a_step_covered_two_cycles_later_is_late_by_the_seconds_until_then() {
        let (lt, rises) = run(&[
            IDLE,
            IDLE,
            (0.3, true, Some(0.3)),  // starts at 20 s, held at 0.3
            (0.7, true, Some(0.7)),  // raised, still short
            (1.0, false, Some(1.2)), // covered from 40 s on
            (1.0, false, Some(1.2)),
        ]);
        assert_eq!(rises.len(), 1, "{rises:?}");
        let r = &rises[0];
        assert_eq!(r.outcome, Outcome::Late);
        assert_eq!((r.start_ms, r.end_ms), (20_000, 50_000));
        assert_eq!(
            (r.level, r.in_force, r.late_s),
            (1.0, Some(0.3), Some(20.0))
        );
        let h = &lt.late_seconds().cpu;
        assert_eq!((h.count, h.sum), (1, 20.0));
        assert_eq!(
            h.buckets[LATE_BUCKETS.iter().position(|b| *b == 20.0).unwrap()],
            1
        );
        assert_eq!(lt.totals().cpu.late, 1);
    }

    #[test]
    fn a_step_hidden_under_a_low_cap_counts_from_its_first_capped_sample() {
        // Held at 0.1, then 0.15 and 0.23: the served usage shows no rise yet; at 0.34 it
        // does, and the rise started when the cap first bound.
        let (_, rises) = run(&[
            IDLE,
            IDLE,
            (0.1, true, Some(0.1)),
            (0.15, true, Some(0.15)),
            (0.23, true, Some(0.23)),
            (0.34, true, Some(0.34)),
            (1.0, false, Some(1.2)),
        ]);
        assert_eq!(rises.len(), 1, "{rises:?}");
        let r = &rises[0];
        assert_eq!(
            (r.outcome, r.start_ms, r.late_s),
            (Outcome::Late, 20_000, Some(40.0))
        );
        // A cap that bound below the threshold and let go is no rise.
        let (_, rises) = run(&[
            IDLE,
            IDLE,
            (0.1, true, Some(0.1)),
            (0.12, false, Some(0.15)),
            IDLE,
        ]);
        assert!(rises.is_empty(), "{rises:?}");
    }

    #[test]
    fn a_step_capped_until_it_ended_is_not_covered_and_the_next_step_counts_again() {
        let busy = (0.3, true, Some(0.3));
        let (lt, rises) = run(&[
            IDLE,
            IDLE,
            busy,
            busy,
            busy,
            IDLE,
            IDLE,
            (1.0, false, Some(1.2)),
            (1.0, false, Some(1.2)),
        ]);
        let outcomes: Vec<_> = rises.iter().map(|r| r.outcome).collect();
        assert_eq!(outcomes, [Outcome::NotCovered, Outcome::Ahead], "{rises:?}");
        let r = &rises[0];
        assert_eq!(
            (r.start_ms, r.end_ms, r.level, r.late_s),
            (20_000, 60_000, 0.3, None)
        );
        let w = lt.windows(Some("u1")).cpu;
        assert_eq!((w.hour.ahead, w.hour.late, w.hour.not_covered), (1, 0, 1));
        assert_eq!(lt.last("u1").cpu.unwrap().outcome, Outcome::Ahead);
        assert!(lt.last("u1").mem.is_none());
    }

    #[test]
    fn noise_and_a_steady_busy_tenant_are_no_rise() {
        let noisy: Vec<_> = (0..60)
            .map(|i| {
                (
                    0.5 + 0.1 * ((i * 7 % 5) as f64 - 2.0) / 2.0,
                    false,
                    Some(0.8),
                )
            })
            .collect();
        let (_, rises) = run(&noisy);
        assert!(rises.is_empty(), "{rises:?}");
        let (_, rises) = run(&[(1.0, true, Some(1.0)); 20]);
        assert!(rises.is_empty(), "{rises:?}");
        // A recurring step is one rise per step.
        let mut steps = Vec::new();
        for _ in 0..4 {
            steps.extend([
                IDLE,
                IDLE,
                IDLE,
                (1.0, false, Some(1.2)),
                (1.0, false, Some(1.2)),
            ]);
        }
        assert_eq!(run(&steps).1.len(), 4);
    }

    #[test]
    fn a_rise_in_a_tenant_that_vanished_is_dropped() {
        let mut lt = LeadTime::default();
        let at = |s: i64, tenants: Vec<TenantStats>| Observation {
            at_unix_ms: s * 1000,
            tenants,
            ..Default::default()
        };
        let f = |_: &TenantStats, _: Resource| Some(0.3);
        assert!(
            lt.observe(&at(10, vec![tenant("u1", 0.01, false)]), f)
                .is_empty()
        );
        assert!(
            lt.observe(&at(20, vec![tenant("u1", 1.0, true)]), f)
                .is_empty()
        );
        // Gone while the rise was open: no row, nothing kept.
        assert!(lt.observe(&at(30, vec![]), f).is_empty());
        assert!(lt.tracks.is_empty());
        // Back with the same UUID, it starts afresh: its first sample is no rise.
        assert!(
            lt.observe(&at(40, vec![tenant("u1", 1.0, false)]), f)
                .is_empty()
        );
        assert_eq!(lt.totals().cpu, RiseCounts::default());
    }

    #[test]
    fn rises_kept_from_before_a_restart_count_in_the_day_until_they_are_a_day_old() {
        let mut lt = LeadTime::default();
        let rise = |start_ms| Rise {
            uuid: "u1".into(),
            resource: Resource::Mem,
            start_ms,
            level: 1e6,
            in_force: None,
            outcome: Outcome::Late,
            late_s: Some(30.0),
            end_ms: start_ms + 30_000,
        };
        let now = 10 * DAY_MS;
        lt.adopt(vec![
            rise(now - 2 * HOUR_MS),
            rise(now - 60_000),
            rise(now - 2 * DAY_MS),
        ]);
        let w = lt.windows(Some("u1")).mem;
        assert_eq!((w.hour.late, w.day.late), (1, 2));
        assert_eq!(
            lt.totals().mem,
            RiseCounts::default(),
            "not since this start"
        );
        assert_eq!(lt.last("u1").mem.unwrap().start_ms, now - 60_000);
    }
}

/// The classifier in the control loop: a tenant's recurring CPU step, late while the policy
/// follows usage and ahead once it holds enough, counted in the views and kept across a
/// restart.
#[cfg(test)]
mod through_the_controller {
    use super::*;
    use crate::allocate::{Inputs, Policy};
    use crate::backend::{
        Backend, BackendError, DomainConfig, DomainCounters, DomainSnapshot, Snapshot,
    };
    use crate::control::view::{Context, Status, View};
    use crate::model::{HostInfo, TenantId};
    use crate::pipeline::Controller;
    use crate::plan::{Allocation, Applied, Plan, TenantAllocation};
    use crate::profile::ProfileDb;
    use crate::profile::writer::ProfileWriter;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// One 1-vCPU tenant wanting `demand[k]` cores in cycle k, given at most the CPU in
    /// force (capped when it wanted more).
    struct Stepping {
        t_s: u64,
        cpu_ns: u64,
        demand: Vec<f64>,
        in_force: f64,
    }

    fn host() -> HostInfo {
        HostInfo {
            cpus: 4,
            capacity: PerResource {
                cpu: Some(4.0),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    impl Backend for Stepping {
        fn describe(&self) -> String {
            "stepping".into()
        }
        fn host(&mut self) -> Result<HostInfo, BackendError> {
            Ok(host())
        }
        fn snapshot(&mut self) -> Result<Snapshot, BackendError> {
            let k = (self.t_s / 10) as usize;
            self.t_s += 10;
            let want = self.demand.get(k).copied().unwrap_or(0.01);
            self.cpu_ns += (want.min(self.in_force) * 10e9) as u64;
            Ok(Snapshot {
                at_unix_ms: 1_800_000_000_000 + (self.t_s * 1000) as i64,
                mono_ns: self.t_s * 1_000_000_000,
                host: host(),
                domains: vec![DomainSnapshot {
                    id: TenantId {
                        uuid: "u1".into(),
                        name: "web-1".into(),
                    },
                    config: DomainConfig {
                        vcpus: 1,
                        size_is_limit: true,
                        ..Default::default()
                    },
                    counters: DomainCounters {
                        cpu_time_ns: Some(self.cpu_ns),
                        ..Default::default()
                    },
                    capped: PerResource {
                        cpu: Some(want > self.in_force + 1e-9),
                        ..Default::default()
                    },
                    ..Default::default()
                }],
            })
        }
        fn shapes(&self) -> PerResource<bool> {
            PerResource {
                cpu: true,
                ..Default::default()
            }
        }
        fn latency(&self) -> PerResource<f64> {
            PerResource::default()
        }
        fn apply(&mut self, plan: &Plan) -> Result<Applied, BackendError> {
            let mut applied = Applied::default();
            for d in &plan.domains {
                for c in &d.changes {
                    if c.resource == Resource::Cpu {
                        self.in_force = c.amount;
                    }
                    (applied.accepted).push((d.id.uuid.clone(), c.resource, c.amount));
                }
            }
            Ok(applied)
        }
    }

    /// Follows usage (0.3 core above it, all 2 cores once capped) until `hold` is set, then
    /// holds 1.2 cores.
    struct Follows(Arc<AtomicBool>);

    impl Policy for Follows {
        fn describe(&self) -> String {
            "follows".into()
        }
        fn decide(&mut self, input: &Inputs<'_>) -> Allocation {
            let hold = self.0.load(Ordering::Relaxed);
            Allocation {
                tenants: (input.obs.tenants.iter())
                    .map(|t| TenantAllocation {
                        uuid: t.id.uuid.clone(),
                        reasons: None,
                        amounts: PerResource {
                            cpu: match (hold, t.capped.cpu, t.usage.cpu) {
                                (true, _, _) => 1.2,
                                (false, true, _) => 2.0,
                                (false, false, u) => u.unwrap_or(0.0) + 0.3,
                            },
                            ..Default::default()
                        },
                    })
                    .collect(),
            }
        }
    }

    fn view(c: &Controller, obs: Option<&Observation>) -> View {
        let notes = Default::default();
        let ctx = Context {
            status: Status::default(),
            obs,
            notes: &notes,
        };
        View::build(c, ctx)
    }

    #[test]
    fn rises_are_counted_shown_in_status_and_explain_and_kept_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.db");
        let writer = || {
            let db = ProfileDb::open(&path, false).unwrap();
            let kept = db.load_rises(0).unwrap();
            let w =
                ProfileWriter::spawn(db, Default::default(), std::time::Duration::from_secs(3600));
            (w, kept)
        };
        let (w, kept) = writer();
        assert!(kept.is_empty());
        let hold = Arc::new(AtomicBool::new(false));
        let mut c = Controller::new(Some(w)).with_policy(Box::new(Follows(hold.clone())));
        let (idle, busy) = (0.01, 1.0);
        let mut demand = vec![idle; 5];
        demand.extend([busy; 3]);
        demand.extend([idle; 4]);
        demand.extend([busy; 3]);
        demand.extend([idle; 2]);
        let mut backend = Stepping {
            t_s: 0,
            cpu_ns: 0,
            demand: demand.clone(),
            in_force: 4.0,
        };
        let mut obs = None;
        for k in 0..demand.len() {
            if k == 10 {
                hold.store(true, Ordering::Relaxed);
            }
            obs = Some(c.step(&mut backend).unwrap());
        }
        let v = view(&c, obs.as_ref());
        let day = RiseCounts {
            ahead: 1,
            late: 1,
            not_covered: 0,
        };
        assert_eq!(v.status.rises.cpu.hour, day, "{:?}", v.status.rises);
        assert_eq!(v.status.rises.cpu.day, day);
        assert_eq!(v.status.rises_total.cpu, day);
        assert_eq!(v.status.rises.mem, RiseWindows::default());
        // The first step: held at 0.31 in its first sample (cycle 6, from 50 s), covered by
        // the 2 cores given after it: late by one interval.
        let late = &v.status.rise_late_seconds.cpu;
        assert_eq!((late.count, late.sum), (1, 10.0));
        let e = v.explain("web-1").unwrap();
        assert_eq!(e.rises.cpu.day, day);
        let last = e.last_rises.cpu.as_ref().unwrap();
        assert_eq!(last.outcome, Outcome::Ahead);
        assert_eq!(last.in_force, Some(1.2));
        assert!((last.level - 1.0).abs() < 1e-6, "{last:?}");
        c.shutdown();

        // After a restart: the day's rises from the profile, none since this start.
        let (w, kept) = writer();
        assert_eq!(kept.len(), 2, "{kept:?}");
        let first = &kept[0];
        assert_eq!(first.outcome, Outcome::Late);
        assert_eq!(first.start_ms, 1_800_000_000_000 + 50_000);
        assert_eq!(
            (first.in_force.map(|f| (f * 100.0).round()), first.late_s),
            (Some(31.0), Some(10.0))
        );
        let mut again = Controller::new(Some(w));
        again.adopt_rises(kept);
        let v = view(&again, None);
        assert_eq!(v.status.rises.cpu.day, day);
        assert_eq!(v.status.rises_total.cpu, RiseCounts::default());
        again.shutdown();
    }
}
