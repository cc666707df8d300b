//! The newsvendor per resource: how much of one resource each tenant gets for the coming
//! interval, given its demand distribution, its value per unit served and the host's capacity.
//!
//! Tenant i gets x_i maximising Σ_i v_i·E[min(x_i, D_i)] − c·Σ_i x_i subject to
//! Σ_i x_i ≤ C and lo_i ≤ x_i ≤ hi_i, where v_i is its value per unit served (class weight ×
//! learned sensitivity) and c the cost of a unit allocated and not used. Each term is concave,
//! so the optimum has v_i·P(D_i > x_i) = c + λ for every tenant between its bounds: with ample
//! capacity (λ = 0) each tenant gets its own quantile 1 − c/v_i of demand; under scarcity the
//! shadow price λ rises until the allocations fit. λ is the root of Σ x_i(λ) = C, found with
//! Brent's method (argmin), then made exactly feasible (a point mass makes Σ x_i(λ) jump).
//!
//! Pure functions; `cargo test solve` checks them against brute force, the KKT conditions and
//! their properties (capacity, bounds, priority order, monotone in c).

use crate::plan::Binding;
use argmin::core::{CostFunction, Executor};
use argmin::solver::brent::BrentRoot;
use serde::Serialize;

/// The levels at which a [`Demand`] is given: the forecast's p50, p90, p95, p99 and, mirrored
/// about the median, the lower tail.
const TAUS: [f64; 8] = [0.0, 0.01, 0.05, 0.1, 0.5, 0.9, 0.95, 0.99];

/// One tenant's demand for the coming interval, as a quantile function: linear between the
/// forecast's p50, p90, p95 and p99; below the median, the upper spreads mirrored (never below
/// 0, flat under p1); above p99 an exponential tail fitted to p95 and p99 (P(D > x) =
/// 0.01·e^(−(x − p99)/b), b = (p99 − p95)/ln 5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Demand {
    /// Values at [`TAUS`], non-decreasing.
    q: [f64; 8],
    /// Scale of the exponential tail above p99 (0: nothing above p99).
    tail: f64,
}

impl Demand {
    /// From the forecast's p50, p90, p95 and p99 (made non-decreasing and non-negative).
    pub fn from_quantiles(p50: f64, p90: f64, p95: f64, p99: f64) -> Demand {
        let clean = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
        let p50 = clean(p50);
        let p90 = clean(p90).max(p50);
        let p95 = clean(p95).max(p90);
        let p99 = clean(p99).max(p95);
        let down = |hi: f64| (2.0 * p50 - hi).max(0.0);
        let l99 = down(p99);
        Demand {
            q: [l99, l99, down(p95), down(p90), p50, p90, p95, p99],
            tail: (p99 - p95) / 5f64.ln(),
        }
    }

    /// A demand known for certain.
    pub fn certain(v: f64) -> Demand {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        Demand {
            q: [v; 8],
            tail: 0.0,
        }
    }

    /// The τ-quantile, τ in [0, 1) (τ ≥ 1 is +∞ with a tail, p99 without).
    pub fn quantile(&self, tau: f64) -> f64 {
        let tau = tau.max(0.0);
        if tau >= TAUS[7] {
            if self.tail <= 0.0 {
                return self.q[7];
            }
            if tau >= 1.0 {
                return f64::INFINITY;
            }
            return self.q[7] + self.tail * (0.01 / (1.0 - tau)).ln();
        }
        let j = TAUS.partition_point(|&t| t <= tau).max(1);
        let (t0, t1) = (TAUS[j - 1], TAUS[j]);
        self.q[j - 1] + (self.q[j] - self.q[j - 1]) * (tau - t0) / (t1 - t0)
    }

    /// P(D > x).
    pub fn exceedance(&self, x: f64) -> f64 {
        if x < self.q[0] {
            return 1.0;
        }
        if x >= self.q[7] {
            return if self.tail > 0.0 {
                0.01 * (-(x - self.q[7]) / self.tail).exp()
            } else {
                0.0
            };
        }
        // The last knot at or below x, then linear in between.
        let j = self.q.partition_point(|&v| v <= x).clamp(1, 7);
        let (v0, v1) = (self.q[j - 1], self.q[j]);
        let tau = if v1 > v0 {
            TAUS[j - 1] + (TAUS[j] - TAUS[j - 1]) * (x - v0) / (v1 - v0)
        } else {
            TAUS[j]
        };
        1.0 - tau
    }

    /// E[min(x, D)] = ∫₀ˣ P(D > y) dy: what an allocation of `x` serves on average.
    pub fn expected_served(&self, x: f64) -> f64 {
        if x <= 0.0 {
            return 0.0;
        }
        let mut total = x.min(self.q[0]); // P(D > y) = 1 below the lowest value
        for j in 1..8 {
            let (v0, v1) = (self.q[j - 1], self.q[j].min(x));
            if v1 <= v0 {
                continue;
            }
            let (s0, s1) = (self.exceedance(v0), self.exceedance(v1));
            total += (v1 - v0) * (s0 + s1) / 2.0;
        }
        if x > self.q[7] && self.tail > 0.0 {
            total += 0.01 * self.tail * (1.0 - (-(x - self.q[7]) / self.tail).exp());
        }
        total
    }
}

