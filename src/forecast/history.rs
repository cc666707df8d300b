//! What every model reads: the series' recent past, by step and by wall-clock slot.
//!
//! - a ring of the last [`RING`] values by step (row count), with their timestamps and the
//!   median of the 12 values ending at each step;
//! - a grid of the last 14 days by 5-minute slot (`ts / 300`), so that daily and weekly lags
//!   are looked up by timestamp and stay aligned across gaps (a slot without a row is
//!   missing; two rows in one slot: the last wins);
//! - an hourly grid of the median of the 288 steps before each hour (the "day's median").
//!
//! Missing values are stored as [`MISSING`] (-1): inputs are validated non-negative, and a
//! sentinel, unlike NaN, survives JSON.

use crate::model::STEP_S;
use serde::{Deserialize, Serialize};

/// Steps per day and per week.
pub const DAY: i64 = 288;
pub const WEEK: i64 = 7 * DAY;
/// Slots kept in the time grid: 14 days and a little more (the level 14 days ago needs the
/// 12 slots before it); a power of two so that indexing is a mask.
pub const GRID: usize = 4096;
/// Values kept by step.
pub const RING: usize = 320;
/// Hours kept in the hourly day-median grid (14 days and more).
pub const HOURS: usize = 14 * 24 + 2;
/// The marker of a missing value.
pub const MISSING: f32 = -1.0;

#[inline]
pub fn present(v: f32) -> bool {
    v >= 0.0
}

/// Median of a small slice (reorders it). Even counts average the two middle values.
pub fn median(v: &mut [f32]) -> f32 {
    let n = v.len();
    debug_assert!(n > 0);
    if n <= 16 {
        // Insertion sort: faster than selection on the tiny slices the models use.
        for i in 1..n {
            let x = v[i];
            let mut j = i;
            while j > 0 && v[j - 1] > x {
                v[j] = v[j - 1];
                j -= 1;
            }
            v[j] = x;
        }
        if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        }
    } else {
        let mid = n / 2;
        let (lo, m, _) = v.select_nth_unstable_by(mid, f32::total_cmp);
        let m = *m;
        if n % 2 == 1 {
            m
        } else {
            let l = lo.iter().copied().fold(f32::MIN, f32::max);
            0.5 * (l + m)
        }
    }
}

