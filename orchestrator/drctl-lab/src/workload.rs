//! The lab's steady write workload, the ground truth of a drill's RPO.
//!
//! A writer in each zone inserts sequence-numbered rows into PostgreSQL
//! through what it can reach from there (it connects from its zone's
//! addresses and uses whichever member takes writes, as applications do
//! with a multi-host connection), so a partitioned zone's old primary
//! keeps acknowledging writes until it is fenced; S3 gets
//! sequence-numbered objects (staying on one bucket
//! until it fails, then moving to the next zone's). Every write the server
//! acknowledged is remembered with its time and the zone that took it.
//! After a failover, the writes acknowledged elsewhere that the new
//! primary does not have were really lost: that count is `lost_writes`, and
//! the span they cover is the RPO in seconds.

use serde::Serialize;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Rows per second the PostgreSQL writer aims for (one every 50 ms).
pub const PG_INTERVAL: Duration = Duration::from_millis(50);
/// Objects per second the S3 writer aims for (one every 100 ms).
pub const S3_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct Ack {
    pub seq: u64,
    pub at: SystemTime,
    pub zone: String,
}

/// What one writer has done.
#[derive(Default)]
pub struct Log {
    pub acks: Mutex<Vec<Ack>>,
    pub failures: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl Log {
    fn ack(&self, seq: u64, zone: String) {
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).push(Ack { seq, at: SystemTime::now(), zone });
    }

