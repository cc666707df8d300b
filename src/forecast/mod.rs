//! Per-tenant, per-resource online forecasting.
//!
//! A [`SeriesForecaster`] follows one series (one tenant's cpu, mem, disk or net at the
//! 5-minute control interval): every observation updates ~35 cheap candidate forecasters
//! (`models/`), scores the forecasts whose targets just arrived, and records the
//! candidates' forecasts at the scored horizons to score later. A forecast
//! for horizons 1..=48 is the weighted median of the candidates (weights from discounted
//! recent absolute errors per horizon, [`ensemble`]) with p50/p90/p95/p99 from online
//! conformal prediction on the ensemble's recent residuals ([`conformal`]).
//!
//! Every origin is scored, at 6 horizons ([`SCORED`]): a forecast for horizon k waits k
//! steps in a ring of k records, 94 records in all (all 48 horizons would need 1176). An
//! unscored horizon uses the weights of the nearest scored one (quantile offsets are
//! interpolated). Besides each candidate's overall discounted error, the scores keep how
//! its error at each phase of the hour (the origin's 5-minute slot in the hour) compares
//! with its overall error: many tenants repeat every hour, and which candidate is best
//! depends on where in that cycle the forecast starts. The conformal quantiles are scaled
//! by the phase of the hour of the step forecast (how far the actual has run above the
//! ensemble's point there, learnt from every origin); their windows of normalised residuals
//! and the candidates' p95 tracking take every 7th origin (7 is prime to the hourly cycle,
//! so every phase is represented), as a longer window for the same memory.
//!
//! The whole state is `serde`-serialisable; restoring it gives identical forecasts.
//! [`TenantForecaster`] holds the four series of a tenant. `eval` runs the `forecast-eval`
//! protocol on traces; `bench` measures the costs.

// Index loops read best in the numerical code below.
#![allow(clippy::needless_range_loop)]

pub mod bench;
pub mod conformal;
pub mod ensemble;
pub mod eval;
pub mod history;
pub mod intents;
pub mod leadlag;
pub mod models;
pub mod plot;
pub mod ridge;
pub mod stage;

use crate::model::STEP_S;
use crate::model::{PerResource, Resource};
use conformal::Conformal;
use ensemble::{Scores, top, weighted_median_of};
use history::{History, MISSING, companion_values, present};
use models::{Model, Origin};
use serde::{Deserialize, Serialize};

pub use models::H;

/// The horizons (steps) at which candidates are scored.
pub const SCORED: [usize; 6] = [1, 3, 6, 12, 24, 48];
const NS: usize = SCORED.len();

/// Where scored horizon i's ring of pending records starts (it holds SCORED[i] records).
const RING_AT: [usize; NS] = {
    let mut at = [0; NS];
    let mut i = 1;
    while i < NS {
        at[i] = at[i - 1] + SCORED[i - 1];
        i += 1;
    }
    at
};

/// Pending records in all.
const RING: usize = RING_AT[NS - 1] + SCORED[NS - 1];

/// Every this many origins feed the conformal residual windows and the candidates' p95
/// tracking (prime to the hourly cycle).
const SLOW_EVERY: u64 = 7;

/// Steps between recomputations of the candidates each horizon combines (by their overall
/// errors; the phase of the hour scales their weights at every forecast).
const CHOOSE_EVERY: u64 = 7;

/// The phase of the hour of a timestamp: its 5-minute slot in the hour.
fn phase_of(ts: i64) -> usize {
    ts.div_euclid(STEP_S).rem_euclid(ensemble::PHASES as i64) as usize
}

/// The scored horizon whose weights horizon k (1..=48) uses: the nearest one.
fn scored_index(k: usize) -> usize {
    let mut best = 0;
    for (i, &s) in SCORED.iter().enumerate() {
        if s.abs_diff(k) < SCORED[best].abs_diff(k) {
            best = i;
        }
    }
    best
}

