//! When a scheduled job runs next. Pure arithmetic on times handed in, so
//! schedules are tested without waiting for them.

use chrono::{DateTime, Utc};
use drctl_core::topology::Schedule;
use std::str::FromStr;

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
    use std::time::Duration;

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
        let monday_3am = Schedule::Cron("0 0 3 * * 1".into());
        // 2026-11-25 is a Wednesday.
        assert_eq!(next_run(&monday_3am, t), Some(Utc.with_ymd_and_hms(2026, 11, 30, 3, 0, 0).unwrap()));
    }
}
