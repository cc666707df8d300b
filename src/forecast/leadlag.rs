//! Lead-lag between tenants: which other tenant's series moves a few steps *before* this one.
//!
//! Over a window of recent history (two days of 5-minute steps, aligned by slot), the step
//! changes of each target series are correlated with those of every other tenant's series of
//! the same resource, 1…[`LAGS`] steps earlier. A leader is kept only if the correlation
//! *holds up on validation*: it is measured separately on the even and the odd days of the
//! window, and both must reach [`R_MIN`] with the same sign at the same lag (with hundreds of
//! candidate leaders, one half alone would find chance correlations everywhere). The best
//! such leader becomes the target's [`LEADER`](super::history::LEADER) companion, whose values
//! the AR model's own link search ([`super::models::ar`]) may then take as regressors.
//!
//! The search is refreshed once a day on the last two days; it is O(series² × lags × window)
//! dot products of contiguous `f32` slices (vectorised by the compiler).

/// Steps of history the search reads.
pub const WINDOW: usize = 576;
/// Leads (steps) tried.
pub const LAGS: usize = 4;
/// |r| a leader needs on both halves (chance level with 288 samples a half is ≈ 0.06).
pub const R_MIN: f32 = 0.2;
/// Slots a day.
const DAY: i64 = 288;

/// A series' leader: another series (by index), leading by `lag` steps, with the weaker of
/// its two half-window correlations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Leader {
    pub index: usize,
    pub lag: u8,
    pub r: f32,
}

/// Step changes over the window, zero where a value or its predecessor is missing.
fn changes(values: &[f32]) -> Vec<f32> {
    let mut d = vec![0.0; values.len()];
    for t in 1..values.len() {
        let (a, b) = (values[t], values[t - 1]);
        if a.is_finite() && b.is_finite() {
            d[t] = a - b;
        }
    }
    d
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Four partial sums: lets the compiler vectorise without reassociating one.
    let mut s = [0f32; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..4 {
            s[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    s.iter().sum::<f32>() + tail
}

/// For every series of `values` (all of one resource, each `WINDOW` long and aligned: index
/// t is slot `first_slot + t`, NaN where absent), its best leader among the others in a
/// different `tenant`, if one holds up. `tenant[i]` groups a tenant's series (a tenant's
/// other resources are its own companions, not leaders).
pub fn find_leaders(values: &[Vec<f32>], tenant: &[usize], first_slot: i64) -> Vec<Option<Leader>> {
    let n = values.len();
    let w = values.first().map_or(0, Vec::len);
    let d: Vec<Vec<f32>> = values.iter().map(|v| changes(v)).collect();
    // The target's changes on each half (even and odd days), zero elsewhere.
    let odd: Vec<bool> = (0..w)
        .map(|t| (first_slot + t as i64).div_euclid(DAY) & 1 == 1)
        .collect();
    let half = |v: &[f32], h: bool| -> Vec<f32> {
        v.iter()
            .zip(&odd)
            .map(|(&x, &o)| if o == h { x } else { 0.0 })
            .collect()
    };
    let halves: Vec<[Vec<f32>; 2]> = d.iter().map(|v| [half(v, false), half(v, true)]).collect();
    // Σ over a half of the leader's change `lag` steps earlier, squared: [x][h][lag − 1].
    let lead_sq: Vec<[[f32; LAGS]; 2]> = d
        .iter()
        .map(|x| {
            let mut out = [[0f32; LAGS]; 2];
            for (h, o) in out.iter_mut().enumerate() {
                for (l, v) in o.iter_mut().enumerate() {
                    let lag = l + 1;
                    *v = (lag..w)
                        .filter(|&t| odd[t] == (h == 1))
                        .map(|t| x[t - lag] * x[t - lag])
                        .sum();
                }
            }
            out
        })
        .collect();
    let self_sq: Vec<[f32; 2]> = halves.iter().map(|[a, b]| [dot(a, a), dot(b, b)]).collect();
    (0..n)
        .map(|y| {
            let mut best: Option<Leader> = None;
            if self_sq[y][0] <= 0.0 || self_sq[y][1] <= 0.0 {
                return None;
            }
            for x in 0..n {
                if tenant[x] == tenant[y] {
                    continue;
                }
                for l in 0..LAGS {
                    let lag = l + 1;
                    let mut r = [0f32; 2];
                    for h in 0..2 {
                        let den = (self_sq[y][h] * lead_sq[x][h][l]).sqrt();
                        if den > 0.0 {
                            r[h] = dot(&halves[y][h][lag..], &d[x][..w - lag]) / den;
                        }
                    }
                    let weak = r[0].abs().min(r[1].abs());
                    if r[0] * r[1] > 0.0 && weak >= R_MIN && best.is_none_or(|b| weak > b.r) {
                        best = Some(Leader {
                            index: x,
                            lag: lag as u8,
                            r: weak,
                        });
                    }
                }
            }
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    /// Tenant 2 follows tenant 0 three steps later; tenant 1 is unrelated noise: 2's leader
    /// is 0 at lag 3, and nobody else has one.
    #[test]
    fn a_follower_finds_its_leader_and_noise_finds_none() {
        let mut s = 1;
        let a: Vec<f32> = (0..WINDOW).map(|_| noise(&mut s)).collect();
        let b: Vec<f32> = (0..WINDOW).map(|_| noise(&mut s)).collect();
        let c: Vec<f32> = (0..WINDOW)
            .map(|t| 5.0 + 2.0 * a[t.saturating_sub(3)] + 0.3 * noise(&mut s))
            .collect();
        let out = find_leaders(&[a, b, c], &[0, 1, 2], 0);
        assert_eq!(out[0], None);
        assert_eq!(out[1], None);
        let l = out[2].expect("a leader");
        assert_eq!((l.index, l.lag), (0, 3));
        assert!(l.r > 0.8, "{l:?}");
    }

    /// A correlation that holds on one half of the window only (even days) is not kept.
    #[test]
    fn a_relation_on_one_half_only_does_not_hold() {
        let mut s = 9;
        let a: Vec<f32> = (0..WINDOW).map(|_| noise(&mut s)).collect();
        let c: Vec<f32> = (0..WINDOW)
            .map(|t| {
                if (t as i64).div_euclid(DAY) % 2 == 0 {
                    2.0 * a[t.saturating_sub(1)]
                } else {
                    noise(&mut s)
                }
            })
            .collect();
        assert_eq!(find_leaders(&[a, c], &[0, 1], 0)[1], None);
    }

    /// A tenant's own series are never its leaders, and missing values do not poison the
    /// search.
    #[test]
    fn own_series_and_gaps() {
        let mut s = 3;
        let a: Vec<f32> = (0..WINDOW).map(|_| noise(&mut s)).collect();
        let mut c: Vec<f32> = (0..WINDOW).map(|t| a[t.saturating_sub(2)]).collect();
        for v in c.iter_mut().step_by(17) {
            *v = f32::NAN;
        }
        assert_eq!(
            find_leaders(&[a.clone(), c.clone()], &[0, 0], 0),
            vec![None, None]
        );
        let out = find_leaders(&[a, c], &[0, 1], 0);
        assert_eq!(out[1].map(|l| (l.index, l.lag)), Some((0, 2)));
        assert!(out.iter().flatten().all(|l| l.r.is_finite()));
    }
}
