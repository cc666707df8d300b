use super::*;

/// A small deterministic generator for the property tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn demand(&mut self) -> Demand {
        let p50 = 1.0 + 10.0 * self.next();
        let p90 = p50 * (1.0 + self.next());
        let p95 = p90 * (1.0 + 0.5 * self.next());
        let p99 = p95 * (1.0 + 0.5 * self.next());
        Demand::from_quantiles(p50, p90, p95, p99)
    }

    fn items(&mut self, n: usize) -> Vec<Item> {
        (0..n)
            .map(|_| {
                let w = [1.0, 2.0, 4.0][(self.next() * 3.0) as usize];
                let lo = self.next() * 0.5;
                Item {
                    value: w,
                    priority: w,
                    demand: self.demand(),
                    lo,
                    hi: lo + 5.0 + 30.0 * self.next(),
                }
            })
            .collect()
    }
}

fn objective(items: &[Item], x: &[f64], cost: f64) -> f64 {
    items
        .iter()
        .zip(x)
        .map(|(i, &x)| i.value * i.demand.expected_served(x) - cost * x)
        .sum()
}

#[test]
fn the_demand_curve_goes_through_the_forecast_and_inverts() {
    let d = Demand::from_quantiles(10.0, 14.0, 16.0, 20.0);
    for (tau, q) in [
        (0.5, 10.0),
        (0.9, 14.0),
        (0.95, 16.0),
        (0.99, 20.0),
        (0.1, 6.0),
    ] {
        assert!((d.quantile(tau) - q).abs() < 1e-12, "{tau}");
    }
    // The lower tail is the upper one mirrored, never below 0.
    assert_eq!(d.quantile(0.0), 0.0);
    // Above p99 an exponential tail through p95 and p99.
    let b = 4.0 / 5f64.ln();
    assert!((d.quantile(0.999) - (20.0 + b * 10f64.ln())).abs() < 1e-9);
    // (Below p1 the curve is flat at 0 here: nothing to invert.)
    for k in 11..999 {
        let tau = k as f64 / 1000.0;
        let x = d.quantile(tau);
        assert!(
            (d.exceedance(x) - (1.0 - tau)).abs() < 1e-9,
            "τ {tau}: x {x}"
        );
    }
    // E[min(x, D)] is the integral of the exceedance (midpoint rule, fine steps).
    for x in [0.0, 3.0, 10.0, 15.0, 19.0, 25.0, 60.0] {
        let n = 20_000;
        let h = x / n as f64;
        let num: f64 = (0..n).map(|k| d.exceedance((k as f64 + 0.5) * h) * h).sum();
        assert!((d.expected_served(x) - num).abs() < 1e-4, "{x}");
    }
    let c = Demand::certain(7.0);
    assert_eq!(c.quantile(0.3), 7.0);
    assert_eq!(c.exceedance(6.9), 1.0);
    assert_eq!(c.exceedance(7.0), 0.0);
    assert!((c.expected_served(10.0) - 7.0).abs() < 1e-12);
}

#[test]
fn bad_quantiles_are_cleaned_not_trusted() {
    let d = Demand::from_quantiles(f64::NAN, -3.0, 5.0, 4.0);
    let mut prev = 0.0;
    for k in 0..100 {
        let q = d.quantile(k as f64 / 100.0);
        assert!(q.is_finite() && q >= prev, "monotone and finite");
        prev = q;
    }
}

#[test]
fn with_ample_capacity_each_class_gets_its_own_quantile() {
    let d = Demand::from_quantiles(10.0, 14.0, 16.0, 20.0);
    let item = |v: f64| Item {
        value: v,
        priority: v,
        demand: d,
        lo: 0.0,
        hi: 1e9,
    };
    let items = [item(4.0), item(2.0), item(1.0)];
    let s = solve(&items, Some(1e9), 0.2);
    assert_eq!(s.lambda, 0.0);
    for (it, &x) in items.iter().zip(&s.x) {
        assert!((x - d.quantile(1.0 - 0.2 / it.value)).abs() < 1e-9);
    }
    assert!(s.x[0] > s.x[1] && s.x[1] > s.x[2], "{:?}", s.x);
    assert!(s.binding.iter().all(|b| *b == Binding::None));
    assert_eq!(solve(&items, None, 0.2).x, s.x, "no capacity: the same");
}