/// One tenant in one resource's solve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Item {
    /// Value of a unit served (class weight × sensitivity), > 0.
    pub value: f64,
    /// Priority when even the reservations do not fit: the lowest is squeezed first.
    pub priority: f64,
    pub demand: Demand,
    /// Reservation (guaranteed minimum) and limit (maximum), lo ≤ hi.
    pub lo: f64,
    pub hi: f64,
}

/// One resource's allocations, its shadow price and what bound each tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Solution {
    pub x: Vec<f64>,
    /// The price of a unit of capacity at the optimum (0 when capacity is ample).
    pub lambda: f64,
    pub binding: Vec<Binding>,
}

/// The allocation of one item at price `price` = c + λ, before its bounds.
fn wanted(item: &Item, price: f64) -> f64 {
    if item.value <= price {
        return 0.0;
    }
    item.demand.quantile(1.0 - price / item.value)
}

fn at_price(item: &Item, price: f64) -> f64 {
    wanted(item, price).clamp(item.lo, item.hi)
}

struct Excess<'a> {
    items: &'a [Item],
    cost: f64,
    capacity: f64,
}

impl CostFunction for Excess<'_> {
    type Param = f64;
    type Output = f64;

    fn cost(&self, lambda: &f64) -> Result<f64, argmin::core::Error> {
        Ok(total(self.items, self.cost + lambda) - self.capacity)
    }
}

fn total(items: &[Item], price: f64) -> f64 {
    items.iter().map(|i| at_price(i, price)).sum()
}

/// Solve one resource: `capacity` None means no shared limit (each tenant its own quantile).
pub fn solve(items: &[Item], capacity: Option<f64>, cost: f64) -> Solution {
    let cost = cost.max(0.0);
    let bind = |x: &[f64], lambda: f64| -> Vec<Binding> {
        items
            .iter()
            .zip(x)
            .map(|(it, &x)| {
                let free = wanted(it, cost + lambda);
                // At a bound it would not leave (it wants as much or beyond): held there.
                if x <= it.lo && (free < it.lo || (free == it.lo && it.lo > 0.0)) {
                    Binding::Reservation
                } else if x >= it.hi && free >= it.hi && it.hi.is_finite() {
                    Binding::Limit
                } else if lambda > 0.0 && x < at_price(it, cost) * (1.0 - 1e-12) {
                    Binding::Capacity
                } else {
                    Binding::None
                }
            })
            .collect()
    };
    let free: Vec<f64> = items.iter().map(|i| at_price(i, cost)).collect();
    let Some(capacity) = capacity.filter(|c| c.is_finite()) else {
        let binding = bind(&free, 0.0);
        return Solution {
            x: free,
            lambda: 0.0,
            binding,
        };
    };
    let capacity = capacity.max(0.0);
    if free.iter().sum::<f64>() <= capacity {
        let binding = bind(&free, 0.0);
        return Solution {
            x: free,
            lambda: 0.0,
            binding,
        };
    }
    // At this price nobody wants more than its reservation.
    let lambda_max = items.iter().map(|i| i.value).fold(0.0, f64::max) - cost;
    let lows: f64 = items.iter().map(|i| i.lo).sum();
    if lows >= capacity || lambda_max <= 0.0 {
        // Even the reservations do not fit: squeeze the lowest priority first.
        let mut x: Vec<f64> = items.iter().map(|i| i.lo).collect();
        let prio: Vec<f64> = items.iter().map(|i| i.priority).collect();
        super::fit_priority(&mut x, &prio, capacity);
        let binding = items
            .iter()
            .zip(&x)
            .map(|(i, &x)| {
                if x < i.lo {
                    Binding::Capacity
                } else {
                    Binding::Reservation
                }
            })
            .collect();
        return Solution {
            x,
            lambda: lambda_max.max(0.0),
            binding,
        };
    }
    let excess = Excess {
        items,
        cost,
        capacity,
    };
    let tol = 1e-10 * lambda_max.max(1e-300);
    let found = Executor::new(excess, BrentRoot::new(0.0, lambda_max, tol))
        .configure(|s| s.param(lambda_max / 2.0).max_iters(200))
        .run()
        .ok()
        .and_then(|r| r.state.best_param)
        .unwrap_or(lambda_max);
    // The root may sit on a jump (a point mass): bracket it between an infeasible price `lo`
    // and a feasible one `hi`, narrow the bracket by bisection, take the feasible side, then
    // share what is left among the tenants at the jump, in proportion to their step.
    let feasible = |l: f64| total(items, cost + l) <= capacity;
    let mut hi = found.clamp(0.0, lambda_max);
    let mut step = tol.max(1e-12);
    while !feasible(hi) && hi < lambda_max {
        hi = (hi + step).min(lambda_max);
        step *= 2.0;
    }
    let mut lo = hi;
    let mut step = tol.max(1e-12);
    while feasible(lo) && lo > 0.0 {
        lo = (lo - step).max(0.0);
        step *= 2.0;
    }
    for _ in 0..200 {
        if hi - lo <= tol.max(1e-12) {
            break;
        }
        let mid = 0.5 * (lo + hi);
        if feasible(mid) { hi = mid } else { lo = mid }
    }
    let mut x: Vec<f64> = items.iter().map(|i| at_price(i, cost + hi)).collect();
    let left = capacity - x.iter().sum::<f64>();
    let gaps: Vec<f64> = items
        .iter()
        .zip(&x)
        .map(|(i, &x)| (at_price(i, cost + lo) - x).max(0.0))
        .collect();
    let gap: f64 = gaps.iter().sum();
    if left > 0.0 && gap > 0.0 {
        let f = (left / gap).min(1.0);
        for (x, g) in x.iter_mut().zip(&gaps) {
            *x += g * f;
        }
    }
    let binding = bind(&x, hi);
    Solution {
        x,
        lambda: hi,
        binding,
    }
}

