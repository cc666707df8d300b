//! The forecast stage of the control loop. Each tenant's observed usage is averaged over
//! buckets (5 minutes by default, whatever the control interval) and each completed bucket
//! updates the tenant's [`TenantForecaster`]; the latest forecast
//! is kept for the stages after it, with the tenant's declared intents blended in
//! ([`super::intents`]). State (forecasters and intent books) is exported compactly (postcard)
//! for the profile database, and restored at start, so that a restarted daemon forecasts at
//! once and keeps its intents and their trust.
//!
//! The forecasters count time in buckets: their "hour" is 12 buckets and their "day" 288,
//! whatever the bucket's length. The stage hands them each bucket's start on a clock of
//! [`STEP_S`] per bucket, so that with 300-second buckets that clock is the wall clock, and
//! with 20-second buckets a workload that repeats every 4 minutes looks hourly to them.

use super::intents::{Intent, IntentBook, IntentError};
use super::{Config, Forecast, TenantForecaster};
use crate::collect::Observation;
use crate::model::STEP_S;
use crate::model::{PerResource, Resource};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// The version of the exported state's encoding (postcard of [`Saved`]): 4 since it holds the
/// bucket length (3, without it, is read as 300-second buckets).
pub const STATE_FORMAT: i64 = 4;

/// What is saved of a tenant.
#[derive(Serialize, Deserialize)]
struct Saved {
    bucket_s: i64,
    forecaster: TenantForecaster,
    intents: IntentBook,
}

/// Format 3: the same without the bucket length (always 300 seconds then).
#[derive(Deserialize)]
struct SavedV3 {
    forecaster: TenantForecaster,
    intents: IntentBook,
}

/// The same, borrowed, to encode without copying.
#[derive(Serialize)]
struct SavedRef<'a> {
    bucket_s: i64,
    forecaster: &'a TenantForecaster,
    intents: &'a IntentBook,
}

struct Bucket {
    start_s: i64,
    sum: [f64; 4],
    n: u32,
    /// Whether the tenant ran into its allocation in any of the bucket's intervals.
    capped: [bool; 4],
}

/// A capped bucket's served usage is only a lower bound of its demand (the cap cut it off):
/// the forecaster learns it × this much, the same step a policy probes upward with, so that
/// a cap never teaches it that the demand is the cap.
pub const CENSORED_UPLIFT: f64 = 1.5;

struct Entry {
    forecaster: TenantForecaster,
    intents: IntentBook,
    bucket: Option<Bucket>,
    /// The start of the last bucket fed: the origin of `latest`.
    origin_s: Option<i64>,
    /// The latest forecast, intents blended in.
    latest: Option<PerResource<Forecast>>,
    /// Updated since it was last exported.
    dirty: bool,
}

pub struct ForecastStage {
    cfg: Config,
    /// The bucket length in seconds.
    bucket_s: i64,
    /// Horizons kept in each latest forecast (1..=48).
    horizons: usize,
    tenants: HashMap<Arc<str>, Entry>,
    /// Buckets a forecaster refused (a clock going backwards, a bad value): counted, never fed.
    pub rejected: u64,
}

impl ForecastStage {
    pub fn new(cfg: Config) -> Self {
        ForecastStage {
            cfg,
            bucket_s: STEP_S,
            horizons: super::H,
            tenants: HashMap::new(),
            rejected: 0,
        }
    }

    /// Keep only horizons 1..=`horizons` in the latest forecasts (a policy that looks one
    /// interval ahead needs 1): each bucket then costs far less to forecast.
    pub fn with_horizons(mut self, horizons: usize) -> Self {
        self.horizons = horizons.clamp(1, super::H);
        self
    }

    /// Average usage over buckets of `seconds` (default [`STEP_S`]; at least 1).
    pub fn with_bucket_seconds(mut self, seconds: i64) -> Self {
        self.bucket_s = seconds.max(1);
        self
    }

    /// The bucket length in seconds: a forecast's step k is the k-th bucket after its origin.
    pub fn bucket_seconds(&self) -> i64 {
        self.bucket_s
    }

    pub fn tenants(&self) -> usize {
        self.tenants.len()
    }

