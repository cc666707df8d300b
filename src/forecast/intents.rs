//! Intents: upcoming demand a tenant declares ("from 14:00, for two hours, about 6 cores"),
//! blended into its forecast in proportion to how far its past intents came true.
//!
//! An [`Intent`] names one resource, a window `[start_s, start_s + duration_s)` and an
//! `amount`: the tenant's total usage of that resource during the window, in the resource's
//! unit ([`Resource::unit`]), not an addition to it. Each tenant has an [`IntentBook`]:
//!
//! - **Steps.** As in the forecast stage, a step is the 5-minute bucket `[t, t + 300)`; the
//!   forecast made at origin `now_s` (the start of the last bucket seen) targets
//!   `t = now_s + k × 300` at horizon k. A step is in an intent's window when the two overlap
//!   (for windows on 5-minute boundaries: `start_s ≤ t < end`).
//! - **Blending** ([`IntentBook::blend`]), at a step inside the windows of pending intents on
//!   resource r (the largest amount when several overlap):
//!   `gap = max(0, amount − point)`, `point ← point + trust_r × gap`, and each quantile
//!   `q ← max(q + trust_r × gap, point)`, then made monotone (p50 ≤ p90 ≤ p95 ≤ p99). The
//!   whole predictive distribution moves up by the trusted share of the gap, so an intent
//!   never lowers a forecast, and steps outside every window are left untouched.
//! - **Baseline.** While a window has not opened (the origin's bucket ends at or before its
//!   start), `blend` remembers the un-blended point forecast of the window's steps within the
//!   forecast's horizons (at most its first 48 steps): the latest forecast made before the
//!   window opened, i.e. what the models alone expected. Forecasts made inside the window
//!   have already seen the demand and would hide it.
//! - **Settling** ([`IntentBook::observe`], once per bucket with the bucket's mean usage):
//!   over the window's steps that have a baseline, the realised uplift is
//!   `mean(actual) − mean(baseline)` and the declared uplift `amount − mean(baseline)`.
//!   Once the window has passed, `match = clamp(realised / declared, 0, 1)` and
//!   `trust_r ← (1 − 0.3) × trust_r + 0.3 × match` ([`LEARNING_RATE`]). An intent that
//!   declared no rise (declared uplift ≤ 5 % of the baseline, [`MIN_REL_UPLIFT`]) or has no
//!   step with a baseline (declared after its window opened, no forecast before it) says
//!   nothing about honesty: it is settled *unscored* and leaves trust alone.
//! - **Trust** is per resource, in [0, 1], starting at [`PRIOR`] = 0.5: a new tenant's
//!   intents count half. Each scored intent moves it 30 % of the way to its match: from the
//!   prior, five fully honoured intents give 1 − 0.5 × 0.7⁵ ≈ 0.92, five that never came
//!   0.5 × 0.7⁵ ≈ 0.08.
//!
//! Hostile or buggy clients are bounded: at most [`MAX_PENDING`] intents pending, windows of
//! at most 7 days starting within 30 days; a refused intent leaves the book as it was.

use super::Forecast;
use crate::model::{PerResource, Resource};
use serde::{Deserialize, Serialize};

/// Trust before any intent has settled.
pub const PRIOR: f32 = 0.5;
/// Weight of a settled intent's match in the trust (an EWMA).
pub const LEARNING_RATE: f32 = 0.3;
/// Pending intents per tenant.
pub const MAX_PENDING: usize = 64;
/// Longest window.
pub const MAX_DURATION_S: i64 = 7 * 86_400;
/// Latest start, after now.
pub const MAX_LEAD_S: i64 = 30 * 86_400;
/// Declared uplifts at or below this share of the baseline are not scored.
pub const MIN_REL_UPLIFT: f64 = 0.05;

