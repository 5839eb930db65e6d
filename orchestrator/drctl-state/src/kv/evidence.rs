//! The lag evidence on the key-value space: one small document per
//! standby (`lagev/DS/ZONE`), into which every look is folded.

use super::{seg, Kv, KvStore};
use crate::error::Result;
use crate::model::evidence::{Evidence, LagEvidence, WalSample, MAX_SAMPLING_INTERVAL};
use crate::model::times::{millis, time};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SampleDoc {
    zone: String,
    at_ms: i64,
    primary_zone: Option<String>,
    primary_lsn: Option<u64>,
    received_lsn: Option<u64>,
    lag_s: Option<f64>,
    replay_lag_s: Option<f64>,
    streaming: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct EvidenceDoc {
    last_seen: Option<SampleDoc>,
    dark_since_ms: Option<i64>,
    interval_ms: Option<i64>,
    last_sample_ms: Option<i64>,
    /// The primary's WAL position at each of the last looks that saw it
    /// (time, position), oldest first, at most [`MARKS`].
    #[serde(default)]
    marks: Vec<(i64, u64)>,
}

/// How many of the primary's positions are kept per standby: two minutes
/// of one-second samples.
pub const MARKS: usize = 128;

impl From<&WalSample> for SampleDoc {
    fn from(s: &WalSample) -> SampleDoc {
        SampleDoc {
            zone: s.zone.clone(),
            at_ms: millis(s.at),
            primary_zone: s.primary_zone.clone(),
            primary_lsn: s.primary_lsn,
            received_lsn: s.received_lsn,
            lag_s: s.lag_s,
            replay_lag_s: s.replay_lag_s,
            streaming: s.streaming,
        }
    }
}

impl From<SampleDoc> for WalSample {
    fn from(d: SampleDoc) -> WalSample {
        WalSample {
            zone: d.zone,
            at: time(d.at_ms),
            primary_zone: d.primary_zone,
            primary_lsn: d.primary_lsn,
            received_lsn: d.received_lsn,
            lag_s: d.lag_s,
            replay_lag_s: d.replay_lag_s,
            streaming: d.streaming,
        }
    }
}

impl From<EvidenceDoc> for LagEvidence {
    fn from(d: EvidenceDoc) -> LagEvidence {
        LagEvidence {
            last_seen: d.last_seen.map(WalSample::from),
            dark_since: d.dark_since_ms.map(time),
            interval: d.interval_ms.map(|ms| Duration::from_millis(ms.max(0) as u64)),
            last_sample: d.last_sample_ms.map(time),
            marks: d.marks.iter().map(|(at, lsn)| (time(*at), *lsn)).collect(),
        }
    }
}

/// Folds one look into the evidence. Looks may arrive out of order (two
/// processes sample the same store): a look older than what is kept
/// changes only what it can still tell.
fn fold(doc: Option<EvidenceDoc>, s: &WalSample) -> EvidenceDoc {
    let mut d = doc.unwrap_or_default();
    let at = millis(s.at);
    if let (Some(_), Some(lsn)) = (&s.primary_zone, s.primary_lsn) {
        // Kept in time order whatever order looks arrive in.
        let pos = d.marks.partition_point(|(t, _)| *t <= at);
        d.marks.insert(pos, (at, lsn));
        if d.marks.len() > MARKS {
            let extra = d.marks.len() - MARKS;
            d.marks.drain(..extra);
        }
    }
    if s.primary_seen() {
        let newer = d.last_seen.as_ref().is_none_or(|l| at >= l.at_ms);
        if newer {
            if let Some(prev) = d.last_seen.as_ref().filter(|_| d.dark_since_ms.is_none()) {
                let gap = at - prev.at_ms;
                if gap > 0 && gap <= MAX_SAMPLING_INTERVAL.as_millis() as i64 {
                    d.interval_ms = Some(gap);
                }
            }
            d.last_seen = Some(SampleDoc::from(s));
            if d.dark_since_ms.is_some_and(|dark| dark <= at) {
                d.dark_since_ms = None;
            }
        }
    } else if s.primary_zone.is_none() {
        let after_seen = d.last_seen.as_ref().is_some_and(|l| at > l.at_ms);
        if after_seen && d.dark_since_ms.is_none_or(|dark| at < dark) {
            d.dark_since_ms = Some(at);
        }
    }
    d.last_sample_ms = Some(d.last_sample_ms.map_or(at, |l| l.max(at)));
    d
}

impl<K: Kv> Evidence for KvStore<K> {
    fn record_wal_samples(&self, datastore: &str, samples: &[WalSample]) -> Result<()> {
        for s in samples {
            let key = self.key(&format!("lagev/{}/{}", seg(datastore), seg(&s.zone)));
            // Any process's look counts: not only the leader's.
            self.update::<EvidenceDoc, ()>(&key, false, |doc| Ok((Some(fold(doc, s)), ())))?;
        }
        Ok(())
    }

    fn lag_evidence(&self, datastore: &str, zone: &str) -> Result<Option<LagEvidence>> {
        let key = self.key(&format!("lagev/{}/{}", seg(datastore), seg(zone)));
        Ok(self.get_doc::<EvidenceDoc>(&key)?.map(|(d, _)| d.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn look(at_s: u64, primary: bool) -> WalSample {
        WalSample {
            zone: "az2".into(),
            at: UNIX_EPOCH + Duration::from_secs(1_900_000_000 + at_s),
            primary_zone: primary.then(|| "az1".to_string()),
            primary_lsn: primary.then_some(100 + at_s),
            received_lsn: Some(100 + at_s),
            lag_s: primary.then_some(0.0),
            replay_lag_s: Some(0.0),
            streaming: primary,
        }
    }

    #[test]
    fn the_first_dark_look_after_the_last_answer_is_kept_and_an_answer_clears_it() {
        let mut d = None;
        for s in [look(0, true), look(1, true), look(2, false), look(3, false), look(30, false)] {
            d = Some(fold(d, &s));
        }
        let e = LagEvidence::from(d.clone().unwrap());
        assert_eq!(e.last_seen.as_ref().map(|s| s.at), Some(look(1, true).at));
        assert_eq!(e.dark_since, Some(look(2, false).at), "darkness dates from its first look");
        assert_eq!(e.interval, Some(Duration::from_secs(1)));
        // An older dark look (another sampler, late) moves the start earlier, never later.
        let e = LagEvidence::from(fold(d.clone(), &look(1, false)));
        assert_eq!(e.dark_since, Some(look(2, false).at), "not after the last answer: ignored");
        let e = LagEvidence::from(fold(fold(d, &look(40, true)).into(), &look(41, true)));
        assert_eq!(e.dark_since, None, "the primary answers again");
        assert_eq!(e.interval, Some(Duration::from_secs(1)));
    }

    /// The primary's positions are kept, newest last and bounded: the last
    /// look at or before a standby's received position dates what it lacks.
    #[test]
    fn the_primarys_recent_positions_date_the_first_write_a_standby_lacks() {
        let mut d = None;
        for i in 0..(MARKS as u64 + 10) {
            d = Some(fold(d, &look(i, true)));
        }
        let e = LagEvidence::from(d.unwrap());
        assert_eq!(e.marks.len(), MARKS, "bounded");
        // look(i) saw the primary at 100 + i.
        assert_eq!(e.last_at_or_before(100 + 130), Some(look(130, true).at));
        assert_eq!(e.last_at_or_before(100 + 5), None, "older than what is kept: unknown");
        assert_eq!(e.last_at_or_before(u64::MAX), Some(look(MARKS as u64 + 9, true).at));
    }

    #[test]
    fn a_person_running_status_now_and_then_is_not_a_sampling_interval() {
        let d = fold(Some(fold(None, &look(0, true))), &look(3600, true));
        assert_eq!(LagEvidence::from(d).interval, None);
    }
}
