//! Judging a standby's lag before it is promoted, as Patroni judges a
//! dead leader: by what the standby lacked the last time the primary was
//! seen, never by the age of a sample.
//!
//! Two figures, both read from the evidence the state store keeps
//! ([`drctl_state::LagEvidence`]), whichever process sampled it:
//!
//! - **L**, what the standby lacked (had not received) at the last moment
//!   the primary was seen answering;
//! - **W**, the interval from then until the primary was first seen dark:
//!   writes it took in that interval cannot be known.
//!
//! The run is refused when L exceeds `max_lag`, and when W is longer than
//! the window (three sampling intervals, or `max_lag`, whichever is
//! longer): the lag is then unknown. Neither grows while the primary stays
//! dark, so a zone declared lost 1, 5 or 30 minutes after its primary died
//! with the standby caught up needs no override. A primary that answers is
//! measured now (its last sample is as old as the clock says, so it is
//! never used). The promote-time check reads the same evidence, only
//! newer, so a green preflight cannot turn red 17 ms later on the clock
//! alone. Each judgement is said in words: what is known, and what cannot
//! be until the old primary is back.

use drctl_core::status::ReplicaStatus;
use drctl_state::{LagEvidence, WalSample};
use std::time::{Duration, SystemTime};

/// The override that promotes a standby beyond `max_lag`, or of unknown lag.
pub use crate::overrides::ACCEPT_LAG;

/// One judgement of a standby's lag.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// L: seconds of writes it lacked when the primary was last seen answering.
    pub lacked_s: Option<f64>,
    /// W: seconds from then until the primary was first seen dark (0 when it answers now).
    pub dark_after_s: Option<f64>,
    /// When the primary was last seen answering.
    pub last_seen: Option<SystemTime>,
    /// Why the run must not go on, when it must not (with the override named).
    pub refusal: Option<String>,
    /// What is known and what cannot be, in words.
    pub words: String,
}

/// `secs` as a person reads a duration: `0.4 s`, `12 s`, `2 min 10 s`, `1 h 5 min`.
pub fn human(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 10.0 {
        return format!("{secs:.1} s");
    }
    let whole = secs.round() as u64;
    match whole {
        0..=59 => format!("{whole} s"),
        60..=3599 if whole.is_multiple_of(60) => format!("{} min", whole / 60),
        60..=3599 => format!("{} min {} s", whole / 60, whole % 60),
        _ => format!("{} h {} min", whole / 3600, (whole % 3600) / 60),
    }
}

/// A time of day, UTC, to the tenth of a second.
fn clock_time(t: SystemTime) -> String {
    let t = chrono::DateTime::<chrono::Utc>::from(t);
    format!("{}.{}", t.format("%H:%M:%S"), chrono::Timelike::nanosecond(&t) / 100_000_000)
}

fn secs_between(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).unwrap_or_default().as_secs_f64()
}

/// The window within which the last sample still tells the lag at death.
pub fn window(interval: Option<Duration>, max_lag: Option<Duration>) -> Duration {
    let sampled = interval.map(|i| i * 3).unwrap_or_default();
    sampled.max(max_lag.unwrap_or_default())
}

/// Judges a standby whose primary answers now: measured now, nothing unknown.
pub fn judge_measured(to: &str, lag_s: f64, max_lag: Option<Duration>, accept_lag: bool) -> Judged {
    let over = max_lag.is_some_and(|m| lag_s > m.as_secs_f64());
    let words = format!("the standby in {to} lacks {} of writes (measured now; the primary answers)", human(lag_s));
    let refusal = (over && !accept_lag).then(|| {
        format!(
            "{words}, over max_lag {}: {ACCEPT_LAG} promotes it anyway",
            human(max_lag.unwrap_or_default().as_secs_f64())
        )
    });
    let words = if over && accept_lag { format!("{words}, over max_lag; {ACCEPT_LAG}") } else { words };
    Judged { lacked_s: Some(lag_s), dark_after_s: Some(0.0), last_seen: None, refusal, words }
}