    /// Take in one cycle's observation.
    pub fn observe(&mut self, obs: &Observation) {
        // An observation's usage was measured over the interval that ends at it: it belongs
        // to the bucket holding the instant just before, and an observation at a bucket's
        // end completes that bucket at once (so that the forecast's first step is the
        // bucket now starting).
        let at_ms = obs.at_unix_ms;
        let b = self.bucket_s;
        let start_s = (at_ms - 1).div_euclid(1000 * b) * b;
        let completes = at_ms >= (start_s + b) * 1000;
        for t in &obs.tenants {
            // Only intervals with all four rates (not a tenant's first sight) count.
            let (Some(cpu), Some(mem), Some(disk), Some(net)) =
                (t.usage.cpu, t.usage.mem, t.usage.disk, t.usage.net)
            else {
                continue;
            };
            let cfg = &self.cfg;
            let e = self
                .tenants
                .entry(Arc::clone(&t.id.uuid))
                .or_insert_with(|| Entry::new(TenantForecaster::new(cfg.clone())));
            let capped = [t.capped.cpu, t.capped.mem, t.capped.disk, t.capped.net];
            match &mut e.bucket {
                Some(b) if b.start_s == start_s => {
                    for (s, v) in b.sum.iter_mut().zip([cpu, mem, disk, net]) {
                        *s += v;
                    }
                    b.n += 1;
                    for (c, now) in b.capped.iter_mut().zip(capped) {
                        *c |= now;
                    }
                }
                _ => {
                    if let Some(done) = e.bucket.take() {
                        self.rejected += close(e, done, &t.id.name, self.horizons, b) as u64;
                    }
                    e.bucket = Some(Bucket {
                        start_s,
                        sum: [cpu, mem, disk, net],
                        n: 1,
                        capped,
                    });
                }
            }
            if completes && let Some(done) = e.bucket.take() {
                self.rejected += close(e, done, &t.id.name, self.horizons, b) as u64;
            }
        }
        // A vanished tenant's unfinished bucket is dropped; its forecaster stays (it may
        // come back) until it is exported.
        for id in &obs.vanished {
            if let Some(e) = self.tenants.get_mut(&*id.uuid) {
                e.bucket = None;
            }
        }
    }

    /// The latest forecast of a tenant (intents blended in), once one bucket has completed.
    pub fn forecast(&self, uuid: &str) -> Option<&PerResource<Forecast>> {
        self.tenants.get(uuid).and_then(|e| e.latest.as_ref())
    }

    /// The latest forecast with the start of its origin bucket (Unix seconds): its step k
    /// (index k − 1) is the bucket that starts at origin + k × [`Self::bucket_seconds`].
    pub fn latest(&self, uuid: &str) -> Option<(i64, &PerResource<Forecast>)> {
        let e = self.tenants.get(uuid)?;
        Some((e.origin_s?, e.latest.as_ref()?))
    }

    /// Declare an intent for a tenant being forecast (the latest forecast takes it in at
    /// once). `now_s`: the current Unix time.
    pub fn declare(&mut self, uuid: &str, intent: Intent, now_s: i64) -> Result<(), IntentError> {
        let Some(e) = self.tenants.get_mut(uuid) else {
            return Err(IntentError::UnknownTenant {
                id: intent.id,
                uuid: uuid.to_string(),
            });
        };
        e.intents.declare(intent, now_s)?;
        e.dirty = true;
        e.refresh(self.horizons, self.bucket_s);
        Ok(())
    }

    /// Cancel a pending intent; false if the tenant or the intent is unknown.
    pub fn cancel(&mut self, uuid: &str, id: u64) -> bool {
        let Some(e) = self.tenants.get_mut(uuid) else {
            return false;
        };
        let found = e.intents.cancel(id);
        if found {
            e.dirty = true;
            e.refresh(self.horizons, self.bucket_s);
        }
        found
    }

    /// Every tenant's intents, by UUID.
    pub fn all_intents(&self) -> impl Iterator<Item = (&Arc<str>, &IntentBook)> {
        self.tenants.iter().map(|(u, e)| (u, &e.intents))
    }

    /// A tenant's forecaster (its models' weights and errors, for inspection).
    pub fn forecaster(&self, uuid: &str) -> Option<&super::TenantForecaster> {
        self.tenants.get(uuid).map(|e| &e.forecaster)
    }