/// Horizon k between scored horizons: (index below, index above, fraction of the way).
fn interp_at(k: usize) -> (usize, usize, f32) {
    match SCORED.iter().position(|&s| s >= k) {
        Some(0) => (0, 0, 0.0),
        None => (NS - 1, NS - 1, 0.0),
        Some(j) if SCORED[j] == k => (j, j, 0.0),
        Some(j) => {
            let (a, b) = (SCORED[j - 1] as f32, SCORED[j] as f32);
            (j - 1, j, (k as f32 - a) / (b - a))
        }
    }
}

macro_rules! models {
    ($($field:ident : $ty:ty),* $(,)?) => {
        /// Every candidate model's state.
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Models { $(pub $field: $ty,)* }

        /// The model families in order, with their candidates' names.
        pub const FAMILIES: &[(&str, &[&str])] = &[$((stringify!($field), <$ty as Model>::NAMES),)*];

        impl Models {
            fn update(&mut self, h: &History) {
                $(self.$field.update(h);)*
            }
            /// Forecasts of every enabled family, `out[c * hs.len() + i]` for candidate c.
            fn forecast(&self, o: &Origin, hs: &[usize], on: &[bool], out: &mut [f32]) {
                let n = hs.len();
                let mut c = 0;
                $(
                    let k = <$ty as Model>::NAMES.len();
                    let want = on[c..c + k]
                        .iter()
                        .enumerate()
                        .fold(0u64, |w, (j, &b)| w | ((b as u64) << j));
                    if want != 0 {
                        self.$field.forecast(o, hs, want, &mut out[c * n..(c + k) * n]);
                    }
                    c += k;
                )*
                let _ = c;
            }

            /// Forecasts of family `f` alone (`out[j * hs.len() + i]` for its candidate j in
            /// `want`).
            fn forecast_family(&self, f: usize, o: &Origin, hs: &[usize], want: u64, out: &mut [f32]) {
                let mut i = 0;
                $(
                    if i == f {
                        self.$field.forecast(o, hs, want, out);
                        return;
                    }
                    i += 1;
                )*
                let _ = i;
            }
        }
    };
}

models! {
    naive: models::naive::Naive,
    seasonal: models::seasonal::Seasonal,
    moving: models::moving::Moving,
    smoothers: models::smoothers::Smoothers,
    profile: models::profile::Profile,
    phase: models::phase::Phase,
    holt_winters: models::holt_winters::HoltWinters,
    ar: models::ar::Ar,
    esn: models::esn::Esn,
    histogram: models::histogram::Histogram,
}

/// Every candidate's name, in the order forecasts and weights are reported.
pub fn candidate_names() -> Vec<&'static str> {
    FAMILIES
        .iter()
        .flat_map(|(_, n)| n.iter().copied())
        .collect()
}

/// Which candidates a comma-separated list enables (candidate or family names; `all`).
pub fn parse_models(list: &str) -> Result<Vec<bool>, String> {
    let names = candidate_names();
    let mut on = vec![false; names.len()];
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "all" {
            on.fill(true);
            continue;
        }
        if let Some(i) = names.iter().position(|n| *n == item) {
            on[i] = true;
            continue;
        }
        let mut c = 0;
        let mut found = false;
        for (fam, n) in FAMILIES {
            if *fam == item {
                on[c..c + n.len()].fill(true);
                found = true;
            }
            c += n.len();
        }
        if !found {
            return Err(format!(
                "unknown model {item:?} (candidates: {}; families: {})",
                names.join(","),
                FAMILIES.iter().map(|f| f.0).collect::<Vec<_>>().join(",")
            ));
        }
    }
    if !on.iter().any(|&b| b) {
        return Err("no model selected".into());
    }
    Ok(on)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Candidates in the ensemble (by [`candidate_names`] index).
    pub enabled: Vec<bool>,
    /// Half-life of the discounted errors, in steps.
    pub half_life: f32,
    /// Weights ∝ (S_m / min S)^-power.
    pub power: f32,
    /// How much a candidate's error at the origin's phase of the hour counts against its
    /// overall error (0: phases ignored).
    pub phase_weight: f32,
    /// Residuals kept per scored horizon for the conformal quantiles.
    pub window: usize,
    /// At most this many candidates (the heaviest) enter a weighted median.
    pub cap: usize,
    /// Quantile-tracking step of the conformal correction (in mean absolute residuals).
    pub eta: f32,
    /// Lead-lag links from the tenant's other resources into the AR model.
    pub links: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: vec![true; candidate_names().len()],
            half_life: 576.0,
            power: 5.0,
            phase_weight: 0.85,
            window: 200,
            cap: 12,
            eta: 0.1,
            links: true,
        }
    }
}