/// Judges a standby whose primary does not answer, from the evidence, at
/// `now` on the declarer's clock. `fenced_at`: when the old primary was
/// fenced, once it was (what it may have taken is bounded by it).
pub fn judge_dark(
    to: &str,
    evidence: Option<&LagEvidence>,
    now: SystemTime,
    max_lag: Option<Duration>,
    accept_lag: bool,
    fenced_at: Option<SystemTime>,
) -> Judged {
    let Some((e, seen)) = evidence.and_then(|e| e.last_seen.as_ref().map(|s| (e, s))) else {
        let words = format!(
            "the lag of the standby in {to} is unknown: the primary does not answer and no sample shows it answering (run `drctl serve`, which samples, so that a declaration has evidence)"
        );
        let refusal = (max_lag.is_some() && !accept_lag).then(|| format!("{words}; {ACCEPT_LAG} promotes it anyway"));
        return Judged { lacked_s: None, dark_after_s: None, last_seen: None, refusal, words };
    };
    let lacked = seen.lag_s.unwrap_or(0.0);
    let dark = e.dark_since.unwrap_or(now);
    let w = secs_between(seen.at, dark);
    let win = window(e.interval, max_lag);
    let l_over = max_lag.is_some_and(|m| lacked > m.as_secs_f64());
    let w_over = max_lag.is_some() && w > win.as_secs_f64();
    let known = format!(
        "the standby in {to} lacked {} of writes when the primary was last seen answering ({} UTC); it was first seen dark {} later{}",
        human(lacked),
        clock_time(seen.at),
        human(w),
        if e.dark_since.is_none() { " (by this check)" } else { "" }
    );
    // Writes the primary may have taken after it was last seen: only if it
    // kept running (cut off, not dead), and only until it was fenced.
    let unknown = match fenced_at {
        Some(f) => format!(
            "up to {} more if the primary kept taking writes until it was fenced ({} UTC)",
            human(secs_between(seen.at, f)),
            clock_time(f)
        ),
        None => format!(
            "up to {} more so far if the primary kept taking writes (cut off rather than dead), until it is fenced",
            human(secs_between(seen.at, now))
        ),
    };
    let mut words = format!("{known}: {} of writes missing; {unknown}", human(lacked));
    let refusal = if l_over {
        Some(format!(
            "{known}: {} lacked, over max_lag {}: {ACCEPT_LAG} promotes it anyway",
            human(lacked),
            human(max_lag.unwrap_or_default().as_secs_f64())
        ))
    } else if w_over {
        Some(format!(
            "{known}: longer than the {} within which the last sample tells what it lacked (three sampling intervals or max_lag), so its lag is unknown: {ACCEPT_LAG} promotes it anyway",
            human(win.as_secs_f64())
        ))
    } else {
        None
    };
    let refusal = refusal.filter(|_| !accept_lag);
    if (l_over || w_over) && accept_lag {
        words.push_str(&format!(" (over max_lag or unknown; {ACCEPT_LAG})"));
    }
    Judged { lacked_s: Some(lacked), dark_after_s: Some(w), last_seen: Some(seen.at), refusal, words }
}