/// Solve one resource for an allocation that stays in force over several buckets, where a
/// unit one tenant leaves unused is the others' at once (a rate: CPU time, throughput):
/// `buckets[b]` are the items with bucket b's demand. Each bucket is solved on its own, so
/// that in each the demand it is forecast to have fits the capacity, and each tenant gets
/// the most any bucket gives it, with that bucket's binding and λ (the first of equals).
/// The allocations add up to more than the capacity only where two tenants' peaks fall in
/// different buckets. The solution's `lambda` is the highest of the buckets'.
///
/// A stock (memory a guest has been given stays with it) must fit as a whole: solve it once,
/// on each tenant's highest demand over the buckets.
pub fn solve_each_bucket(buckets: &[Vec<Item>], capacity: Option<f64>, cost: f64) -> Spanning {
    let mut solutions = buckets.iter().map(|items| solve(items, capacity, cost));
    let first = solutions
        .next()
        .unwrap_or_else(|| solve(&[], capacity, cost));
    let mut out = Spanning {
        bucket: vec![0; first.x.len()],
        lambdas: vec![first.lambda; first.x.len()],
        solution: first,
    };
    for (k, s) in (1..).zip(solutions) {
        let best = &mut out.solution;
        best.lambda = best.lambda.max(s.lambda);
        for (i, (&x, &b)) in s.x.iter().zip(&s.binding).enumerate() {
            if x > best.x[i] {
                (best.x[i], best.binding[i]) = (x, b);
                (out.bucket[i], out.lambdas[i]) = (k, s.lambda);
            }
        }
    }
    out
}

/// What [`solve_each_bucket`] gives: the allocations, and for each tenant the bucket that
/// decided it and that bucket's λ.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanning {
    pub solution: Solution,
    pub bucket: Vec<usize>,
    pub lambdas: Vec<f64>,
}

/// Cost of one solve for `tenants` tenants × 4 resources, for `prescient bench solve`: random
/// demand curves (seeded), classes 4/2/1, capacity at `scarcity` × what the tenants want at
/// λ = 0. Returns the CPU nanoseconds of each of `passes` whole solves (4 resources each).
pub fn bench(tenants: usize, scarcity: f64, passes: usize) -> Vec<u128> {
    let mut seed = 42u64;
    let mut rnd = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let resources: Vec<(Vec<Item>, f64)> = (0..4)
        .map(|_| {
            let items: Vec<Item> = (0..tenants)
                .map(|_| {
                    let w = [1.0, 2.0, 4.0][(rnd() * 3.0) as usize];
                    let p50 = 1.0 + 100.0 * rnd();
                    let p90 = p50 * (1.0 + rnd());
                    let p95 = p90 * (1.0 + 0.3 * rnd());
                    let p99 = p95 * (1.0 + 0.3 * rnd());
                    Item {
                        value: w,
                        priority: w,
                        demand: Demand::from_quantiles(p50, p90, p95, p99),
                        lo: 0.05 * p50,
                        hi: 1e6,
                    }
                })
                .collect();
            let want: f64 = items.iter().map(|i| at_price(i, 0.2)).sum();
            (items, want * scarcity)
        })
        .collect();
    (0..passes)
        .map(|_| {
            let c0 = crate::forecast::bench::thread_cpu_ns();
            for (items, cap) in &resources {
                std::hint::black_box(solve(items, Some(*cap), 0.2));
            }
            crate::forecast::bench::thread_cpu_ns() - c0
        })
        .collect()
}

#[cfg(test)]
mod tests;