/// The largest value a series accepts (usage in bytes/s, KiB or cores is far below; the
/// models keep f32 sums and squares of values).
pub const MAX_VALUE: f64 = 1e15;

/// A value a series can take: finite, non-negative, at most [`MAX_VALUE`].
fn check_value(v: f64) -> Result<(), ForecastError> {
    if !v.is_finite() {
        Err(ForecastError::NotFinite(v))
    } else if v < 0.0 {
        Err(ForecastError::Negative(v))
    } else if v > MAX_VALUE {
        Err(ForecastError::TooLarge(v))
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    #[error("value {0} is not a finite number")]
    NotFinite(f64),
    #[error("value {0} is negative")]
    Negative(f64),
    #[error(
        "value {0} is beyond any usage (over {MAX_VALUE:e}): refused so that it cannot overflow the models' f32 state"
    )]
    TooLarge(f64),
    #[error("timestamp {ts} is not after the previous one ({last})")]
    NotLater { ts: i64, last: i64 },
    #[error("{resource}: {source}")]
    Resource {
        resource: Resource,
        source: Box<ForecastError>,
    },
}

/// A forecast for horizons 1..=48 (index k − 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub point: Vec<f32>,
    /// p50, p90, p95, p99 ([`conformal::LEVELS`]).
    pub quantiles: Vec<[f32; 4]>,
}

/// A forecast with every candidate's, for evaluation and inspection.
#[derive(Debug, Clone, PartialEq)]
pub struct Detailed {
    pub ensemble: Forecast,
    /// `candidates[m * 48 + k − 1]` (MISSING when the candidate cannot tell yet).
    pub candidates: Vec<f32>,
    /// Each candidate's p95 (its point plus its tracked 95 % residual quantile).
    pub candidates_p95: Vec<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesForecaster {
    cfg: Config,
    m: usize,
    hist: History,
    models: Models,
    scores: Scores,
    /// Each candidate's tracked 95 % residual quantile per scored horizon (`[m * NS + i]`).
    q95: Vec<f32>,
    /// Recorded forecasts awaiting their targets, in one ring per scored horizon
    /// ([`RING_AT`]): a record is the candidates' forecasts and the ensemble's (`m + 1`
    /// values); `pending_phase` is its origin's phase (u8::MAX: none).
    pending: Vec<f32>,
    pending_phase: Vec<u8>,
    conformal: Conformal,
    /// The candidates each scored horizon combines, by their overall errors (recomputed
    /// every CHOOSE_EVERY steps; [`Self::chosen`] scales their weights for the phase of
    /// the hour):
    /// `chosen_idx[i * cap + j]` (u8::MAX: none) with weight `chosen_w[i * cap + j]`.
    chosen_idx: Vec<u8>,
    chosen_w: Vec<f32>,
}

impl Default for SeriesForecaster {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl SeriesForecaster {
    pub fn new(cfg: Config) -> Self {
        let m = candidate_names().len();
        assert_eq!(
            cfg.enabled.len(),
            m,
            "Config::enabled has one entry a candidate"
        );
        assert!(m <= 64, "candidate sets fit in a u64");
        let cfg = Config {
            cap: cfg.cap.clamp(1, ensemble::MAX_CAP),
            ..cfg
        };
        let mut f = SeriesForecaster {
            m,
            hist: History::new(),
            models: Models::default(),
            scores: Scores::new(m, NS),
            q95: vec![0.0; m * NS],
            pending: vec![MISSING; RING * (m + 1)],
            pending_phase: vec![u8::MAX; RING],
            conformal: Conformal::new(NS, cfg.window, cfg.eta),
            chosen_idx: vec![u8::MAX; NS * cfg.cap],
            chosen_w: vec![0.0; NS * cfg.cap],
            cfg,
        };
        f.refresh_chosen();
        f
    }

