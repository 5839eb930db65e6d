//! The one retry policy: exponential backoff with deterministic jitter.
//!
//! The engine (a step's `retries`) and the S3 copier (an object's copy)
//! used to keep their own doubling loops; they now ask the same
//! [`Backoff`], so "attempts" and "backoff" mean the same everywhere.

use std::time::Duration;

/// Attempts in all, and the pause before the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The pause before the second attempt; it doubles after each failure.
    pub first: Duration,
}

impl Backoff {
    pub fn new(attempts: u32, first: Duration) -> Backoff {
        Backoff { attempts: attempts.max(1), first }
    }

    /// The pause after failed attempt `done` (1-based) before the next, or
    /// `None` when every attempt is spent. `seed` spreads the retries of
    /// parallel work apart (±25%), deterministically (no RNG).
    pub fn pause_after(&self, done: u32, seed: u64) -> Option<Duration> {
        if done >= self.attempts {
            return None;
        }
        let doubled = self.first.saturating_mul(1u32.checked_shl(done.saturating_sub(1)).unwrap_or(u32::MAX));
        Some(jitter(doubled, seed.wrapping_add(done as u64)))
    }
}

/// `base` ± 25%, deterministic per seed.
fn jitter(base: Duration, seed: u64) -> Duration {
    let x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33;
    let factor = 0.75 + (x % 1000) as f64 / 2000.0;
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_within_a_quarter_and_stop_at_the_last_attempt() {
        let b = Backoff::new(4, Duration::from_secs(2));
        for (done, nominal) in [(1, 2.0), (2, 4.0), (3, 8.0)] {
            let p = b.pause_after(done, 7).unwrap().as_secs_f64();
            assert!((nominal * 0.75..=nominal * 1.25).contains(&p), "after attempt {done}: {p}s");
        }
        assert_eq!(b.pause_after(4, 7), None, "four attempts in all");
        assert_eq!(Backoff::new(0, Duration::from_secs(1)).pause_after(1, 0), None, "at least one attempt, no retry");
        assert!(Backoff::new(100, Duration::from_secs(1)).pause_after(80, 0).is_some(), "no overflow");
    }
}
