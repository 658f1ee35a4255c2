//! Properties of the clock-offset estimate: any timestamps are handled
//! without panicking, and for any path delays the true offset lies within
//! the reported uncertainty (DESIGN.md, "Clock sync").

use glasswatch_collector::clock::{ClockEstimator, ClockSample};
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_timestamps_are_handled(t1 in any::<i64>(), t2 in any::<i64>(), t3 in any::<i64>(), t4 in any::<i64>()) {
        let _ = ClockSample::from_exchange(t1, t2, t3, t4);
        let mut e = ClockEstimator::new(i64::MAX, i64::MAX);
        let _ = e.add(t1, t2, t3, t4);
        let _ = e.estimate(t4);
    }

    #[test]
    fn true_offset_lies_within_the_uncertainty(
        offset in -10_000_000_000i64..10_000_000_000,
        out in 0i64..2_000_000,
        back in 0i64..2_000_000,
        hold in 0i64..100_000,
        t1 in 1_700_000_000_000_000i64..1_900_000_000_000_000,
    ) {
        let t2 = t1 + out + offset;
        let t3 = t2 + hold;
        let t4 = t3 - offset + back;
        let mut e = ClockEstimator::new(60_000_000, 10_000_000);
        e.add(t1, t2, t3, t4).unwrap();
        let est = e.estimate(t4).unwrap();
        prop_assert!((est.offset_us - offset).abs() <= est.uncertainty_us,
            "offset {} estimated {} ± {}", offset, est.offset_us, est.uncertainty_us);
    }
}
