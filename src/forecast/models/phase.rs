//! Hourly phase: many VMs repeat every hour (12 steps). The value at the same phase of the
//! last few hours; the h-step change seen at the same phase, added to the last value; and a
//! level-corrected hourly profile.

use super::{Model, Origin, median_or_missing};
use crate::forecast::history::History;
use serde::{Deserialize, Serialize};

const P: usize = 12;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Phase;

impl Model for Phase {
    const NAMES: &'static [&'static str] =
        &["phase3", "phase6", "phasechg3", "phasechg6", "phase_lc6"];
    fn update(&mut self, _: &History) {}
    fn forecast(&self, o: &Origin, hs: &[usize], want: u64, out: &mut [f32]) {
        let n = hs.len();
        let h = o.hist;
        for (i, &k) in hs.iter().enumerate() {
            let kmin = k.div_ceil(P);
            let mut val = [0f32; 6];
            let mut chg = [0f32; 6];
            let mut lc = [0f32; 6];
            let (mut nv, mut nc, mut nl) = (0, 0, 0);
            for j in 0..6 {
                let back = P * (kmin + j); // origin of the analogous hour, steps ago
                let tlag = back - k; // its target, steps ago
                if let Some(v) = h.lag(tlag) {
                    val[nv] = v;
                    nv += 1;
                    if let Some(b) = h.lag(back) {
                        chg[nc] = v - b;
                        nc += 1;
                    }
                    if let Some(l) = h.med12_lag(back) {
                        lc[nl] = v - l;
                        nl += 1;
                    }
                }
            }
            let on = |c: usize| want & (1 << c) != 0;
            if nv >= 3 && on(0) {
                out[i] = median_or_missing(&mut val[..3]);
            }
            if nv == 6 && on(1) {
                out[n + i] = median_or_missing(&mut val[..6]);
            }
            if nc >= 3 && on(2) {
                out[2 * n + i] = o.x + median_or_missing(&mut chg[..3]);
            }
            if nc == 6 && on(3) {
                out[3 * n + i] = o.x + median_or_missing(&mut chg[..6]);
            }
            if nl >= 3 && on(4) {
                out[4 * n + i] = o.med12 + median_or_missing(&mut lc[..nl]);
            }
        }
    }
}
