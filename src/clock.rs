//! The wall clock: the one place powertail reads the time of day (epoch milliseconds,
//! the unit PowerJob's `finishedTime` and log times use). A leaf module.
//!
//! Everything that compares the time of day with PowerJob's times (completion windows,
//! the settle window of a finished log, the recheck of late lines, a store entry's idle
//! age, when PowerJob last answered) asks a [`Clock`], never `SystemTime` directly, so
//! that a test can move time forward instead of waiting it out:
//!
//! ```
//! use std::time::Duration;
//! use powertail::clock::Clock;
//!
//! let clock = Clock::manual();
//! let before = clock.now_ms();
//! clock.advance(Duration::from_secs(60));
//! assert!(clock.now_ms() >= before + 60_000);
//! ```
//!
//! A manual clock is the wall clock plus an offset that only [`Clock::advance`] grows: it
//! still runs (refresh loops, HTTP timeouts and long-polls keep their real tokio time),
//! it never goes back, and clones share the offset, so the service and the simulator
//! (given the same clock through [`Clock::now_fn`]) see one time. Durations between two
//! events inside the process (intervals, timeouts, back-offs) stay on tokio's clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time of day as the service sees it: the real wall clock (the default), or a
/// manual one that tests advance. Cheap to clone; clones share one time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// `None`: the wall clock; `Some`: milliseconds added to it.
    offset: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The wall clock.
    pub fn real() -> Self {
        Clock { offset: None }
    }

    /// A clock that runs with the wall clock and jumps forward on [`Clock::advance`].
    pub fn manual() -> Self {
        Clock { offset: Some(Arc::new(AtomicI64::new(0))) }
    }

    /// Now, epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        let offset = self.offset.as_ref().map_or(0, |o| o.load(Ordering::SeqCst));
        wall_ms().saturating_add(offset)
    }

    /// Moves a manual clock `by` forward (for every clone at once).
    ///
    /// # Panics
    /// On the real clock: the time of day cannot be moved.
    pub fn advance(&self, by: Duration) {
        let offset = self.offset.as_ref().expect("only a manual clock can be advanced");
        offset.fetch_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    /// How far a manual clock was advanced in all (zero for the real clock).
    pub fn advanced(&self) -> Duration {
        let ms = self.offset.as_ref().map_or(0, |o| o.load(Ordering::SeqCst));
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// [`Clock::now_ms`] as a function, for what takes its time that way (the simulator).
    pub fn now_fn(&self) -> Arc<dyn Fn() -> i64 + Send + Sync> {
        let clock = self.clone();
        Arc::new(move || clock.now_ms())
    }
}

/// The wall clock, epoch milliseconds (0 before 1970, saturating far after).
fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_clock_is_the_wall_clock() {
        let before = wall_ms();
        let now = Clock::real().now_ms();
        assert!(now >= before && now <= wall_ms());
        assert_eq!(Clock::default().advanced(), Duration::ZERO);
    }

    #[test]
    fn a_manual_clock_runs_and_jumps_for_every_clone() {
        let clock = Clock::manual();
        let other = clock.clone();
        let before = wall_ms();
        clock.advance(Duration::from_secs(90));
        let now = other.now_ms();
        assert!(now >= before + 90_000 && now <= wall_ms() + 90_000, "{now} vs {before}");
        assert_eq!(other.advanced(), Duration::from_secs(90));
        assert!((other.now_fn())() >= now);
    }

    #[test]
    #[should_panic(expected = "only a manual clock")]
    fn the_real_clock_cannot_be_advanced() {
        Clock::real().advance(Duration::from_millis(1));
    }
}
