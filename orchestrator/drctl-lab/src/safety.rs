//! The split-brain checker: is there ever more than one writable primary?
//!
//! Every PostgreSQL member is probed from inside its own zone (from the
//! zone's own address, so a partition between zones never hides a member
//! that its zone's clients can still write to) five times a second: a
//! fresh session tries to commit one write. A round in which two members
//! took the write is two writable primaries. Combined with the workload's
//! acknowledgements (which member took each write, and when), it counts
//! the writes a member acknowledged after another member had been
//! promoted: the writes a split brain would silently lose.

use crate::workload::{connect_from, Ack};
use drctl_lab_api::Safety;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often every member is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(200);
/// Rounds kept (ten minutes' worth).
const KEEP: usize = 3000;

/// One probe round: when, and which zones' members took the write.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    pub at: SystemTime,
    pub writable: Vec<String>,
}

/// The probe rounds so far.
#[derive(Default)]
pub struct Probes {
    rounds: Mutex<Vec<Round>>,
}

impl Probes {
    fn push(&self, r: Round) {
        let mut rounds = self.rounds.lock().unwrap_or_else(|p| p.into_inner());
        rounds.push(r);
        if rounds.len() > KEEP {
            let extra = rounds.len() - KEEP;
            rounds.drain(..extra);
        }
    }

    pub fn since(&self, t: SystemTime) -> Vec<Round> {
        self.rounds.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|r| r.at >= t).cloned().collect()
    }
}

/// Whether the member at `addr` takes a write from a fresh session opened
/// in zone `z` (127.0.z.101).
async fn takes_write(z: u8, addr: SocketAddr) -> bool {
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, z, 101));
    let attempt = async {
        let c = connect_from(source, addr, "lab", Duration::from_millis(500)).await.ok()?;
        c.batch_execute(
            "BEGIN READ WRITE; SET LOCAL default_transaction_read_only = off;
             INSERT INTO drctl_probe VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET at = now(); COMMIT",
        )
        .await
        .ok()
    };
    matches!(tokio::time::timeout(Duration::from_secs(1), attempt).await, Ok(Some(())))
}

/// Probes every member (zone number, zone name, address) until aborted.
pub async fn run(members: Vec<(u8, String, SocketAddr)>, probes: std::sync::Arc<Probes>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let at = SystemTime::now();
        let took = futures::future::join_all(members.iter().map(|(z, _, a)| takes_write(*z, *a))).await;
        let writable = members.iter().zip(took).filter(|(_, ok)| *ok).map(|(m, _)| m.1.clone()).collect();
        probes.push(Round { at, writable });
    }
}

/// Judges a period: the most writable members at once, and the writes
/// acknowledged by a member after another one was promoted (first seen
/// taking writes, by probe or workload, having not been at the start).
///
/// The primary at `since` is the one writable then: in the last round at or
/// before it, and whoever took the last write before it (a fault injected
/// right at `since` must not make the old primary look newly promoted).
pub fn judge(all_rounds: &[Round], all_acks: &[Ack], since: SystemTime) -> Safety {
    let rounds: Vec<&Round> = all_rounds.iter().filter(|r| r.at >= since).collect();
    let writable_primaries_max = rounds.iter().map(|r| r.writable.len() as u64).max().unwrap_or(0);
    let mut initial: Vec<String> =
        all_rounds.iter().rfind(|r| r.at <= since).map(|r| r.writable.clone()).unwrap_or_default();
    if let Some(last) = all_acks.iter().filter(|a| a.at < since).max_by_key(|a| a.at) {
        initial.push(last.zone.clone());
    }
    if initial.is_empty() {
        // Nothing seen before: the first round after says who was primary.
        initial = rounds.first().map(|r| r.writable.clone()).unwrap_or_default();
    }
    let acks: Vec<&Ack> = all_acks.iter().filter(|a| a.at >= since).collect();
    let mut promoted: Vec<(String, SystemTime)> = Vec::new();
    let mut seen = |zone: &str, at: SystemTime| {
        if initial.iter().any(|z| z == zone) {
            return;
        }
        match promoted.iter_mut().find(|(z, _)| z == zone) {
            Some((_, first)) if at < *first => *first = at,
            Some(_) => {}
            None => promoted.push((zone.to_string(), at)),
        }
    };
    for r in &rounds {
        for z in &r.writable {
            seen(z, r.at);
        }
    }
    for a in &acks {
        seen(&a.zone, a.at);
    }
    let split_brain_writes =
        acks.iter().filter(|a| promoted.iter().any(|(z, at)| *z != a.zone && a.at > *at)).count() as u64;
    let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Safety {
        writable_primaries_max,
        split_brain_writes,
        promoted: promoted.into_iter().map(|(z, at)| (z, ms(at))).collect(),
        probe_rounds: rounds.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn round(ms: u64, zones: &[&str]) -> Round {
        Round { at: at(ms), writable: zones.iter().map(|z| z.to_string()).collect() }
    }

    fn ack(seq: u64, ms: u64, zone: &str) -> Ack {
        Ack { seq, at: at(ms), zone: zone.into() }
    }

    #[test]
    fn a_clean_failover_has_one_primary_at_a_time_and_no_split_brain_writes() {
        let rounds = [round(0, &["lab-az1"]), round(200, &[]), round(400, &["lab-az2"])];
        let acks = [ack(1, 50, "lab-az1"), ack(2, 150, "lab-az1"), ack(3, 380, "lab-az2"), ack(4, 450, "lab-az2")];
        let s = judge(&rounds, &acks, at(0));
        assert_eq!((s.writable_primaries_max, s.split_brain_writes), (1, 0));
        assert_eq!(s.promoted, vec![("lab-az2".to_string(), 380)], "first seen taking a write: the workload's");
    }

    #[test]
    fn an_old_primary_still_acknowledging_after_the_promote_is_split_brain() {
        let rounds = [round(0, &["lab-az1"]), round(200, &["lab-az1", "lab-az2"]), round(400, &["lab-az2"])];
        let acks = [ack(1, 100, "lab-az1"), ack(2, 190, "lab-az2"), ack(3, 250, "lab-az1"), ack(4, 300, "lab-az1")];
        let s = judge(&rounds, &acks, at(0));
        assert_eq!(s.writable_primaries_max, 2);
        assert_eq!(s.split_brain_writes, 2, "writes 3 and 4 came after lab-az2 took its first write");
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// The fault lands right after `since`, before any probe round: the old
    /// primary's last writes are not mistaken for a promotion.
    #[test]
    fn the_primary_at_the_start_is_known_from_before_it() {
        let rounds = [
            Round { at: at(900), writable: vec!["lab-az1".into()] },
            Round { at: at(1100), writable: vec![] },
            Round { at: at(1900), writable: vec!["lab-az2".into()] },
        ];
        let acks = [
            Ack { seq: 1, at: at(990), zone: "lab-az1".into() },
            Ack { seq: 2, at: at(1010), zone: "lab-az1".into() },
            Ack { seq: 3, at: at(1950), zone: "lab-az2".into() },
            Ack { seq: 4, at: at(2000), zone: "lab-az2".into() },
        ];
        let s = judge(&rounds, &acks, at(1000));
        assert_eq!((s.writable_primaries_max, s.split_brain_writes), (1, 0), "{s:?}");
        assert_eq!(s.promoted, vec![("lab-az2".to_string(), 1900)]);
    }
}