#[test]
fn kkt_conditions_hold_under_scarcity() {
    let mut rng = Rng(11);
    for _ in 0..300 {
        let n = 1 + (rng.next() * 12.0) as usize;
        let items = rng.items(n);
        let cost = 0.05 + rng.next();
        let free: f64 = items.iter().map(|i| at_price(i, cost)).sum();
        let cap = free * (0.2 + 0.7 * rng.next());
        let s = solve(&items, Some(cap), cost);
        let sum: f64 = s.x.iter().sum();
        assert!(sum <= cap * (1.0 + 1e-9) + 1e-9, "{sum} > {cap}");
        let price = cost + s.lambda;
        if items.iter().map(|i| i.lo).sum::<f64>() >= cap {
            continue; // reservations squeezed: tested on their own
        }
        assert!(
            (sum - cap).abs() < 1e-6 * cap.max(1.0),
            "the capacity is used: {sum} {cap}"
        );
        assert!(s.lambda > 0.0);
        for (it, &x) in items.iter().zip(&s.x) {
            assert!(x >= it.lo - 1e-9 && x <= it.hi + 1e-9, "bounds");
            let marginal = it.value * it.demand.exceedance(x);
            if x > it.lo + 1e-6 && x < it.hi - 1e-6 {
                assert!(
                    (marginal - price).abs() < 1e-5 * price.max(1.0),
                    "interior: v·P(D>x) {marginal} = c+λ {price}"
                );
            } else if x <= it.lo + 1e-6 {
                assert!(marginal <= price + 1e-6, "at the reservation");
            } else {
                assert!(marginal >= price - 1e-6, "at the limit");
            }
        }
    }
}

#[test]
fn brute_force_finds_nothing_better_on_small_instances() {
    let mut rng = Rng(5);
    for _ in 0..40 {
        let items = rng.items(2);
        let cost = 0.1 + 0.5 * rng.next();
        let free: f64 = items.iter().map(|i| at_price(i, cost)).sum();
        let cap = free * (0.3 + 0.9 * rng.next());
        let s = solve(&items, Some(cap), cost);
        let best = objective(&items, &s.x, cost);
        let steps = 400;
        for a in 0..=steps {
            let x0 = items[0].lo + (items[0].hi - items[0].lo) * a as f64 / steps as f64;
            // The best x1 for this x0 is at its own optimum or where capacity runs out.
            let room = (cap - x0).min(items[1].hi);
            if room < items[1].lo {
                continue;
            }
            for x1 in [room, at_price(&items[1], cost).min(room)] {
                let v = objective(&items, &[x0, x1], cost);
                assert!(
                    v <= best + 1e-6 * best.abs().max(1.0),
                    "{v} > {best}: {:?}",
                    s.x
                );
            }
        }
    }
}

#[test]
fn priority_order_is_respected_under_scarcity() {
    let d = Demand::from_quantiles(10.0, 14.0, 16.0, 20.0);
    let item = |v: f64| Item {
        value: v,
        priority: v,
        demand: d,
        lo: 1.0,
        hi: 100.0,
    };
    let items = [item(1.0), item(4.0), item(2.0)];
    let s = solve(&items, Some(24.0), 0.2);
    assert!(s.lambda > 0.0);
    assert!(
        s.x[1] > s.x[2] && s.x[2] > s.x[0],
        "gold > silver > bronze: {:?}",
        s.x
    );
    assert!((s.x.iter().sum::<f64>() - 24.0).abs() < 1e-6);
    assert!(s.binding.contains(&Binding::Capacity));
}

#[test]
fn more_cost_never_means_more_allocation() {
    let mut rng = Rng(3);
    let items = rng.items(8);
    let free: f64 = items.iter().map(|i| at_price(i, 0.1)).sum();
    for cap in [None, Some(free * 0.6)] {
        let mut prev: Option<Vec<f64>> = None;
        for c in [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2] {
            let s = solve(&items, cap, c);
            if let Some(p) = &prev {
                for (a, b) in p.iter().zip(&s.x) {
                    assert!(*b <= a + 1e-6, "c {c}: {b} > {a}");
                }
            }
            prev = Some(s.x);
        }
    }
}