/// The looks at a PostgreSQL datastore's standbys a measurement holds,
/// for the state store's evidence. `primary_zone`: the primary that
/// answered (`None`: none did).
pub fn wal_samples(primary_zone: Option<&str>, replicas: &[ReplicaStatus], at: SystemTime) -> Vec<WalSample> {
    let lsn = |s: Option<&str>| s.and_then(drctl_providers::postgres::Lsn::parse).map(|l| l.0);
    replicas
        .iter()
        .map(|r| WalSample {
            zone: r.zone.clone(),
            at,
            primary_zone: primary_zone.map(str::to_string),
            primary_lsn: r.wal.as_ref().and_then(|w| lsn(Some(&w.primary))),
            received_lsn: r.wal.as_ref().and_then(|w| lsn(w.received.as_deref())),
            lag_s: r.lag_s.filter(|_| primary_zone.is_some()),
            replay_lag_s: r.replay_lag_s,
            streaming: r.wal.as_ref().is_some_and(|w| w.streaming),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use drctl_runtime::{Clock, MockClock};

    const MAX: Option<Duration> = Some(Duration::from_secs(10));

    fn base() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_036_800) // 2030-03-18 04:00 UTC
    }

    fn seen(at: SystemTime, lag: f64) -> WalSample {
        WalSample {
            zone: "az2".into(),
            at,
            primary_zone: Some("az1".into()),
            primary_lsn: Some(200),
            received_lsn: Some(100),
            lag_s: Some(lag),
            replay_lag_s: Some(0.0),
            streaming: true,
        }
    }

    /// Samples every second, as a controller takes them; the primary dies
    /// after the one at `t0`, and the next look finds it dark.
    fn evidence(t0: SystemTime, lag: f64, dark_after: Option<Duration>) -> LagEvidence {
        LagEvidence {
            last_seen: Some(seen(t0, lag)),
            dark_since: dark_after.map(|d| t0 + d),
            interval: Some(Duration::from_secs(1)),
            last_sample: Some(t0),
            marks: Vec::new(),
        }
    }

    /// A zone lost at 04:00 and declared 1, 5 or 30 minutes later, with the
    /// standby caught up when it died: neither L nor W grows with the
    /// clock, so no override is needed, however late the person declares.
    #[tokio::test(start_paused = true)]
    async fn a_late_declaration_of_a_dead_primary_is_judged_on_what_the_standby_lacked_when_it_died() {
        let clock = MockClock::starting_at(base());
        let e = evidence(clock.now(), 0.0, Some(Duration::from_millis(1100)));
        for late in [60, 300, 1800] {
            clock.sleep(Duration::from_secs(late) - (clock.now().duration_since(base()).unwrap())).await;
            let j = judge_dark("az2", Some(&e), clock.now(), MAX, false, None);
            assert_eq!(j.refusal, None, "declared {late}s later: {}", j.words);
            assert_eq!(j.lacked_s, Some(0.0));
            assert!((j.dark_after_s.unwrap() - 1.1).abs() < 1e-9, "{j:?}");
            assert!(j
                .words
                .contains("lacked 0.0 s of writes when the primary was last seen answering (04:00:00.0 UTC)"));
            assert!(j.words.contains(&format!("up to {} more so far", human(late as f64))), "{}", j.words);
        }
    }

    /// The standby lacked more than `max_lag` when the primary was last
    /// seen: refused, naming the one override that lifts it; accepted with it.
    #[test]
    fn a_standby_that_lacked_more_than_max_lag_is_refused_naming_accept_lag() {
        let e = evidence(base(), 12.4, Some(Duration::from_secs(1)));
        let j = judge_dark("az2", Some(&e), base() + Duration::from_secs(600), MAX, false, None);
        let why = j.refusal.unwrap();
        assert!(why.contains("12 s lacked, over max_lag 10 s: --accept-lag promotes it anyway"), "{why}");
        let j = judge_dark("az2", Some(&e), base() + Duration::from_secs(600), MAX, true, None);
        assert_eq!(j.refusal, None);
        assert!(j.words.contains("--accept-lag"), "{}", j.words);
    }

    /// No look saw the primary go dark until long after its last answer
    /// (nothing was sampling): what it took in between is unknown, which is
    /// refused too; a dark look within the window is fine.
    #[test]
    fn a_primary_last_seen_long_before_it_was_seen_dark_leaves_the_lag_unknown() {
        let t0 = base();
        let quiet = evidence(t0, 0.0, None);
        let j = judge_dark("az2", Some(&quiet), t0 + Duration::from_secs(30), MAX, false, None);
        let why = j.refusal.unwrap();
        assert!(why.contains("first seen dark 30 s later (by this check)"), "{why}");
        assert!(why.contains("its lag is unknown: --accept-lag"), "{why}");
        // The window is three sampling intervals when that is longer than max_lag.
        let slow =
            LagEvidence { interval: Some(Duration::from_secs(5)), ..evidence(t0, 0.0, Some(Duration::from_secs(12))) };
        assert_eq!(judge_dark("az2", Some(&slow), t0 + Duration::from_secs(900), MAX, false, None).refusal, None);
        let j = judge_dark("az2", None, t0, MAX, false, None);
        assert!(j.refusal.unwrap().contains("no sample shows it answering"), "no evidence at all");
    }

    /// Once the old primary is fenced, what it may have taken is bounded by
    /// the fence; the judgement itself is the same, before and after.
    #[test]
    fn the_promote_time_check_reads_the_same_evidence_and_bounds_the_unknown_by_the_fence() {
        let t0 = base();
        let e = evidence(t0, 0.4, Some(Duration::from_secs(1)));
        let pre = judge_dark("az2", Some(&e), t0 + Duration::from_secs(125), MAX, false, None);
        let fenced = t0 + Duration::from_secs(130);
        let at_promote = judge_dark("az2", Some(&e), fenced + Duration::from_millis(17), MAX, false, Some(fenced));
        assert_eq!((pre.lacked_s, pre.dark_after_s, pre.refusal), (at_promote.lacked_s, at_promote.dark_after_s, None));
        assert!(
            at_promote.words.contains(
                "0.4 s of writes missing; up to 2 min 10 s more if the primary kept taking writes until it was fenced"
            ),
            "{}",
            at_promote.words
        );
    }

    #[test]
    fn a_primary_that_answers_is_measured_now() {
        assert_eq!(judge_measured("az2", 3.0, MAX, false).refusal, None);
        let why = judge_measured("az2", 30.0, MAX, false).refusal.unwrap();
        assert!(why.ends_with("over max_lag 10 s: --accept-lag promotes it anyway"), "{why}");
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(human(0.44), "0.4 s");
        assert_eq!(human(42.0), "42 s");
        assert_eq!(human(130.0), "2 min 10 s");
        assert_eq!(human(120.0), "2 min");
        assert_eq!(human(3900.0), "1 h 5 min");
    }
}
