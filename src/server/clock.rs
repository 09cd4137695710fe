//! The loop's clock: `CLOCK_MONOTONIC_COARSE`, the time of the last scheduler tick.
//!
//! Connection deadlines (header and keep-alive timeouts, lingering closes, the wait for a
//! large body), the sweep's schedule and the age of held responses are set or checked
//! for every request. They are counted in seconds or milliseconds, so a clock that is a
//! tick behind (1–4 ms, with `CONFIG_HZ` from 1000 to 250) serves them; reading it costs
//! a few ns, where `CLOCK_MONOTONIC` (`Instant`) reads the timestamp counter (~20 ns in a
//! virtual machine). Times that are reported (request durations in the access log and
//! metrics) keep the precise clock.

use std::ops::Add;
use std::time::Duration;

/// A point on the coarse monotonic clock, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tick(u64);

impl Tick {
    pub fn now() -> Tick {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec, which lives on our stack.
        if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
            // Only a kernel without the clock (older than 2.6.32) fails here.
            // SAFETY: as above.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        }
        Tick((ts.tv_sec as u64).wrapping_mul(1_000_000_000) + ts.tv_nsec as u64)
    }

    /// Nanoseconds on the clock, for storing in an atomic; never 0 once the machine has
    /// been up a tick.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Tick) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Tick {
    type Output = Tick;

    fn add(self, d: Duration) -> Tick {
        Tick(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_with_the_precise_clock() {
        let (t0, i0) = (Tick::now(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(30));
        let (t1, i1) = (Tick::now(), std::time::Instant::now());
        let coarse = t1.since(t0).as_secs_f64();
        let precise = i1.duration_since(i0).as_secs_f64();
        // One tick of lag at either end, at most 10 ms (CONFIG_HZ=100).
        assert!((coarse - precise).abs() <= 0.010, "{coarse} vs {precise}");
        assert!(t0 < t1);
    }

    #[test]
    fn adds_and_compares() {
        let t = Tick(5);
        assert_eq!(t + Duration::from_nanos(10), Tick(15));
        assert_eq!(Tick(15).since(t), Duration::from_nanos(10));
        assert_eq!(t.since(Tick(15)), Duration::ZERO);
        assert_eq!(Tick(u64::MAX - 1) + Duration::from_secs(1), Tick(u64::MAX));
    }
}