/// The index `lag` places before `at` in a ring of `len` (`at` a position, or any counter
/// when `len` divides evenly; `lag < len`). Positions avoid a division per lookup.
#[inline]
fn back(at: usize, lag: usize, len: usize) -> usize {
    if len == RING {
        // `at` is already a position in the ring.
        if at >= lag { at - lag } else { at + len - lag }
    } else {
        (at - lag) % len
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    /// Observations so far.
    pub n: u64,
    pub last_ts: i64,
    /// Values by step: `ring[step % RING]`; `pos` is the latest one's index.
    ring: Vec<f32>,
    pos: usize,
    /// Timestamps of the last 56 steps.
    ts_ring: Vec<i64>,
    /// Median of the 12 values ending at each of the last 112 steps.
    med12_ring: Vec<f32>,
    /// Values by 5-minute slot: `grid[slot % GRID]`; `cur_slot` is the latest slot.
    grid: Vec<f32>,
    cur_slot: i64,
    /// Median of the 288 steps before the start of each hour: `daymed[hour % HOURS]`.
    daymed: Vec<f32>,
    cur_hour: i64,
    /// The companions at each of the last [`CO_RING`] steps (MISSING when not given):
    /// `co_ring[step % CO_RING][c]`, the same tenant's other resources ([`companions_of`])
    /// then the leader, another tenant's series ([`LEADER`]).
    co_ring: Vec<[f32; COMPANIONS]>,
    /// Median of the last 288 values (kept per step: every forecast reads it).
    med288: f32,
}

pub const TS_RING: usize = 56;
/// Steps of companion values kept: the AR model's companion features look up to 4 steps
/// back from origins up to 12 steps ago.
pub const CO_RING: usize = 20;

/// Companion values a series may be given at each step.
pub const COMPANIONS: usize = 4;
/// The companion slot of the leader: another tenant's series of the same resource, chosen
/// by the host-wide lead-lag search ([`crate::forecast::leadlag`]).
pub const LEADER: usize = 3;

/// The companion values of series `r` at one step, in slot order: the tenant's other
/// resources ([`companions_of`]), then the leader's value (NaN: none).
pub fn companion_values(
    r: crate::model::Resource,
    value_of: impl Fn(crate::model::Resource) -> f64,
    leader: f64,
) -> [f64; COMPANIONS] {
    let own = companions_of(r);
    [value_of(own[0]), value_of(own[1]), value_of(own[2]), leader]
}

/// A series' companions from its own tenant: the other three resources, in `Resource::ALL`
/// order (companion slots 0, 1, 2).
pub fn companions_of(r: crate::model::Resource) -> [crate::model::Resource; 3] {
    let mut out = [r; 3];
    let mut j = 0;
    for o in crate::model::Resource::ALL {
        if o != r {
            out[j] = o;
            j += 1;
        }
    }
    out
}
pub const MED_RING: usize = 112;

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    pub fn new() -> Self {
        History {
            n: 0,
            last_ts: i64::MIN,
            ring: vec![MISSING; RING],
            pos: 0,
            ts_ring: vec![0; TS_RING],
            med12_ring: vec![MISSING; MED_RING],
            grid: vec![MISSING; GRID],
            cur_slot: i64::MIN,
            daymed: vec![MISSING; HOURS],
            cur_hour: i64::MIN,
            co_ring: vec![[MISSING; COMPANIONS]; CO_RING],
            med288: MISSING,
        }
    }

    /// Bytes held (vectors included).
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + 4 * (self.ring.len() + self.med12_ring.len() + self.grid.len() + self.daymed.len())
            + 8 * self.ts_ring.len()
            + 4 * COMPANIONS * self.co_ring.len()
    }

    /// Add an observation (already validated: finite, non-negative, later than the last),
    /// with the companions' values at the same step when the tenant's series run together.
    pub fn push(&mut self, ts: i64, v: f32, co: Option<[f32; COMPANIONS]>) {
        let hour = ts.div_euclid(3600);
        if self.n > 0 && hour != self.cur_hour {
            // The day's median as it stood when this hour began.
            let m = self.med288;
            let gap = (hour - self.cur_hour).min(HOURS as i64);
            for k in 1..gap {
                let h = hour - gap + k;
                self.daymed[h.rem_euclid(HOURS as i64) as usize] = MISSING;
            }
            self.daymed[hour.rem_euclid(HOURS as i64) as usize] = m;
        }
        self.cur_hour = hour;

        let slot = ts.div_euclid(STEP_S);
        if self.n > 0 && slot > self.cur_slot {
            let gap = (slot - self.cur_slot).min(GRID as i64);
            for k in 1..gap {
                self.grid[(slot - gap + k).rem_euclid(GRID as i64) as usize] = MISSING;
            }
        }
        self.grid[slot.rem_euclid(GRID as i64) as usize] = v;
        self.cur_slot = slot;

        let i = self.n as usize;
        self.pos = i % RING;
        self.ring[self.pos] = v;
        self.ts_ring[i % TS_RING] = ts;
        self.co_ring[i % CO_RING] = co.unwrap_or([MISSING; COMPANIONS]);
        self.n += 1;
        self.last_ts = ts;
        let m = self.median_last(12);
        self.med12_ring[i % MED_RING] = m;
        self.med288 = self.median_last(DAY as usize);
    }

    /// Median of the last 288 values (fewer if fewer are held).
    #[inline]
    pub fn med288(&self) -> f32 {
        self.med288
    }

    /// The value `lag` steps ago (0 = the latest), if held.
    #[inline]
    pub fn lag(&self, lag: usize) -> Option<f32> {
        if lag >= RING || lag as u64 >= self.n {
            return None;
        }
        Some(self.ring[back(self.pos, lag, RING)])
    }

    #[inline]
    pub fn last(&self) -> f32 {
        self.lag(0).unwrap_or(MISSING)
    }

    /// Timestamp `lag` steps ago.
    pub fn ts_lag(&self, lag: usize) -> Option<i64> {
        if lag >= TS_RING || lag as u64 >= self.n {
            return None;
        }
        Some(self.ts_ring[back(self.n as usize - 1, lag, TS_RING)])
    }

    /// Median of the 12 values ending `lag` steps ago.
    pub fn med12_lag(&self, lag: usize) -> Option<f32> {
        if lag >= MED_RING || lag as u64 >= self.n {
            return None;
        }
        Some(self.med12_ring[back(self.n as usize - 1, lag, MED_RING)])
    }

    /// Median of the last `k` values (fewer if fewer are held).
    pub fn median_last(&self, k: usize) -> f32 {
        let k = k.min(self.n as usize).min(RING);
        if k == 0 {
            return MISSING;
        }
        let mut buf = [0f32; RING];
        for (j, b) in buf[..k].iter_mut().enumerate() {
            *b = self.ring[back(self.pos, j, RING)];
        }
        median(&mut buf[..k])
    }

    /// Mean of the last `k` values.
    pub fn mean_last(&self, k: usize) -> f32 {
        let k = k.min(self.n as usize).min(RING);
        if k == 0 {
            return MISSING;
        }
        let s: f32 = (0..k).map(|j| self.lag(j).unwrap_or(0.0)).sum();
        s / k as f32
    }

    /// Companion `c`'s value `lag` steps ago, if it was given.
    #[inline]
    pub fn co_lag(&self, c: usize, lag: usize) -> Option<f32> {
        if lag >= CO_RING || lag as u64 >= self.n {
            return None;
        }
        let v = self.co_ring[back(self.n as usize - 1, lag, CO_RING)][c];
        present(v).then_some(v)
    }

    /// The latest slot (`ts / 300` of the latest observation).
    #[inline]
    pub fn slot(&self) -> i64 {
        self.cur_slot
    }

    /// The value in a 5-minute slot, if held.
    #[inline]
    pub fn at_slot(&self, slot: i64) -> Option<f32> {
        if self.n == 0 || slot > self.cur_slot || slot <= self.cur_slot - GRID as i64 {
            return None;
        }
        let v = self.grid[slot.rem_euclid(GRID as i64) as usize];
        present(v).then_some(v)
    }

    /// The value in a slot, or failing that in a neighbouring one.
    #[inline]
    pub fn near_slot(&self, slot: i64) -> Option<f32> {
        self.at_slot(slot)
            .or_else(|| self.at_slot(slot - 1))
            .or_else(|| self.at_slot(slot + 1))
    }

    /// Median of the (present) values of the 12 slots ending at `slot` (at least 4 needed).
    pub fn med12_at_slot(&self, slot: i64) -> Option<f32> {
        let mut buf = [0f32; 12];
        let mut k = 0;
        for j in 0..12 {
            if let Some(v) = self.at_slot(slot - j) {
                buf[k] = v;
                k += 1;
            }
        }
        (k >= 4).then(|| median(&mut buf[..k]))
    }

    /// The day's median (of the 288 steps before the hour) for the hour holding `slot`.
    pub fn daymed_at_slot(&self, slot: i64) -> Option<f32> {
        let hour = (slot * STEP_S).div_euclid(3600);
        if self.n == 0 || hour > self.cur_hour || hour <= self.cur_hour - HOURS as i64 {
            return None;
        }
        let v = self.daymed[hour.rem_euclid(HOURS as i64) as usize];
        present(v).then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_small_and_large() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        let mut v: Vec<f32> = (0..101).rev().map(|x| x as f32).collect();
        assert_eq!(median(&mut v), 50.0);
        let mut v: Vec<f32> = (0..100).rev().map(|x| x as f32).collect();
        assert_eq!(median(&mut v), 49.5);
    }

    #[test]
    fn grid_is_by_time_and_gaps_are_missing() {
        let mut h = History::new();
        h.push(0, 1.0, None);
        h.push(300, 2.0, None);
        h.push(1500, 5.0, None); // slots 2, 3, 4 missing
        assert_eq!(h.at_slot(1), Some(2.0));
        assert_eq!(h.at_slot(3), None);
        assert_eq!(h.at_slot(5), Some(5.0));
        assert_eq!(h.lag(1), Some(2.0), "by step, gaps are ignored");
        h.push(1600, 6.0, None); // same slot: the last wins
        assert_eq!(h.at_slot(5), Some(6.0));
        assert_eq!(h.lag(1), Some(5.0));
    }
}
