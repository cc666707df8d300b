//! The candidate forecasters, one file per model family. Each offers one or more named
//! candidates ([`Model::NAMES`]); the ensemble combines them all.
//!
//! Contract: `update` is called once per observation, after the history holds it, and must
//! be cheap; `forecast` reads the state as of the latest observation and writes, for every
//! candidate `c` and every requested horizon `hs[i]` (in steps, 1..=48), `out[c * hs.len() + i]`,
//! or leaves the slot untouched when it cannot tell yet (not enough history); any value it
//! writes is a forecast (negative ones are clamped to 0 by the caller).

pub mod ar;
pub mod esn;
pub mod histogram;
pub mod holt_winters;
pub mod moving;
pub mod naive;
pub mod phase;
pub mod profile;
pub mod seasonal;
pub mod smoothers;

use super::history::{DAY, History, MISSING, median};

/// The longest horizon, in steps.
pub const H: usize = 48;

/// What every model may want at a forecast origin, computed once.
pub struct Origin<'a> {
    pub hist: &'a History,
    /// The latest value and its slot.
    pub x: f32,
    pub slot: i64,
    /// Median of the last 12 and last 288 steps.
    pub med12: f32,
    pub med288: f32,
    /// `lvl12[d]`: median of the 12 slots ending exactly `d` days before the origin's slot;
    /// `daymed[d]`: the day's median then (d = 1..=14; index 0 unused).
    pub lvl12: [Option<f32>; 15],
    pub daymed: [Option<f32>; 15],
}

impl<'a> Origin<'a> {
    pub fn new(hist: &'a History) -> Self {
        let slot = hist.slot();
        let mut lvl12 = [None; 15];
        let mut daymed = [None; 15];
        for d in 1..15 {
            lvl12[d] = hist.med12_at_slot(slot - d as i64 * DAY);
            daymed[d] = hist.daymed_at_slot(slot - d as i64 * DAY);
        }
        Origin {
            hist,
            x: hist.last(),
            slot,
            med12: hist.med12_lag(0).unwrap_or(MISSING),
            med288: hist.med288(),
            lvl12,
            daymed,
        }
    }
}

pub trait Model {
    const NAMES: &'static [&'static str];
    fn update(&mut self, hist: &History);
    /// `want`: bit c set for each candidate c (of this family) that is needed; a family may
    /// skip the others (their slots are then left untouched) or write them all.
    fn forecast(&self, o: &Origin, hs: &[usize], want: u64, out: &mut [f32]);
}

/// Median of the present values in `buf[..k]`, or MISSING when there are none.
pub(crate) fn median_or_missing(buf: &mut [f32]) -> f32 {
    if buf.is_empty() { MISSING } else { median(buf) }
}
