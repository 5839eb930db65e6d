//! One clock, real or controlled.
//!
//! [`SystemClock`] is the machine's. [`MockClock`] follows tokio's own
//! clock, so a test that pauses tokio's time (`#[tokio::test(start_paused =
//! true)]`, or `tokio::time::pause()`) controls both what `now` says and
//! how long `sleep` takes: a sleep returns as soon as nothing else can run,
//! and `now` has moved by exactly the time slept. No test waits for real.

use futures::future::BoxFuture;
use std::time::{Duration, SystemTime};

/// Where time comes from.
pub trait Clock: Send + Sync + 'static {
    /// The wall-clock time now (journal timestamps, schedules).
    fn now(&self) -> SystemTime;
    /// Waits for `d`.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
    /// Waits until `at` (at once when it has passed).
    fn sleep_until(&self, at: SystemTime) -> BoxFuture<'static, ()> {
        self.sleep(at.duration_since(self.now()).unwrap_or_default())
    }
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that starts at a chosen time and moves with tokio's clock: with
/// tokio's time paused, time passes only when every task waits.
#[derive(Debug, Clone)]
pub struct MockClock {
    base: SystemTime,
    start: tokio::time::Instant,
}

impl MockClock {
    /// A clock reading `base` now. Call it inside the tokio runtime.
    pub fn starting_at(base: SystemTime) -> MockClock {
        MockClock { base, start: tokio::time::Instant::now() }
    }
}

impl Clock for MockClock {
    fn now(&self) -> SystemTime {
        self.base + self.start.elapsed()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[tokio::test(start_paused = true)]
    async fn a_mock_clock_moves_exactly_as_far_as_it_sleeps_and_no_further() {
        let base = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = MockClock::starting_at(base);
        let real = std::time::Instant::now();
        clock.sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now(), base + Duration::from_secs(3600));
        clock.sleep_until(base + Duration::from_secs(7200)).await;
        assert_eq!(clock.now(), base + Duration::from_secs(7200));
        clock.sleep_until(base).await; // in the past: at once
        assert_eq!(clock.now(), base + Duration::from_secs(7200));
        assert!(real.elapsed() < Duration::from_secs(1), "two virtual hours took {:?}", real.elapsed());
    }
}
