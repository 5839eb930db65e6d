//! When scheduled jobs run. Time comes through a [`Clock`], so schedules
//! are tested with virtual time instead of waiting for them.

use chrono::{DateTime, Utc};
use drctl_core::topology::Schedule;
use std::future::Future;
use std::str::FromStr;

pub use drctl_runtime::{Clock, SystemClock};

fn utc(clock: &dyn Clock) -> DateTime<Utc> {
    DateTime::<Utc>::from(clock.now())
}

/// Runs each job on its schedule until `shutdown` completes: first at
/// once, then at its schedule's next time after the previous pass ended
/// (so a slow pass never overlaps the next). A pass in progress finishes
/// before shutdown is noticed.
pub async fn run_schedule<F, Fut>(
    clock: &dyn Clock,
    jobs: &[(usize, Schedule)],
    shutdown: impl Future<Output = ()>,
    mut run: F,
) where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let start = utc(clock);
    let mut next: Vec<(usize, Schedule, DateTime<Utc>)> = jobs.iter().map(|(id, s)| (*id, s.clone(), start)).collect();
    tokio::pin!(shutdown);
    while !next.is_empty() {
        next.sort_by_key(|(_, _, t)| *t);
        let when = next[0].2;
        tokio::select! {
            biased;
            _ = &mut shutdown => return,
            _ = clock.sleep_until(when.into()) => {}
        }
        run(next[0].0).await;
        match next_run(&next[0].1, utc(clock)) {
            Some(t) => next[0].2 = t,
            None => {
                next.remove(0);
            }
        }
    }
}

/// The first run strictly after `after`.
pub fn next_run(schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match schedule {
        Schedule::Every(d) => chrono::Duration::from_std(*d).ok().map(|d| after + d),
        // Validation already parsed the expression; a failure here means none.
        Schedule::Cron(expr) => cron::Schedule::from_str(expr).ok()?.after(&after).next(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// (job, when it ran)
    type RunLog = Vec<(usize, DateTime<Utc>)>;

    #[tokio::test(start_paused = true)]
    async fn jobs_run_at_once_then_on_their_schedules_without_overlapping() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 25, 21, 3, 30).unwrap();
        let clock = drctl_runtime::MockClock::starting_at(t0.into());
        let runs: Arc<Mutex<RunLog>> = Arc::default();
        let stop = tokio::sync::Notify::new();
        let jobs = [(7, Schedule::Every(Duration::from_secs(10))), (9, Schedule::Cron("0 */5 * * * *".into()))];
        run_schedule(&clock, &jobs, stop.notified(), |id| {
            runs.lock().unwrap().push((id, utc(&clock)));
            if runs.lock().unwrap().len() == 6 {
                stop.notify_one();
            }
            tokio::time::sleep(Duration::from_secs(2)) // each pass takes 2 s
        })
        .await;
        let s = |secs: i64| t0 + chrono::Duration::seconds(secs);
        assert_eq!(
            *runs.lock().unwrap(),
            vec![(7, s(0)), (9, s(2)), (7, s(12)), (7, s(24)), (7, s(36)), (7, s(48))],
            "every 10s counts from the end of a pass; the cron job waits for 21:05:00"
        );
    }

    #[test]
    fn every_adds_the_interval() {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 21, 0, 0).unwrap();
        assert_eq!(next_run(&Schedule::Every(Duration::from_secs(10)), t), Some(t + chrono::Duration::seconds(10)));
    }

    #[test]
    fn cron_finds_the_next_matching_minute() {
        // Validation turns `*/5 * * * *` into the 6-field form with seconds.
        let every_five = Schedule::Cron("0 */5 * * * *".into());
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 21, 3, 30).unwrap();
        assert_eq!(next_run(&every_five, t), Some(Utc.with_ymd_and_hms(2026, 11, 25, 21, 5, 0).unwrap()));
        // Written as in Unix cron, 1 = Monday; validation translates it.
        let monday_3am = Schedule::Cron(drctl_core::topology::cron_schedule("0 3 * * 1").unwrap().0);
        // 2026-11-25 is a Wednesday; the next Monday is the 30th.
        assert_eq!(next_run(&monday_3am, t), Some(Utc.with_ymd_and_hms(2026, 11, 30, 3, 0, 0).unwrap()));
        let weekend = Schedule::Cron(drctl_core::topology::cron_schedule("0 9 * * 6-7").unwrap().0);
        assert_eq!(next_run(&weekend, t), Some(Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap()), "Saturday");
        let sunday = Schedule::Cron(drctl_core::topology::cron_schedule("0 9 * * 0").unwrap().0);
        assert_eq!(next_run(&sunday, t), Some(Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap()));
        assert!(drctl_core::topology::cron_schedule("0 9 * * 8").is_err());
    }
}
