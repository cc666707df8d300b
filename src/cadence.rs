//! How long a decision stays in force, measured on the backend's own clock.
//!
//! A decision made at a cycle's snapshot holds until the next cycle's changes are applied:
//! one interval later as planned, plus however late that cycle starts (the loop's jitter)
//! plus the time it takes to read, forecast and decide before it applies anything. The
//! setter's own latency comes on top, per resource ([`crate::backend::Backend::latency`]).
//! [`Cadence`] measures the first part, the *reach*, over the last cycles: from each
//! snapshot to the moment the next cycle began applying.
//!
//! The policy covers `reach + latency` ahead ([`Cadence::ahead_s`]), with the reach taken as
//! the longest of the last [`Cadence::WINDOW`] cycles plus a margin of its spread (the
//! longest minus the median): the window has seen some of the loop's tail, not all of it, and
//! a cycle later than any seen so far is most likely to be late by about as much again as the
//! spread the window shows. A clock without jitter (a trace replay, whose cycles are exactly
//! one interval apart and apply at once) has no spread and gets no margin, so a replay's
//! decisions cover exactly their own interval.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct Cadence {
    interval_s: f64,
    /// The last snapshot's time on the backend's clock (ns).
    last_snapshot_ns: Option<u64>,
    /// Recent reaches (s), oldest first.
    reaches: VecDeque<f64>,
}

impl Cadence {
    /// Cycles over which the reach is measured.
    pub const WINDOW: usize = 64;
    /// Reaches kept before the measured one is trusted over the planned interval.
    const MIN_SEEN: usize = 4;

    pub fn new(interval_s: f64) -> Self {
        Cadence {
            interval_s,
            last_snapshot_ns: None,
            reaches: VecDeque::with_capacity(Self::WINDOW),
        }
    }

    /// A cycle whose snapshot was taken at `snapshot_ns` began applying its changes at
    /// `applying_ns` (both on the backend's clock; None: the backend has no clock to
    /// tell, and the planned interval stands).
    pub fn record(&mut self, snapshot_ns: u64, applying_ns: Option<u64>) {
        if let (Some(prev), Some(applying)) = (self.last_snapshot_ns, applying_ns) {
            let reach = applying.saturating_sub(prev) as f64 / 1e9;
            // A gap of several intervals is a pause (a stopped loop, a suspended host, a
            // reconnect), not the loop's cadence.
            if reach > 0.0 && reach <= 3.0 * self.interval_s {
                if self.reaches.len() == Self::WINDOW {
                    self.reaches.pop_front();
                }
                self.reaches.push_back(reach);
            }
        }
        self.last_snapshot_ns = Some(snapshot_ns);
    }

    /// Seconds from the current snapshot until the next decision may have been applied:
    /// the longest recent reach plus its spread; the planned interval until a few cycles
    /// have been measured (and never less than it).
    pub fn ahead_s(&self) -> f64 {
        if self.reaches.len() < Self::MIN_SEEN {
            return self.interval_s;
        }
        let mut sorted: Vec<f64> = self.reaches.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let longest = sorted[sorted.len() - 1];
        let median = sorted[sorted.len() / 2];
        (longest + (longest - median)).max(self.interval_s)
    }

    /// The measured reaches' median and longest (s), for the operator.
    pub fn measured(&self) -> Option<(f64, f64)> {
        let mut sorted: Vec<f64> = self.reaches.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        Some((*sorted.get(sorted.len() / 2)?, *sorted.last()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn an_exact_clock_reaches_one_interval() {
        let mut c = Cadence::new(300.0);
        for k in 0..100u64 {
            c.record(k * 300 * S, Some(k * 300 * S));
        }
        assert_eq!(c.ahead_s(), 300.0);
    }

    #[test]
    fn a_late_cycle_and_the_time_to_decide_lengthen_the_reach_with_a_margin() {
        let mut c = Cadence::new(5.0);
        assert_eq!(
            c.ahead_s(),
            5.0,
            "the planned interval before anything is measured"
        );
        // Cycles 5 s apart that take 0.1 s to apply, one of them starting 0.2 s late.
        let mut at = 0u64;
        for k in 0..20u64 {
            at += 5 * S + if k == 10 { S / 5 } else { 0 };
            c.record(at, Some(at + S / 10));
        }
        // Longest reach 5.3 s, median 5.1 s: 5.3 + 0.2.
        assert!((c.ahead_s() - 5.5).abs() < 1e-9, "{}", c.ahead_s());
        assert_eq!(c.measured().map(|(m, _)| (m * 10.0).round()), Some(51.0));
    }

    #[test]
    fn a_pause_is_not_the_cadence_and_no_clock_keeps_the_interval() {
        let mut c = Cadence::new(5.0);
        let mut at = 0u64;
        for k in 0..10u64 {
            at += if k == 5 { 600 * S } else { 5 * S };
            c.record(at, Some(at));
        }
        assert_eq!(c.ahead_s(), 5.0);
        let mut blind = Cadence::new(5.0);
        for k in 0..10u64 {
            blind.record(k * 7 * S, None);
        }
        assert_eq!(blind.ahead_s(), 5.0);
    }
}