    /// The phase of the hour of the next forecast's origin (the last observation).
    fn phase(&self) -> usize {
        if self.hist.n == 0 {
            0
        } else {
            phase_of(self.hist.last_ts)
        }
    }

    /// Recompute which candidates each scored horizon combines, and their overall weights.
    fn refresh_chosen(&mut self) {
        let m = self.m;
        let mut w = [0f32; 64 * NS];
        let c = &self.cfg;
        self.scores
            .weights_all(&c.enabled, c.power, &mut w[..m * NS]);
        let cap = self.cfg.cap;
        for i in 0..NS {
            top(
                &w[i * m..(i + 1) * m],
                &mut self.chosen_idx[i * cap..(i + 1) * cap],
                &mut self.chosen_w[i * cap..(i + 1) * cap],
            );
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Observations seen.
    pub fn len(&self) -> u64 {
        self.hist.n
    }

    pub fn is_empty(&self) -> bool {
        self.hist.n == 0
    }

    /// Bytes of state held (vectors included).
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.hist.bytes()
            + self.models.holt_winters.bytes()
            + self.models.ar.bytes()
            + self.models.esn.bytes()
            + self.models.histogram.bytes()
            + self.scores.bytes()
            + self.conformal.bytes()
            + 4 * (self.q95.len() + self.pending.len() + self.chosen_w.len())
            + self.chosen_idx.len()
            + self.pending_phase.len()
            + self.cfg.enabled.len()
    }

    /// Add the observation at `ts` (Unix seconds). A non-finite or negative value, one over
    /// [`MAX_VALUE`], or a timestamp not after the last one, is refused and leaves the state
    /// untouched.
    pub fn update(&mut self, ts: i64, value: f64) -> Result<(), ForecastError> {
        self.update_with(ts, value, None)
    }

    /// [`update`](Self::update), with the companions' values at the same step (the tenant's
    /// other resources in [`history::companions_of`] order, then the leader) for the lead-lag
    /// links of the AR model. A companion value that is NaN, infinite or negative is taken
    /// as unknown.
    pub fn update_with(
        &mut self,
        ts: i64,
        value: f64,
        companions: Option<[f64; history::COMPANIONS]>,
    ) -> Result<(), ForecastError> {
        check_value(value)?;
        if self.hist.n > 0 && ts <= self.hist.last_ts {
            return Err(ForecastError::NotLater {
                ts,
                last: self.hist.last_ts,
            });
        }
        let y = value as f32;
        let co = companions.filter(|_| self.cfg.links).map(|c| {
            c.map(|v| {
                if v.is_finite() && v >= 0.0 {
                    v as f32
                } else {
                    MISSING
                }
            })
        });
        self.hist.push(ts, y, co);
        self.models.update(&self.hist);
        let step = self.hist.n - 1;
        self.score(step, y);
        if step.is_multiple_of(CHOOSE_EVERY) {
            self.refresh_chosen();
        }
        self.record(step);
        Ok(())
    }

    /// Score the recorded forecasts whose target is this step.
    fn score(&mut self, step: u64, y: f32) {
        let m = self.m;
        let keep = 0.5f32.powf(1.0 / self.cfg.half_life);
        // A phase is scored every 12 steps: its ratios forget twice as fast (a one-day
        // half-life), so that they rest on recent scores.
        let keep_phase = 0.5f32.powf(2.0 * ensemble::PHASES as f32 / self.cfg.half_life);
        let width = m + 1;
        // The conformal scales are kept by the phase of the target: this step.
        let target_phase = self.phase();
        for (i, &k) in SCORED.iter().enumerate() {
            let k = k as u64;
            if step < k {
                continue;
            }
            let slot = RING_AT[i] + (step % k) as usize;
            let phase = std::mem::replace(&mut self.pending_phase[slot], u8::MAX);
            if phase == u8::MAX {
                continue;
            }
            let slow = (step - k).is_multiple_of(SLOW_EVERY);
            let rec = &self.pending[slot * width..(slot + 1) * width];
            for c in 0..m {
                let f = rec[c];
                if !present(f) {
                    continue;
                }
                let r = y - f;
                self.scores
                    .add(c, i, phase as usize, r.abs(), keep, keep_phase);
                if slow {
                    // Stochastic-approximation 95 % quantile of the residual, steps scaled
                    // by the candidate's typical error.
                    let s = self.scores.mae(c, i).unwrap_or(0.0);
                    let q = &mut self.q95[c * NS + i];
                    let hit = if r > *q { 0.95 } else { -0.05 };
                    *q += 0.05 * s * hit;
                }
            }
            let e = rec[m];
            if present(e) {
                self.conformal.observe(i, target_phase, y - e, slow);
            }
        }
    }

    /// Record the candidates' and the ensemble's forecasts at the scored horizons, each in
    /// its horizon's ring (where the record whose target was this step has just been
    /// scored).
    fn record(&mut self, step: u64) {
        let m = self.m;
        let width = m + 1;
        let mut buf = [MISSING; 64 * NS];
        let buf = &mut buf[..m * NS];
        self.candidates(&SCORED, buf);
        let mut vals = [0f32; 64];
        let cap = self.cfg.cap;
        let phase = self.phase() as u8;
        for (i, &k) in SCORED.iter().enumerate() {
            for c in 0..m {
                vals[c] = buf[c * NS + i];
            }
            let (idx, w) = self.chosen(i);
            let e = weighted_median_of(&vals[..m], idx, &w[..cap]).unwrap_or(MISSING);
            let slot = RING_AT[i] + (step % k as u64) as usize;
            let rec = &mut self.pending[slot * width..(slot + 1) * width];
            rec[..m].copy_from_slice(&vals[..m]);
            rec[m] = e;
            self.pending_phase[slot] = phase;
        }
    }

    /// Every enabled candidate at horizons `hs`, clamped at 0 (`out[c * hs.len() + i]`),
    /// MISSING where a candidate cannot tell yet.
    fn candidates(&self, hs: &[usize], out: &mut [f32]) {
        if self.hist.n == 0 {
            out.fill(MISSING);
            return;
        }
        // Models leave what they cannot forecast untouched: NaN here, MISSING below.
        out.fill(f32::NAN);
        let o = Origin::new(&self.hist);
        self.models.forecast(&o, hs, &self.cfg.enabled, out);
        let n = hs.len();
        for (c, &on) in self.cfg.enabled.iter().enumerate() {
            for v in &mut out[c * n..(c + 1) * n] {
                *v = if on { Self::clean(*v) } else { MISSING };
            }
        }
    }

    /// The leader companion ([`history::LEADER`]) will carry another series from the next
    /// update on: what the AR model learnt about the old one is dropped.
    pub fn leader_changed(&mut self) {
        self.models.ar.reset_companion(history::LEADER);
    }

    /// The AR model's lead-lag link, if one holds: (companion slot: 0–2 in
    /// [`history::companions_of`] order, [`history::LEADER`] for the leader; lag in steps).
    pub fn link(&self) -> Option<(u8, u8)> {
        self.models.ar.links.link
    }

    /// The recent values (one per step) the forecaster holds.
    pub fn history(&self) -> &History {
        &self.hist
    }

    /// Per-candidate weights at every horizon 1..=48 for a forecast from the last
    /// observation (they depend on its phase of the hour): `weights()[k − 1][m]` (they sum
    /// to 1).
    pub fn weights(&self) -> Vec<Vec<f32>> {
        let by_scored: Vec<Vec<f32>> = (0..NS)
            .map(|i| {
                let (idx, w) = self.chosen(i);
                let mut all = vec![0.0; self.m];
                for (&c, &w) in idx.iter().zip(&w) {
                    if c != u8::MAX {
                        all[c as usize] = w;
                    }
                }
                let s: f32 = all.iter().sum();
                if s > 0.0 {
                    all.iter_mut().for_each(|v| *v /= s);
                }
                all
            })
            .collect();
        (1..=H)
            .map(|k| by_scored[scored_index(k)].clone())
            .collect()
    }

    /// Each candidate's discounted mean absolute error at every horizon (None before any
    /// score): `errors()[k − 1][m]`.
    pub fn errors(&self) -> Vec<Vec<Option<f32>>> {
        (1..=H)
            .map(|k| {
                let i = scored_index(k);
                (0..self.m).map(|c| self.scores.mae(c, i)).collect()
            })
            .collect()
    }

    /// The candidates scored horizon i combines (u8::MAX: none).
    #[inline]
    fn chosen_at(&self, i: usize) -> &[u8] {
        let cap = self.cfg.cap;
        &self.chosen_idx[i * cap..(i + 1) * cap]
    }

    /// The candidates scored horizon i combines (indices, u8::MAX for none) and their
    /// weights for an origin at the current phase of the hour (the first `cap`).
    #[inline]
    fn chosen(&self, i: usize) -> (&[u8], [f32; ensemble::MAX_CAP]) {
        let cap = self.cfg.cap;
        let idx = self.chosen_at(i);
        let mut w = [0f32; ensemble::MAX_CAP];
        w[..cap].copy_from_slice(&self.chosen_w[i * cap..(i + 1) * cap]);
        let c = &self.cfg;
        self.scores
            .phase_adjust(i, self.phase(), c.phase_weight, c.power, idx, &mut w[..cap]);
        (idx, w)
    }

    /// Clamp a candidate's raw forecast: NaN (none) → MISSING, negative → 0.
    #[inline]
    fn clean(v: f32) -> f32 {
        if !v.is_finite() { MISSING } else { v.max(0.0) }
    }

    /// The ensemble forecast for horizons 1..=48 with its quantiles. Computes only the
    /// candidates that enter a weighted median (the same numbers as [`Self::detailed`]).
    pub fn forecast(&self) -> Forecast {
        self.forecast_upto(H)
    }

    /// The same for horizons 1..=`kmax` only (the vectors hold `kmax` steps): what a policy
    /// that looks one interval ahead needs, at a fraction of the cost.
    pub fn forecast_upto(&self, kmax: usize) -> Forecast {
        let kmax = kmax.clamp(1, H);
        let m = self.m;
        let mut cand = vec![MISSING; m * H];
        if self.hist.n > 0 {
            // Which candidates each scored horizon uses, as bit sets.
            let mut used = [0u64; NS];
            for (i, u) in used.iter_mut().enumerate() {
                for &c in self.chosen_at(i) {
                    if c != u8::MAX {
                        *u |= 1 << c;
                    }
                }
            }
            let o = Origin::new(&self.hist);
            let mut c0 = 0;
            let mut hs = [0usize; H];
            let mut tmp = [0f32; 16 * H];
            for (fi, (_, names)) in FAMILIES.iter().enumerate() {
                let c1 = c0 + names.len();
                let fam = ((1u64 << names.len()) - 1) << c0;
                let mut nh = 0;
                let mut want = 0u64;
                for k in 1..=kmax {
                    let u = used[scored_index(k)] & fam;
                    if u != 0 {
                        hs[nh] = k;
                        nh += 1;
                        want |= u >> c0;
                    }
                }
                let hs = &hs[..nh];
                if !hs.is_empty() {
                    let tmp = &mut tmp[..names.len() * hs.len()];
                    tmp.fill(f32::NAN);
                    self.models.forecast_family(fi, &o, hs, want, tmp);
                    for j in 0..names.len() {
                        for (i, &k) in hs.iter().enumerate() {
                            cand[(c0 + j) * H + k - 1] = Self::clean(tmp[j * hs.len() + i]);
                        }
                    }
                }
                c0 = c1;
            }
        }
        self.combine(&cand, kmax)
    }

    /// Weighted medians and conformal quantiles from the candidates' forecasts (`m × 48`),
    /// for horizons 1..=`kmax`.
    fn combine(&self, cand: &[f32], kmax: usize) -> Forecast {
        let m = self.m;
        let mut vals = [0f32; 64];
        let mut point = vec![0.0; kmax];
        let mut quantiles = vec![[0.0; 4]; kmax];
        let last = self.hist.last().max(0.0);
        let cap = self.cfg.cap;
        let chosen: [_; NS] = std::array::from_fn(|i| self.chosen(i));
        for k in 1..=kmax {
            let (idx, w) = &chosen[scored_index(k)];
            for &c in *idx {
                if c != u8::MAX {
                    vals[c as usize] = cand[c as usize * H + k - 1];
                }
            }
            let p = weighted_median_of(&vals[..m], idx, &w[..cap]).unwrap_or(last);
            point[k - 1] = p;
            let mut prev = 0.0f32;
            let (i0, i1, t) = interp_at(k);
            let target = phase_of(self.hist.last_ts + k as i64 * STEP_S);
            let (o0, o1) = (
                self.conformal.offsets(i0, target),
                self.conformal.offsets(i1, target),
            );
            for l in 0..4 {
                let off = o0[l] * (1.0 - t) + o1[l] * t;
                let q = (p + off).max(prev).max(0.0);
                quantiles[k - 1][l] = q;
                prev = q;
            }
        }
        Forecast { point, quantiles }
    }

    /// The forecast with every candidate's (for evaluation); `with_p95` also fills each
    /// candidate's p95.
    pub fn detailed(&self, with_p95: bool) -> Detailed {
        let m = self.m;
        let hs: Vec<usize> = (1..=H).collect();
        let mut cand = vec![MISSING; m * H];
        self.candidates(&hs, &mut cand);
        let ensemble = self.combine(&cand, H);
        let mut p95 = Vec::new();
        if with_p95 {
            p95 = vec![MISSING; m * H];
            for k in 1..=H {
                let (i0, i1, t) = interp_at(k);
                for c in 0..m {
                    let f = cand[c * H + k - 1];
                    if present(f) {
                        let q = self.q95[c * NS + i0] * (1.0 - t) + self.q95[c * NS + i1] * t;
                        p95[c * H + k - 1] = (f + q).max(0.0);
                    }
                }
            }
        }
        Detailed {
            ensemble,
            candidates: cand,
            candidates_p95: p95,
        }
    }
}

/// The four series of one tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TenantForecaster {
    pub series: PerResource<SeriesForecaster>,
}

impl TenantForecaster {
    pub fn new(cfg: Config) -> Self {
        TenantForecaster {
            series: PerResource {
                cpu: SeriesForecaster::new(cfg.clone()),
                mem: SeriesForecaster::new(cfg.clone()),
                disk: SeriesForecaster::new(cfg.clone()),
                net: SeriesForecaster::new(cfg),
            },
        }
    }