    /// A tenant's intents and the trust they have earned.
    pub fn intents(&self, uuid: &str) -> Option<&IntentBook> {
        self.tenants.get(uuid).map(|e| &e.intents)
    }

    /// Encode the forecasters updated since the last export (all of them with `all`).
    pub fn export(&mut self, all: bool) -> Vec<(Arc<str>, Vec<u8>)> {
        let mut out = Vec::new();
        for (uuid, e) in &mut self.tenants {
            if !(all || e.dirty) {
                continue;
            }
            let saved = SavedRef {
                bucket_s: self.bucket_s,
                forecaster: &e.forecaster,
                intents: &e.intents,
            };
            match postcard::to_allocvec(&saved) {
                Ok(bytes) => {
                    out.push((Arc::clone(uuid), bytes));
                    e.dirty = false;
                }
                Err(err) => tracing::error!(uuid = %uuid, "cannot encode forecaster state: {err}"),
            }
        }
        out
    }

    /// Restore exported forecasters. A state that does not decode is skipped with a warning
    /// (that tenant starts learning afresh); returns how many were restored.
    pub fn restore(&mut self, saved: Vec<(String, i64, Vec<u8>)>) -> usize {
        let mut restored = 0;
        for (uuid, format, bytes) in saved {
            let decoded = match format {
                STATE_FORMAT => postcard::from_bytes::<Saved>(&bytes),
                3 => postcard::from_bytes::<SavedV3>(&bytes).map(|v| Saved {
                    bucket_s: STEP_S,
                    forecaster: v.forecaster,
                    intents: v.intents,
                }),
                _ => {
                    tracing::warn!(%uuid, format, "forecaster state in an unknown format; relearning");
                    continue;
                }
            };
            match decoded {
                Ok(saved) if saved.bucket_s != self.bucket_s => tracing::warn!(
                    %uuid,
                    "forecaster state learned over {} s buckets, {} s now; relearning",
                    saved.bucket_s,
                    self.bucket_s
                ),
                Ok(saved) => {
                    let mut e = Entry::new(saved.forecaster);
                    e.intents = saved.intents;
                    e.origin_s = e.forecaster.last_ts().map(|t| from_steps(t, self.bucket_s));
                    e.refresh(self.horizons, self.bucket_s);
                    self.tenants.insert(uuid.into(), e);
                    restored += 1;
                }
                Err(e) => {
                    tracing::warn!(%uuid, "forecaster state does not decode ({e}); relearning")
                }
            }
        }
        restored
    }
}

impl Entry {
    fn new(forecaster: TenantForecaster) -> Self {
        Entry {
            forecaster,
            intents: IntentBook::new(),
            bucket: None,
            origin_s: None,
            latest: None,
            dirty: false,
        }
    }

    /// Recompute the latest forecast (horizons 1..=`horizons`) from the forecaster and the
    /// intents.
    fn refresh(&mut self, horizons: usize, bucket_s: i64) {
        self.latest = self.origin_s.map(|o| {
            let mut f = self.forecaster.forecast_upto(horizons);
            self.intents.blend(o, bucket_s, &mut f);
            f
        });
    }
}

/// The forecasters' clock at the bucket starting at `t` (Unix seconds): [`STEP_S`] a bucket.
fn to_steps(t: i64, bucket_s: i64) -> i64 {
    t.div_euclid(bucket_s) * STEP_S
}

/// The wall clock (Unix seconds) at the forecasters' time `t`.
fn from_steps(t: i64, bucket_s: i64) -> i64 {
    t.div_euclid(STEP_S) * bucket_s
}