/// Declared upcoming demand for one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    pub id: u64,
    pub resource: Resource,
    /// Unix seconds.
    pub start_s: i64,
    pub duration_s: i64,
    /// Total usage of the resource during the window, in its unit.
    pub amount: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IntentError {
    #[error(
        "intent {id}: duration {duration_s} s is not between 1 s and 7 days ({MAX_DURATION_S} s)"
    )]
    Duration { id: u64, duration_s: i64 },
    #[error("intent {id}: amount {amount} is not a finite number ≥ 0")]
    Amount { id: u64, amount: f64 },
    #[error("intent {id}: its window ended at {end_s}, not after now ({now_s})")]
    Ended { id: u64, end_s: i64, now_s: i64 },
    #[error("intent {id}: starts at {start_s}, more than 30 days after now ({now_s})")]
    TooFarAhead { id: u64, start_s: i64, now_s: i64 },
    #[error("intent {id} is already pending (cancel it first to change it)")]
    Duplicate { id: u64 },
    #[error("intent {id}: the tenant already has {MAX_PENDING} pending intents")]
    TooMany { id: u64 },
    #[error("intent {id}: no tenant with uuid {uuid} is being forecast")]
    UnknownTenant { id: u64, uuid: String },
}

impl Intent {
    pub fn end_s(&self) -> i64 {
        self.start_s.saturating_add(self.duration_s)
    }

    /// Whether the bucket of `step_s` seconds starting at `t` overlaps the window.
    pub fn covers(&self, t: i64, step_s: i64) -> bool {
        t < self.end_s() && t.saturating_add(step_s) > self.start_s
    }

    /// Check the intent on its own (the book checks duplicates and the count).
    pub fn validate(&self, now_s: i64) -> Result<(), IntentError> {
        let id = self.id;
        if !(1..=MAX_DURATION_S).contains(&self.duration_s) {
            return Err(IntentError::Duration {
                id,
                duration_s: self.duration_s,
            });
        }
        if !(self.amount.is_finite() && self.amount >= 0.0) {
            return Err(IntentError::Amount {
                id,
                amount: self.amount,
            });
        }
        if self.start_s > now_s.saturating_add(MAX_LEAD_S) {
            return Err(IntentError::TooFarAhead {
                id,
                start_s: self.start_s,
                now_s,
            });
        }
        if self.end_s() <= now_s {
            return Err(IntentError::Ended {
                id,
                end_s: self.end_s(),
                now_s,
            });
        }
        Ok(())
    }
}

/// An intent waiting for its window to pass, with what has been seen of it so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub intent: Intent,
    /// (step, the models' point forecast for it) from the latest forecast before the window.
    baseline: Vec<(i64, f32)>,
    /// Over the window's steps observed with a baseline: sums of actual and baseline.
    actual_sum: f64,
    baseline_sum: f64,
    steps: u32,
}

impl Pending {
    /// Steps of the window observed so far that will be scored.
    pub fn scored_steps(&self) -> u32 {
        self.steps
    }

    /// The match in [0, 1] of a window that has passed; None if it says nothing.
    fn outcome(&self) -> Option<f32> {
        if self.steps == 0 {
            return None;
        }
        let n = self.steps as f64;
        let base = self.baseline_sum / n;
        let declared = self.intent.amount - base;
        if declared <= 0.0 || declared <= MIN_REL_UPLIFT * base {
            return None;
        }
        let realised = self.actual_sum / n - base;
        Some((realised / declared).clamp(0.0, 1.0) as f32)
    }
}

/// A resource's trust and how many intents on it have settled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrustRecord {
    pub trust: f32,
    /// Settled intents that moved the trust.
    pub scored: u32,
    /// Settled intents that said nothing (see the module doc).
    pub unscored: u32,
}

impl Default for TrustRecord {
    fn default() -> Self {
        TrustRecord {
            trust: PRIOR,
            scored: 0,
            unscored: 0,
        }
    }
}

/// One tenant's intents and trust.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntentBook {
    pending: Vec<Pending>,
    trust: PerResource<TrustRecord>,
    /// The last bucket observed (older or repeated buckets are ignored).
    last_ts: Option<i64>,
}