    fn fail(&self, why: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    pub fn summary(&self) -> Summary {
        let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        Summary {
            acknowledged: acks.len() as u64,
            last_seq: acks.last().map(|a| a.seq),
            last_zone: acks.last().map(|a| a.zone.clone()),
            failures: self.failures.load(Ordering::Relaxed),
            last_error: self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub acknowledged: u64,
    pub last_seq: Option<u64>,
    pub last_zone: Option<String>,
    pub failures: u64,
    pub last_error: Option<String>,
}

pub use drctl_lab_api::Loss;

/// Compares the acknowledged writes with the sequence numbers the new primary holds.
pub fn loss(acks: &[Ack], new_zone: &str, present: &HashSet<u64>) -> Loss {
    let elsewhere: Vec<&Ack> = acks.iter().filter(|a| a.zone != new_zone).collect();
    let lost: Vec<&Ack> = elsewhere.iter().copied().filter(|a| !present.contains(&a.seq)).collect();
    let rpo_s = match (lost.first(), lost.last()) {
        (Some(first), Some(last)) => {
            // From the last write that survived before the loss began.
            let survivor = acks.iter().filter(|a| a.at < first.at && present.contains(&a.seq)).map(|a| a.at).max();
            let from = survivor.unwrap_or(first.at);
            last.at.duration_since(from).unwrap_or_default().as_secs_f64()
        }
        _ => 0.0,
    };
    Loss {
        acknowledged_elsewhere: elsewhere.len() as u64,
        lost_writes: lost.len() as u64,
        rpo_s,
        first_lost_seq: lost.first().map(|a| a.seq),
        last_lost_seq: lost.last().map(|a| a.seq),
    }
}

/// A PostgreSQL session opened from a lab zone's own address (so the
/// fault proxies see which zone calls, and partitions apply to it).
pub async fn connect_from(
    source: IpAddr,
    addr: SocketAddr,
    db: &str,
    timeout: Duration,
) -> Result<tokio_postgres::Client, String> {
    let open = async {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket.bind(SocketAddr::new(source, 0)).map_err(|e| format!("bind {source}: {e}"))?;
        let stream = socket.connect(addr).await.map_err(|e| format!("{addr}: {e}"))?;
        let mut cfg = tokio_postgres::Config::new();
        cfg.user("postgres").dbname(db);
        let (client, connection) =
            cfg.connect_raw(stream, tokio_postgres::NoTls).await.map_err(|e| format!("{addr}: {e}"))?;
        // The connection task ends when the client is dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok::<_, String>(client)
    };
    tokio::time::timeout(timeout, open).await.map_err(|_| format!("{addr}: no answer"))?
}

/// The writer of one zone: writes rows through whichever member it can
/// reach from `source` that takes writes, until aborted. Sequence numbers
/// come from `seq`, shared by every zone's writer.
pub async fn run_postgres(source: IpAddr, members: Vec<(String, SocketAddr)>, seq: Arc<AtomicU64>, log: Arc<Log>) {
    let mut client: Option<(tokio_postgres::Client, String)> = None;
    let mut tick = tokio::time::interval(PG_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if client.as_ref().is_some_and(|(c, _)| c.is_closed()) {
            client = None;
        }
        if client.is_none() {
            let mut why = String::from("no member takes writes");
            for (zone, addr) in &members {
                let c = match connect_from(source, *addr, "lab", Duration::from_secs(1)).await {
                    Ok(c) => c,
                    Err(e) => {
                        why = e;
                        continue;
                    }
                };
                let primary =
                    c.query_one("SELECT NOT pg_is_in_recovery()", &[]).await.is_ok_and(|r| r.get::<_, bool>(0));
                if primary {
                    client = Some((c, zone.clone()));
                    break;
                }
            }
            if client.is_none() {
                log.fail(why);
                continue;
            }
        }
        let Some((c, zone)) = &client else { continue };
        let n = seq.fetch_add(1, Ordering::SeqCst) + 1;
        let value = n as i64;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&value];
        let insert = c.execute("INSERT INTO workload (seq) VALUES ($1)", &params);
        match tokio::time::timeout(Duration::from_secs(2), insert).await {
            Ok(Ok(_)) => log.ack(n, zone.clone()),
            Ok(Err(e)) => {
                log.fail(e.to_string());
                client = None;
            }
            Err(_) => {
                log.fail("insert: no answer".into());
                client = None;
            }
        }
    }
}

/// Puts objects into the first bucket that takes them, staying there until it fails.
pub async fn run_s3(buckets: Vec<drctl_aws::s3::Bucket>, log: Arc<Log>) {
    let mut seq = 0u64;
    let mut at = 0usize;
    let mut tick = tokio::time::interval(S3_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(b) = buckets.get(at) else { return };
        seq += 1;
        let body = format!("workload write {seq}\n").into_bytes();
        let key = object_key(seq);
        let put = drctl_aws::s3::put_bytes(b, &key, body);
        match tokio::time::timeout(Duration::from_secs(2), put).await {
            Ok(Ok(())) => log.ack(seq, b.zone.clone()),
            Ok(Err(e)) => {
                log.fail(e.to_string());
                at = (at + 1) % buckets.len();
            }
            Err(_) => {
                log.fail("put: no answer".into());
                at = (at + 1) % buckets.len();
            }
        }
    }
}

pub fn object_key(seq: u64) -> String {
    format!("workload/{seq:012}")
}

/// The sequence number an object key carries.
pub fn seq_of_key(key: &str) -> Option<u64> {
    key.strip_prefix("workload/")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(seq: u64, ms: u64, zone: &str) -> Ack {
        Ack { seq, at: SystemTime::UNIX_EPOCH + Duration::from_millis(ms), zone: zone.into() }
    }

    #[test]
    fn counts_acknowledged_writes_the_new_primary_lacks() {
        let acks = vec![
            ack(1, 0, "lab-az1"),
            ack(2, 50, "lab-az1"),
            ack(3, 100, "lab-az1"),
            ack(4, 150, "lab-az1"),
            ack(6, 3000, "lab-az2"),
        ];
        let present: HashSet<u64> = [1, 2, 6].into();
        let l = loss(&acks, "lab-az2", &present);
        assert_eq!(l.acknowledged_elsewhere, 4);
        assert_eq!(l.lost_writes, 2);
        assert_eq!((l.first_lost_seq, l.last_lost_seq), (Some(3), Some(4)));
        assert!((l.rpo_s - 0.1).abs() < 1e-9, "from write 2 (50 ms) to write 4 (150 ms): {}", l.rpo_s);

        let all: HashSet<u64> = [1, 2, 3, 4, 6].into();
        assert_eq!(loss(&acks, "lab-az2", &all).lost_writes, 0);
        assert_eq!(loss(&acks, "lab-az2", &all).rpo_s, 0.0);
    }

    #[test]
    fn zones_and_keys_round_trip() {
        assert_eq!(seq_of_key(&object_key(42)), Some(42));
        assert_eq!(seq_of_key("other/1"), None);
    }
}