#[test]
fn reservations_beyond_capacity_squeeze_the_lowest_priority_first() {
    let d = Demand::certain(10.0);
    let item = |v: f64| Item {
        value: v,
        priority: v,
        demand: d,
        lo: 5.0,
        hi: 20.0,
    };
    let items = [item(1.0), item(4.0), item(2.0)];
    let s = solve(&items, Some(12.0), 0.2);
    assert_eq!(s.x, [2.0, 5.0, 5.0]);
    assert_eq!(s.binding[0], Binding::Capacity);
    assert_eq!(s.binding[1], Binding::Reservation);
}

#[test]
fn point_masses_on_a_jump_still_fill_the_capacity_exactly() {
    // Three certain demands of 10 with the same value: Σ x(λ) jumps from 30 to 0.
    let items: Vec<Item> = (0..3)
        .map(|_| Item {
            value: 2.0,
            priority: 2.0,
            demand: Demand::certain(10.0),
            lo: 0.0,
            hi: 50.0,
        })
        .collect();
    let s = solve(&items, Some(21.0), 0.5);
    let sum: f64 = s.x.iter().sum();
    assert!(sum <= 21.0 + 1e-9 && sum > 21.0 - 1e-6, "{:?}", s.x);
    assert!(
        s.x.iter().all(|&x| (x - 7.0).abs() < 1e-6),
        "shared evenly: {:?}",
        s.x
    );
}

#[test]
fn a_jump_at_one_class_price_is_filled_too() {
    // Certain demands of 1.2 valued 4 (held at 0.8), 2 and 1 on 1 unit: silver's jump is
    // where the capacity runs out, and silver takes what gold leaves.
    let item = |value: f64, hi: f64| Item {
        value,
        priority: value,
        demand: Demand::certain(1.2),
        lo: 0.01,
        hi,
    };
    let items = [item(4.0, 0.8), item(2.0, 10.0), item(1.0, 10.0)];
    let s = solve(&items, Some(1.0), 0.05);
    let sum: f64 = s.x.iter().sum();
    assert!((sum - 1.0).abs() < 1e-6, "{:?}", s.x);
    assert!(
        (s.x[0] - 0.8).abs() < 1e-9 && (s.x[2] - 0.01).abs() < 1e-9,
        "{:?}",
        s.x
    );
}

#[test]
fn peaks_in_different_buckets_each_get_their_busy_quantile() {
    // Silver is busy in the first bucket the allocation covers, bronze in the second, gold
    // idle in both, on 2 units. Merged, the two peaks do not fit with gold's tail and the
    // lowest class is squeezed; bucket by bucket each peak fits.
    let busy = Demand::from_quantiles(1.0, 1.1, 1.2, 1.4);
    let idle = Demand::from_quantiles(0.05, 0.3, 0.5, 0.7);
    let item = |value: f64, demand: Demand| Item {
        value,
        priority: value,
        demand,
        lo: 0.01,
        hi: 1.0,
    };
    let buckets = vec![
        vec![item(4.0, idle), item(2.0, busy), item(1.0, idle)],
        vec![item(4.0, idle), item(2.0, idle), item(1.0, busy)],
    ];
    let s = solve_each_bucket(&buckets, Some(2.0), 0.05);
    for (b, items) in buckets.iter().enumerate() {
        let alone = solve(items, Some(2.0), 0.05);
        assert!(alone.x.iter().sum::<f64>() <= 2.0 + 1e-9);
        for (i, (&x, &own)) in s.solution.x.iter().zip(&alone.x).enumerate() {
            assert!(x >= own - 1e-12, "bucket {b}, tenant {i}: {x} < {own}");
        }
    }
    assert_eq!(s.solution.x[1], 1.0, "silver's peak: {:?}", s.solution.x);
    assert_eq!(s.solution.x[2], 1.0, "bronze's peak: {:?}", s.solution.x);
    assert_eq!(s.solution.binding[2], Binding::Limit);
    let highest = s.lambdas.iter().copied().fold(0.0, f64::max);
    assert_eq!(s.solution.lambda, highest);

    // The merged demand (each tenant's highest) squeezes the lowest class below its peak.
    let merged = [item(4.0, idle), item(2.0, busy), item(1.0, busy)];
    let m = solve(&merged, Some(2.0), 0.05);
    assert!(m.x[2] < 0.9, "merged: {:?}", m.x);

    // One bucket: the plain solve.
    let one = solve_each_bucket(&buckets[..1], Some(2.0), 0.05);
    assert_eq!(one.solution, solve(&buckets[0], Some(2.0), 0.05));
}