impl IntentBook {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn declare(&mut self, intent: Intent, now_s: i64) -> Result<(), IntentError> {
        intent.validate(now_s)?;
        let id = intent.id;
        if self.pending.iter().any(|p| p.intent.id == id) {
            return Err(IntentError::Duplicate { id });
        }
        if self.pending.len() >= MAX_PENDING {
            return Err(IntentError::TooMany { id });
        }
        self.pending.push(Pending {
            intent,
            baseline: Vec::new(),
            actual_sum: 0.0,
            baseline_sum: 0.0,
            steps: 0,
        });
        Ok(())
    }

    /// Withdraw a pending intent (it is not scored); false if there was none with that id.
    pub fn cancel(&mut self, id: u64) -> bool {
        let before = self.pending.len();
        self.pending.retain(|p| p.intent.id != id);
        self.pending.len() < before
    }

    pub fn pending(&self) -> &[Pending] {
        &self.pending
    }

    pub fn trust(&self, r: Resource) -> f32 {
        self.trust.get(r).trust
    }

    pub fn record(&self, r: Resource) -> TrustRecord {
        *self.trust.get(r)
    }

    /// Take in the bucket starting at `ts` (its mean usage), and settle the intents whose
    /// windows it closes. Non-finite or negative usage is not counted.
    pub fn observe(&mut self, ts: i64, step_s: i64, usage: PerResource<f64>) {
        if self.last_ts.is_some_and(|last| ts <= last) {
            return;
        }
        self.last_ts = Some(ts);
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            let actual = *usage.get(p.intent.resource);
            // The baseline only holds steps of the window.
            if actual.is_finite()
                && actual >= 0.0
                && let Some(&(_, base)) = p.baseline.iter().find(|(t, _)| *t == ts)
            {
                p.actual_sum += actual;
                p.baseline_sum += base as f64;
                p.steps += 1;
            }
            if ts.saturating_add(step_s) < p.intent.end_s() {
                i += 1;
                continue;
            }
            let done = self.pending.remove(i);
            let rec = self.trust.get_mut(done.intent.resource);
            match done.outcome() {
                Some(m) => {
                    rec.trust =
                        ((1.0 - LEARNING_RATE) * rec.trust + LEARNING_RATE * m).clamp(0.0, 1.0);
                    rec.scored += 1;
                }
                None => rec.unscored += 1,
            }
        }
    }

    /// Blend the pending intents into the forecast made at origin `now_s` (the models'
    /// forecast, not already blended), remembering it as the baseline of windows not yet open.
    pub fn blend(&mut self, now_s: i64, step_s: i64, forecast: &mut PerResource<Forecast>) {
        let step = |i: usize| now_s.saturating_add(step_s.saturating_mul(i as i64 + 1));
        for p in &mut self.pending {
            if now_s.saturating_add(step_s) > p.intent.start_s {
                continue;
            }
            let point = &forecast.get(p.intent.resource).point;
            p.baseline.clear();
            for (i, &v) in point.iter().enumerate() {
                if p.intent.covers(step(i), step_s) && v.is_finite() && v >= 0.0 {
                    p.baseline.push((step(i), v));
                }
            }
        }
        for r in Resource::ALL {
            let trust = self.trust(r);
            let f = forecast.get_mut(r);
            for i in 0..f.point.len() {
                let t = step(i);
                let amount = self
                    .pending
                    .iter()
                    .filter(|p| p.intent.resource == r && p.intent.covers(t, step_s))
                    .map(|p| p.intent.amount.min(f32::MAX as f64) as f32)
                    .reduce(f32::max);
                let Some(amount) = amount else { continue };
                let raise = trust * (amount - f.point[i]).max(0.0);
                f.point[i] += raise;
                if let Some(q) = f.quantiles.get_mut(i) {
                    let mut floor = f.point[i];
                    for v in q.iter_mut() {
                        *v = (*v + raise).max(floor).min(f32::MAX);
                        floor = *v;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::STEP_S as STEP;

    const T0: i64 = 1_700_000_100; // on a 5-minute boundary
    const BASE: PerResource<f64> = PerResource {
        cpu: 1.0,
        mem: 1e6,
        disk: 1e5,
        net: 1e4,
    };

    /// A flat forecast at `level` (the naive forecast after a bucket at that level).
    fn flat_at(level: PerResource<f64>) -> PerResource<Forecast> {
        let f = |v: f64| {
            let v = v as f32;
            Forecast {
                point: vec![v; 48],
                quantiles: vec![[v, 1.2 * v, 1.5 * v, 2.0 * v]; 48],
            }
        };
        PerResource {
            cpu: f(level.cpu),
            mem: f(level.mem),
            disk: f(level.disk),
            net: f(level.net),
        }
    }

    fn intent(id: u64, resource: Resource, start_s: i64, steps: i64, amount: f64) -> Intent {
        Intent {
            id,
            resource,
            start_s,
            duration_s: steps * STEP,
            amount,
        }
    }

    /// One round from `t0`: each (resource, amount, usage) is declared for 12 steps from
    /// 12 steps ahead; buckets are observed and naive forecasts (flat at the last bucket)
    /// blended until the windows have passed; `usage` is what comes during the window.
    /// Inside a window the naive forecast has caught up with the demand, so only the baseline
    /// kept from before the window shows the uplift. Returns the next round's start.
    fn round(book: &mut IntentBook, t0: i64, intents: &[(Resource, f64, f64)]) -> i64 {
        let start = t0 + 12 * STEP;
        for (j, &(r, amount, _)) in intents.iter().enumerate() {
            book.declare(intent((t0 as u64) * 8 + j as u64, r, start, 12, amount), t0)
                .unwrap();
        }
        for s in 0..25 {
            let ts = t0 + s * STEP;
            let mut usage = BASE;
            for &(r, _, during) in intents {
                if (start..start + 12 * STEP).contains(&ts) {
                    *usage.get_mut(r) = during;
                }
            }
            book.observe(ts, STEP, usage);
            book.blend(ts, STEP, &mut flat_at(usage));
        }
        t0 + 25 * STEP
    }

    /// The cpu point forecast at horizon 13 (inside a window declared as in `round`).
    fn raised_cpu(book: &IntentBook, amount: f64) -> f32 {
        let mut b = book.clone();
        b.declare(
            intent(u64::MAX, Resource::Cpu, T0 + 12 * STEP, 12, amount),
            T0,
        )
        .unwrap();
        let mut f = flat_at(BASE);
        b.blend(T0 - STEP, STEP, &mut f);
        f.cpu.point[12]
    }

    #[test]
    fn an_intent_raises_the_forecast_only_inside_its_window_and_never_lowers_it() {
        let mut book = IntentBook::new();
        // Horizons 10..=15 (steps T0 + 10·300 … T0 + 15·300) on cpu; mem declared below.
        book.declare(intent(1, Resource::Cpu, T0 + 10 * STEP, 6, 5.0), T0)
            .unwrap();
        book.declare(intent(2, Resource::Mem, T0 + 10 * STEP, 6, 10.0), T0)
            .unwrap();
        // A huge (finite) amount raises the forecast as far as f32 goes, no further.
        book.declare(intent(3, Resource::Disk, T0, 2, f64::MAX), T0)
            .unwrap();
        let before = flat_at(BASE);
        let mut f = flat_at(BASE);
        book.blend(T0, STEP, &mut f);
        for k in 1..=48 {
            let (p, q) = (f.cpu.point[k - 1], f.cpu.quantiles[k - 1]);
            if (10..=15).contains(&k) {
                // Prior trust 0.5: half of the gap 5 − 1.
                assert!((p - 3.0).abs() < 1e-6, "h={k}: {p}");
                assert!(
                    q[0] >= p && q.windows(2).all(|w| w[0] <= w[1]),
                    "h={k}: {q:?}"
                );
                assert!(q[3] >= before.cpu.quantiles[k - 1][3] + 2.0 - 1e-6);
            } else {
                assert_eq!(
                    (p, q),
                    (before.cpu.point[k - 1], before.cpu.quantiles[k - 1])
                );
            }
        }
        assert_eq!(
            f.mem, before.mem,
            "an intent below the forecast never lowers it"
        );
        assert_eq!(f.net, before.net);
        assert_eq!(f.disk.point[2..], before.disk.point[2..]);
        for q in &f.disk.quantiles {
            assert!(q.iter().all(|v| v.is_finite()) && q.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn honoured_intents_build_trust_and_unmet_ones_lose_it() {
        let (mut honest, mut liar) = (IntentBook::new(), IntentBook::new());
        let (mut t, mut u) = (T0, T0);
        let mut last = (PRIOR, PRIOR);
        for _ in 0..8 {
            t = round(&mut honest, t, &[(Resource::Cpu, 4.0, 4.0)]);
            u = round(&mut liar, u, &[(Resource::Cpu, 4.0, BASE.cpu)]);
            let now = (honest.trust(Resource::Cpu), liar.trust(Resource::Cpu));
            assert!(now.0 > last.0 && now.1 < last.1, "{last:?} → {now:?}");
            last = now;
        }
        assert!(last.0 > 0.95 && last.1 < 0.05, "{last:?}");
        assert_eq!(honest.record(Resource::Cpu).scored, 8);
        assert!(honest.pending().is_empty() && liar.pending().is_empty());
        // The same intent (gap 3 over the baseline of 1) now counts ~fully for one, barely
        // for the other.
        let (h, l) = (raised_cpu(&honest, 4.0) - 1.0, raised_cpu(&liar, 4.0) - 1.0);
        assert!(
            h > 2.85 && l < 0.15 && h > 10.0 * l,
            "honest +{h}, liar +{l}"
        );
    }

    #[test]
    fn trust_follows_the_share_of_the_declared_uplift_that_came() {
        // 4 declared over a baseline of 1, 1.75 came: a quarter of the uplift.
        let mut book = IntentBook::new();
        let mut t = T0;
        for _ in 0..16 {
            t = round(&mut book, t, &[(Resource::Cpu, 4.0, 1.75)]);
        }
        let trust = book.trust(Resource::Cpu);
        assert!((trust - 0.25).abs() < 0.01, "{trust}");
    }

    #[test]
    fn trust_is_per_resource() {
        let mut book = IntentBook::new();
        let mut t = T0;
        for _ in 0..8 {
            t = round(
                &mut book,
                t,
                &[(Resource::Cpu, 3.0, 3.0), (Resource::Net, 5e4, BASE.net)],
            );
        }
        assert!(book.trust(Resource::Cpu) > 0.95);
        assert!(book.trust(Resource::Net) < 0.05);
        assert_eq!(book.trust(Resource::Mem), PRIOR);
        assert_eq!(book.record(Resource::Disk), TrustRecord::default());
    }

    #[test]
    fn intents_that_declare_no_rise_or_lack_a_baseline_leave_trust_alone() {
        let mut book = IntentBook::new();
        // At the baseline: nothing to match.
        round(&mut book, T0, &[(Resource::Cpu, 1.0, 1.0)]);
        // Declared once its window had opened: no forecast from before it.
        book.declare(intent(7, Resource::Mem, T0 - STEP, 4, 2e6), T0)
            .unwrap();
        for s in 0..4 {
            book.observe(T0 + 30 * STEP + s * STEP, STEP, BASE);
        }
        assert!(book.pending().is_empty());
        for r in [Resource::Cpu, Resource::Mem] {
            assert_eq!(
                book.record(r),
                TrustRecord {
                    trust: PRIOR,
                    scored: 0,
                    unscored: 1
                }
            );
        }
    }

    #[test]
    fn invalid_intents_are_refused_and_leave_the_book_unchanged() {
        let mut book = IntentBook::new();
        book.declare(intent(1, Resource::Cpu, T0 + STEP, 2, 2.0), T0)
            .unwrap();
        let cases = [
            (intent(2, Resource::Cpu, T0, 2, f64::NAN), "amount NaN"),
            (intent(2, Resource::Cpu, T0, 2, -1.0), "amount -1"),
            (intent(2, Resource::Cpu, T0, 2, f64::INFINITY), "amount inf"),
            (intent(2, Resource::Cpu, T0, 0, 1.0), "duration 0 s"),
            (
                Intent {
                    duration_s: MAX_DURATION_S + 1,
                    ..intent(2, Resource::Cpu, T0, 1, 1.0)
                },
                "duration 604801 s",
            ),
            (intent(2, Resource::Cpu, T0 - 3 * STEP, 3, 1.0), "ended"),
            (
                intent(2, Resource::Cpu, T0 + MAX_LEAD_S + 1, 1, 1.0),
                "more than 30 days",
            ),
            (
                intent(2, Resource::Cpu, i64::MAX, 1, 1.0),
                "more than 30 days",
            ),
            (
                intent(1, Resource::Net, T0, 1, 1.0),
                "intent 1 is already pending",
            ),
        ];
        for (bad, why) in cases {
            let kept = book.clone();
            let err = book.declare(bad, T0).unwrap_err().to_string();
            assert!(err.contains(why), "{err:?} should say {why:?}");
            assert_eq!(book, kept);
        }
        for id in 2..=MAX_PENDING as u64 {
            book.declare(intent(id, Resource::Disk, T0, 1, 1.0), T0)
                .unwrap();
        }
        let kept = book.clone();
        let err = book
            .declare(intent(999, Resource::Disk, T0, 1, 1.0), T0)
            .unwrap_err();
        assert_eq!(err, IntentError::TooMany { id: 999 });
        assert!(err.to_string().contains("already has 64 pending intents"));
        assert_eq!(book, kept);
    }

    #[test]
    fn cancel_removes_an_intent() {
        let mut book = IntentBook::new();
        book.declare(intent(1, Resource::Cpu, T0 + STEP, 4, 5.0), T0)
            .unwrap();
        book.declare(intent(2, Resource::Net, T0 + STEP, 4, 5e4), T0)
            .unwrap();
        assert!(book.cancel(1));
        assert!(!book.cancel(1));
        assert_eq!(book.pending().len(), 1);
        assert_eq!(book.pending()[0].intent.id, 2);
        let mut f = flat_at(BASE);
        book.blend(T0, STEP, &mut f);
        assert_eq!(f.cpu, flat_at(BASE).cpu);
        assert!(f.net.point[1] > flat_at(BASE).net.point[1]);
    }

    #[test]
    fn serde_round_trip_preserves_trust_and_pending_intents() {
        let mut book = IntentBook::new();
        let t = round(
            &mut book,
            T0,
            &[(Resource::Cpu, 3.0, 3.0), (Resource::Net, 5e4, BASE.net)],
        );
        book.declare(intent(42, Resource::Mem, t + 6 * STEP, 6, 3e6), t)
            .unwrap();
        book.blend(t, STEP, &mut flat_at(BASE));
        let json = serde_json::to_string(&book).unwrap();
        let back: IntentBook = serde_json::from_str(&json).unwrap();
        assert_eq!(back, book);
        assert_eq!(back.trust(Resource::Cpu), book.trust(Resource::Cpu));
        assert_ne!(back.trust(Resource::Cpu), PRIOR);
        assert_eq!(back.pending()[0].intent.id, 42);
        let bytes = postcard::to_allocvec(&book).unwrap();
        assert_eq!(postcard::from_bytes::<IntentBook>(&bytes).unwrap(), book);
    }

    #[test]
    fn intent_json_refuses_unknown_fields() {
        let ok = r#"{"id":1,"resource":"cpu","start_s":0,"duration_s":300,"amount":2.5}"#;
        let i: Intent = serde_json::from_str(ok).unwrap();
        assert_eq!(i, intent(1, Resource::Cpu, 0, 1, 2.5));
        let extra = ok.replace("}", r#","amont":3}"#);
        assert!(serde_json::from_str::<Intent>(&extra).is_err());
    }
}