/// Feed a completed bucket's means; true if the forecaster refused them.
fn close(e: &mut Entry, b: Bucket, name: &str, horizons: usize, bucket_s: i64) -> bool {
    let n = b.n.max(1) as f64;
    let mut means = PerResource::default();
    for r in Resource::ALL {
        let uplift = if b.capped[r.index()] {
            CENSORED_UPLIFT
        } else {
            1.0
        };
        *means.get_mut(r) = b.sum[r.index()] / n * uplift;
    }
    match e.forecaster.update(to_steps(b.start_s, bucket_s), means) {
        Ok(()) => {
            e.intents.observe(b.start_s, bucket_s, means);
            e.origin_s = Some(b.start_s);
            e.refresh(horizons, bucket_s);
            e.dirty = true;
            false
        }
        Err(err) => {
            tracing::warn!(
                tenant = name,
                "forecaster refused the bucket at {}: {err}",
                b.start_s
            );
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::TenantStats;
    use crate::model::{HostInfo, TenantId, TenantPolicy};

    fn obs(at_s: i64, cpu: f64) -> Observation {
        Observation {
            at_unix_ms: at_s * 1000,
            host: HostInfo::default(),
            tenants: vec![TenantStats {
                id: TenantId {
                    uuid: "u1".into(),
                    name: "vm1".into(),
                },
                policy: TenantPolicy::default(),
                vcpus: 1,
                max_memory_kib: 0,
                size_is_limit: false,
                usage: PerResource {
                    cpu: Some(cpu),
                    mem: Some(1000.0),
                    disk: Some(10.0),
                    net: Some(5.0),
                },
                capped: PerResource::default(),
                cpu: Default::default(),
                mem: Default::default(),
                disks: vec![],
                nics: vec![],
                disk_targets: vec![],
                settings: vec![],
            }],
            appeared: vec![],
            vanished: vec![],
        }
    }

    /// Ten hours of 10 s samples: a daily-ish wave.
    fn feed(stage: &mut ForecastStage, from_s: i64, hours: i64) {
        for i in 0..hours * 360 {
            let t = from_s + i * 10;
            let cpu = 1.0 + ((t as f64) / 86_400.0 * std::f64::consts::TAU).sin().abs();
            stage.observe(&obs(t, cpu));
        }
    }

    #[test]
    fn buckets_feed_the_forecaster_once_per_five_minutes() {
        let mut s = ForecastStage::new(Config::default());
        let start = 1_700_000_100; // a multiple of 300
        feed(&mut s, start, 1);
        let e = &s.tenants["u1"];
        // The sample at `start` reports the 10 s before it: it completes the bucket before
        // `start`; then 11 buckets complete and the 12th is still open.
        assert_eq!(
            e.forecaster.series.cpu.len(),
            12,
            "the bucket before start, then 11 of 12"
        );
        let (origin, _) = s.latest("u1").unwrap();
        assert_eq!(origin, start + 10 * 300, "the last complete bucket");
        let f = s.forecast("u1").expect("a forecast after the first bucket");
        assert_eq!(f.cpu.point.len(), 48);
        assert!(
            f.mem.point.iter().all(|v| (v - 1000.0).abs() < 1e-6),
            "a constant stays constant"
        );
        assert_eq!(s.rejected, 0);
    }

    /// With 20-second buckets a load that repeats every 4 minutes (12 buckets) is learned
    /// in an hour and a half of 10 s samples: the forecast of the next 8 buckets follows
    /// the cycle.
    #[test]
    fn short_buckets_learn_a_short_cycle() {
        let mut s = ForecastStage::new(Config::default()).with_bucket_seconds(20);
        assert_eq!(s.bucket_seconds(), 20);
        let start = 1_700_000_100;
        let busy = |t: i64| (t - 1).div_euclid(20).rem_euclid(12) < 6;
        for i in 0..(90 * 6) {
            let t = start + i * 10;
            s.observe(&obs(t, if busy(t) { 1.0 } else { 0.1 }));
        }
        let (origin, f) = s.latest("u1").unwrap();
        assert_eq!(origin % 20, 0);
        assert_eq!(origin, (start + 539 * 10 - 20).div_euclid(20) * 20);
        assert_eq!(s.rejected, 0);
        for k in 1..=8usize {
            let at = origin + 20 * k as i64;
            let p50 = f.cpu.quantiles[k - 1][0];
            if busy(at + 1) {
                assert!(p50 > 0.7, "busy bucket {k} at {at}: p50 {p50}");
            } else {
                assert!(p50 < 0.4, "idle bucket {k} at {at}: p50 {p50}");
            }
        }
        // A state learned over other buckets is not taken for this one; format 3 (before
        // the bucket length was saved) is read as 300-second buckets.
        let saved: Vec<_> = s
            .export(true)
            .into_iter()
            .map(|(u, b)| (u.to_string(), STATE_FORMAT, b))
            .collect();
        assert_eq!(
            ForecastStage::new(Config::default()).restore(saved.clone()),
            0
        );
        let mut same = ForecastStage::new(Config::default()).with_bucket_seconds(20);
        assert_eq!(same.restore(saved), 1);
        assert_eq!(same.latest("u1").unwrap().0, origin);
        let e = &s.tenants["u1"];
        let v3 = postcard::to_allocvec(&(&e.forecaster, &e.intents)).unwrap();
        let mut old = ForecastStage::new(Config::default());
        assert_eq!(old.restore(vec![("u1".into(), 3, v3)]), 1);
    }

    #[test]
    fn export_and_restore_give_identical_forecasts() {
        let mut s = ForecastStage::new(Config::default());
        feed(&mut s, 1_700_000_100, 10);
        let saved = s.export(false);
        assert_eq!(saved.len(), 1);
        assert!(s.export(false).is_empty(), "nothing new since");
        let before = s.forecast("u1").unwrap().clone();
        let mut r = ForecastStage::new(Config::default());
        let rows = saved
            .into_iter()
            .map(|(u, b)| (u.to_string(), STATE_FORMAT, b))
            .collect();
        assert_eq!(r.restore(rows), 1);
        assert_eq!(
            r.forecast("u1").unwrap(),
            &before,
            "forecasts at once after a restart"
        );
        // And it goes on learning (the bucket open at export time is lost but for the sample
        // that completes it: at most 5 min).
        let len = r.tenants["u1"].forecaster.series.cpu.len();
        feed(&mut r, 1_700_000_100 + 10 * 3600, 1);
        assert_eq!(r.tenants["u1"].forecaster.series.cpu.len(), len + 12);
    }

    #[test]
    fn bad_state_and_bad_clocks_poison_nothing() {
        let mut s = ForecastStage::new(Config::default());
        let n = s.restore(vec![
            ("u1".into(), STATE_FORMAT, vec![0xff, 0x01, 0x02]),
            ("u2".into(), 99, vec![]),
        ]);
        assert_eq!(n, 0);
        feed(&mut s, 1_700_000_100, 1);
        let len = s.tenants["u1"].forecaster.series.cpu.len();
        // The clock jumps back an hour: the bucket still open closes normally, the hour's
        // buckets (and the one its first sample completes) are refused and counted.
        feed(&mut s, 1_700_000_100 - 3600, 1);
        assert_eq!(s.rejected, 12);
        assert_eq!(s.tenants["u1"].forecaster.series.cpu.len(), len + 1);
    }

    /// An intent declared for a tenant raises its latest forecast inside the window at once,
    /// survives an export and restore, and an intent for an unknown tenant is refused.
    #[test]
    fn intents_blend_into_the_forecast_and_are_saved() {
        let mut s = ForecastStage::new(Config::default());
        let start = 1_700_000_100;
        feed(&mut s, start, 10);
        let before = s.forecast("u1").unwrap().clone();
        let now = start + 10 * 3600;
        let origin = now - 2 * STEP_S; // the last completed bucket
        let intent = Intent {
            id: 7,
            resource: Resource::Cpu,
            start_s: origin + 6 * STEP_S,
            duration_s: 3 * STEP_S,
            amount: 8.0,
        };
        assert!(matches!(
            s.declare("nobody", intent.clone(), now),
            Err(IntentError::UnknownTenant { .. })
        ));
        s.declare("u1", intent, now).unwrap();
        let after = s.forecast("u1").unwrap().clone();
        for k in 1..=48usize {
            let (b, a) = (before.cpu.point[k - 1], after.cpu.point[k - 1]);
            if (6..9).contains(&k) {
                assert!(a > b + 1.0, "h={k}: {b} → {a} inside the window");
            } else {
                assert_eq!(a, b, "h={k}: untouched outside the window");
            }
        }
        assert_eq!(after.mem, before.mem, "other resources untouched");
        // Saved and restored with the forecaster.
        let saved = s
            .export(true)
            .into_iter()
            .map(|(u, b)| (u.to_string(), STATE_FORMAT, b))
            .collect();
        let mut r = ForecastStage::new(Config::default());
        assert_eq!(r.restore(saved), 1);
        assert_eq!(r.intents("u1").unwrap().pending().len(), 1);
        assert_eq!(r.forecast("u1").unwrap(), &after);
        assert!(r.cancel("u1", 7));
        assert_eq!(r.forecast("u1").unwrap(), &before);
    }
}
