//! The replay of the real month (`../shared/traces/bitbrains-rnd-2013-7`) matches what the
//! traces' README says a host replay must give.

use prescient::sim::replay::Replay;
use std::path::Path;

const MONTH: &str = "../shared/traces/bitbrains-rnd-2013-7";

#[test]
fn month_replay_matches_the_readme() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(MONTH);
    assert!(
        dir.is_dir(),
        "{} is missing: the team's traces live in ../shared/traces",
        dir.display()
    );
    let (traces, skipped) = prescient::trace::read_dir(&dir, false, |_, _| {}).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(traces.len(), 500);
    assert_eq!(
        traces.iter().filter(|t| t.duplicates > 0).count(),
        13,
        "files with duplicate timestamps"
    );
    let r = Replay::align(&traces, None);
    assert_eq!(r.steps, 8640);
    // 2013-06-30 22:00 UTC
    assert_eq!(r.t0, 1_372_629_600);
    assert_eq!(r.present(0), 425);
    assert_eq!(r.present(r.steps - 1), 500);
    // The monitoring outage of 07-16 13:10 to 07-17 19:40 UTC: 33 tenants present.
    let mid_outage = ((1_374_019_200 - r.t0) / 300) as usize; // 07-17 00:00
    assert_eq!(r.present(mid_outage), 33);
    assert_eq!((r.short_gaps, r.long_gaps), (1753, 432));
}