    /// Add one observation of every resource; all four are validated before any is applied.
    pub fn update(&mut self, ts: i64, values: PerResource<f64>) -> Result<(), ForecastError> {
        for r in Resource::ALL {
            let v = *values.get(r);
            let s = self.series.get(r);
            let err = if let Err(e) = check_value(v) {
                Some(e)
            } else if !s.is_empty() && ts <= s.hist.last_ts {
                Some(ForecastError::NotLater {
                    ts,
                    last: s.hist.last_ts,
                })
            } else {
                None
            };
            if let Some(e) = err {
                return Err(ForecastError::Resource {
                    resource: r,
                    source: Box::new(e),
                });
            }
        }
        for r in Resource::ALL {
            let co = companion_values(r, |c| *values.get(c), f64::NAN);
            self.series
                .get_mut(r)
                .update_with(ts, *values.get(r), Some(co))?;
        }
        Ok(())
    }

    /// The timestamp of the last observation, if any.
    pub fn last_ts(&self) -> Option<i64> {
        (!self.series.cpu.is_empty()).then_some(self.series.cpu.hist.last_ts)
    }

    pub fn forecast(&self) -> PerResource<Forecast> {
        self.forecast_upto(H)
    }

    /// Every resource's forecast for horizons 1..=`kmax`.
    pub fn forecast_upto(&self, kmax: usize) -> PerResource<Forecast> {
        PerResource {
            cpu: self.series.cpu.forecast_upto(kmax),
            mem: self.series.mem.forecast_upto(kmax),
            disk: self.series.disk.forecast_upto(kmax),
            net: self.series.net.forecast_upto(kmax),
        }
    }
}

#[cfg(test)]
mod tests;
