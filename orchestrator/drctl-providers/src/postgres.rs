//! PostgreSQL: who is primary, how far behind each standby is.
//!
//! Every member is asked whether it is in recovery, so the real primary is
//! found even after a failover (and two writable primaries are reported as
//! the emergency they are).
//!
//! A standby's lag, its RPO contribution, is judged by what it has
//! *received* (flushed to its disk), as Patroni judges a standby: promotion
//! replays everything received, so WAL received but not yet replayed is not
//! data at risk, only time the promotion will take. Two figures per standby:
//!
//! - `lag_s`: the age of the oldest write the primary has that the standby
//!   has not received; 0 when its received position reaches the primary's
//!   current one. A standby that stopped receiving (its link cut, its
//!   receiver stopped) keeps a lag that grows with the clock.
//! - `replay_lag_s`: the age of the oldest write it received but has not
//!   replayed (a paused replay, a long query holding it back).
//!
//! Ages are bounded from above by what the members say, and the tightest
//! bound is taken: the standby's last replayed commit time (the next write
//! came after it), the primary's lag tracker for that standby
//! (`pg_stat_replication`: its lag when it last replied, plus the time
//! since), and the standby's last restartpoint, which every standby has,
//! so a lag is never unknown while the standby answers. A streaming
//! standby a few bytes short of the primary is looked at again for up to
//! half a second: WAL in flight is not a lag.
//!
//! Those bounds over-read after a quiet spell (the last replayed commit
//! may be long before the first write the standby lacks). When the
//! primary has the `pg_walinspect` extension (PostgreSQL 15+; drctl never
//! installs it, `CREATE EXTENSION pg_walinspect` does), the lag is exact
//! instead: the age of the first commit record past the standby's received
//! position, read from the primary's own WAL (and 0 when no commit lies
//! past it: WAL with no committed write is no data at risk).

use crate::{redact, Error};
use drctl_core::status::{Measurement, ReplicaStatus};
use std::time::Duration;
use tokio_postgres::Client;

/// One member of a PostgreSQL datastore as the topology names it.
#[derive(Debug, Clone)]
pub struct Member {
    pub zone: String,
    pub url: String,
    /// Its out-of-band fence (`fence: { command: [...] }`), if any.
    pub fence: Option<Vec<String>>,
}

/// The first line of a `pg_hba.conf` drctl wrote to fence a member.
pub const FENCE_MARK: &str = "# drctl fence:";

/// A write-ahead log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl Lsn {
    pub fn parse(s: &str) -> Option<Lsn> {
        let (hi, lo) = s.split_once('/')?;
        Some(Lsn((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?))
    }
}

/// What one member said.
#[derive(Debug, Clone)]
enum Seen {
    Unreachable(String),
    /// Its `pg_hba.conf` turns client sessions away: an old primary fenced
    /// by a failover (no client can write there).
    Fenced,
    /// The primary's WAL position, and its view of each standby.
    Primary {
        lsn: Lsn,
        standbys: Vec<PrimaryView>,
    },
    Standby(StandbyState),
}

/// One row of the primary's `pg_stat_replication`: where the standby said
/// it was when it last replied, and the primary's lag tracker's ages (as of
/// now: the time since that reply is added).
#[derive(Debug, Clone, Default)]
struct PrimaryView {
    flush: Option<Lsn>,
    replay: Option<Lsn>,
    flush_age: Option<f64>,
    replay_age: Option<f64>,
}

#[derive(Debug, Clone)]
struct StandbyState {
    receive: Option<Lsn>,
    replay: Option<Lsn>,
    /// Seconds since the last replayed transaction committed (standby clock).
    since_last_replay: Option<f64>,
    /// Seconds since the redo point of its last restartpoint (every standby has one).
    since_restartpoint: Option<f64>,
    paused: bool,
    receiver: Option<String>,
}

/// Connects with a timeout, turning driver errors into words.
pub async fn connect(url: &str, timeout: Duration) -> Result<Client, Error> {
    let target = redact(url);
    let how = crate::pg_tls::parse(url).map_err(|why| Error::Connect { target: target.clone(), why })?;
    let tls = crate::pg_tls::connector(&how).map_err(|why| Error::Connect { target: target.clone(), why })?;
    let fut = how.config.connect(tls);
    let (client, connection) = match tokio::time::timeout(timeout, fut).await {
        Err(_) => return Err(Error::Timeout { target, secs: timeout.as_secs_f64() }),
        Ok(Err(e)) if rejected_by_hba(&e) => return Err(Error::Rejected { target, why: explain(&e) }),
        Ok(Err(e)) => return Err(Error::Connect { target, why: explain(&e) }),
        Ok(Ok(pair)) => pair,
    };
    // The connection task ends when the client is dropped; it owns nothing else.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Whether the server turned the session away in `pg_hba.conf` (a fenced
/// member: it answers, but takes no client).
fn rejected_by_hba(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| db.code().code() == "28000" && db.message().contains("pg_hba.conf rejects"))
}

/// A driver error in plain words.
fn explain(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let hint = match db.code().code() {
            "28P01" | "28000" => " (check the user and password in the URL, and pg_hba.conf)",
            "3D000" => " (the database in the URL does not exist)",
            "42501" => " (the user lacks a privilege: grant pg_monitor, or use a superuser)",
            _ => "",
        };
        return format!("{}{hint}", db.message());
    }
    let text = e.to_string();
    let source = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default();
    if source.contains("Connection refused") {
        "connection refused (is the server running and listening there?)".into()
    } else if source.is_empty() {
        text
    } else {
        format!("{text}: {source}")
    }
}

async fn ask(url: &str, timeout: Duration) -> Seen {
    let target = redact(url);
    let result = tokio::time::timeout(timeout, async {
        let q = |what: &str, e: tokio_postgres::Error| query_error(url, what, e);
        let (client, in_recovery) = match open_member(url, timeout).await {
            Err(Error::Rejected { .. }) => return Ok(Seen::Fenced),
            other => other?,
        };
        if !in_recovery {
            // Out of recovery and taking sessions is a primary, whatever
            // `default_transaction_read_only` says: any client can `SET` it off.
            let row =
                client.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.map_err(|e| q("WAL position", e))?;
            let lsn: String = row.get(0);
            let standbys = client
                .query(
                    "SELECT flush_lsn::text, replay_lsn::text,
                            EXTRACT(EPOCH FROM COALESCE(flush_lag, interval '0') + (now() - COALESCE(reply_time, now())))::float8,
                            EXTRACT(EPOCH FROM COALESCE(replay_lag, interval '0') + (now() - COALESCE(reply_time, now())))::float8
                     FROM pg_stat_replication",
                    &[],
                )
                .await
                .map(|rows| {
                    rows.iter()
                        .map(|r| PrimaryView {
                            flush: r.get::<_, Option<String>>(0).as_deref().and_then(Lsn::parse),
                            replay: r.get::<_, Option<String>>(1).as_deref().and_then(Lsn::parse),
                            flush_age: r.get(2),
                            replay_age: r.get(3),
                        })
                        .collect()
                })
                .unwrap_or_default();
            return Ok(Seen::Primary { lsn: Lsn::parse(&lsn).unwrap_or(Lsn(0)), standbys });
        }
        standby_state(&client).await.map(Seen::Standby).map_err(|e| q("replay position", e))
    })
    .await;
    match result {
        Err(_) => Seen::Unreachable(format!("{target}: no answer within {}s", timeout.as_secs_f64())),
        Ok(Err(e)) => Seen::Unreachable(e.to_string()),
        Ok(Ok(seen)) => seen,
    }
}

async fn standby_state(client: &Client) -> Result<StandbyState, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,
                    EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))::float8,
                    pg_is_wal_replay_paused(),
                    (SELECT status FROM pg_stat_wal_receiver LIMIT 1),
                    (SELECT EXTRACT(EPOCH FROM (now() - checkpoint_time))::float8 FROM pg_control_checkpoint())",
            &[],
        )
        .await?;
    Ok(StandbyState {
        receive: row.get::<_, Option<String>>(0).as_deref().and_then(Lsn::parse),
        replay: row.get::<_, Option<String>>(1).as_deref().and_then(Lsn::parse),
        since_last_replay: row.get(2),
        paused: row.get(3),
        receiver: row.get(4),
        since_restartpoint: row.get(5),
    })
}

/// Measures a PostgreSQL datastore: its current primary and each standby's lag.
pub async fn measure(members: &[Member], timeout: Duration) -> Measurement {
    let seen: Vec<Seen> = futures::future::join_all(members.iter().map(|m| ask(&m.url, timeout))).await;
    let primaries: Vec<usize> = (0..members.len()).filter(|&i| matches!(seen[i], Seen::Primary { .. })).collect();
    let primary = match primaries.as_slice() {
        [p] => *p,
        [] => {
            // The dead primary is the first member that is not a standby
            // (after a failover it need not be the first one listed).
            let presumed = seen.iter().position(|s| !matches!(s, Seen::Standby(_))).unwrap_or(0);
            let why = match &seen[presumed] {
                Seen::Unreachable(why) => format!("the primary is unreachable: {why}"),
                _ => "no member accepts writes (every reachable member is in recovery)".to_string(),
            };
            return Measurement {
                primary_zone: None,
                replicas: unreachable_replicas(members, &seen, presumed),
                error: Some(why),
            };
        }
        many => {
            let zones: Vec<&str> = many.iter().map(|&i| members[i].zone.as_str()).collect();
            return Measurement {
                primary_zone: None,
                replicas: Vec::new(),
                error: Some(format!(
                    "{} members in {} all accept writes; fence all but one now",
                    drctl_core::status::SPLIT_BRAIN,
                    zones.join(" and ")
                )),
            };
        }
    };
    let Seen::Primary { lsn: primary_lsn, standbys: ref primary_view } = seen[primary] else {
        unreachable!("chosen as primary")
    };
    let mut replicas = Vec::new();
    for (i, m) in members.iter().enumerate() {
        if i == primary {
            continue;
        }
        let status = match &seen[i] {
            Seen::Unreachable(why) => ReplicaStatus {
                zone: m.zone.clone(),
                healthy: false,
                lag_s: None,
                error: Some(why.clone()),
                detail: None,
                ..Default::default()
            },
            Seen::Fenced => ReplicaStatus {
                zone: m.zone.clone(),
                healthy: false,
                lag_s: None,
                error: Some(format!(
                    "fenced old primary (its pg_hba.conf turns clients away), not replicating: rebuild it as a standby of {} (pg_rewind or pg_basebackup)",
                    members[primary].zone
                )),
                detail: Some("fenced".into()),
                ..Default::default()
            },
            Seen::Primary { .. } => unreachable!("only one primary here"),
            Seen::Standby(s) => {
                standby_status(m, s, &members[primary].url, primary_lsn, primary_view, timeout).await
            }
        };
        replicas.push(status);
    }
    Measurement { primary_zone: Some(members[primary].zone.clone()), replicas, error: None }
}

/// Every member but the presumed (dead) primary, when no primary answers.
/// A standby that answers still has a lag: at most the writes since the
/// last one it replayed (any write it lacks came after that), bounded too
/// by its last restartpoint. It is an upper bound, which the controller
/// tightens with what it saw before the primary went dark
/// (`drctl_control::live::with_evidence`).
fn unreachable_replicas(members: &[Member], seen: &[Seen], presumed_primary: usize) -> Vec<ReplicaStatus> {
    members
        .iter()
        .zip(seen)
        .enumerate()
        .filter(|(i, _)| *i != presumed_primary)
        .map(|(_, (m, s))| match s {
            Seen::Standby(st) => ReplicaStatus {
                zone: m.zone.clone(),
                healthy: false,
                lag_s: [st.since_last_replay, st.since_restartpoint]
                    .into_iter()
                    .flatten()
                    .map(|l| l.max(0.0))
                    .min_by(f64::total_cmp),
                replay_lag_s: match (st.replay, st.receive) {
                    (Some(replay), Some(receive)) if replay < receive => st.since_last_replay,
                    _ => Some(0.0),
                },
                wal: Some(drctl_core::status::WalPositions {
                    primary: "unknown".into(),
                    received: st.receive.map(|l| l.to_string()),
                    replayed: st.replay.map(|l| l.to_string()),
                    streaming: false,
                }),
                error: Some(
                    "its primary does not answer: at most this much is missing (what the primary took after it was last seen is unknown)"
                        .into(),
                ),
                detail: Some("primary dark".into()),
            },
            other => ReplicaStatus {
                zone: m.zone.clone(),
                healthy: false,
                lag_s: None,
                error: match other {
                    Seen::Unreachable(why) => Some(why.clone()),
                    _ => None,
                },
                detail: None,
                ..Default::default()
            },
        })
        .collect()
}

async fn standby_status(
    m: &Member,
    first: &StandbyState,
    primary_url: &str,
    primary_lsn: Lsn,
    primary_view: &[PrimaryView],
    timeout: Duration,
) -> ReplicaStatus {
    let mut s = first.clone();
    let streaming = s.receiver.as_deref() == Some("streaming");
    // WAL in flight is not a lag: a streaming standby a little short of
    // the primary's position is looked at again, for half a second at most.
    if streaming && s.receive.is_some_and(|r| r < primary_lsn) {
        let until = tokio::time::Instant::now() + Duration::from_millis(500);
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match ask(&m.url, timeout).await {
                Seen::Standby(again) if again.receive.is_some_and(|r| r >= primary_lsn) => {
                    s.receive = again.receive;
                    break;
                }
                _ => {}
            }
        }
    }
    let mut lag = received_lag(&s, primary_lsn, primary_view);
    if let (Some(bound), Some(received)) = (lag.filter(|l| *l > 0.0), s.receive) {
        if let Some(exact) = first_commit_past(primary_url, received, primary_lsn, timeout).await {
            lag = Some(exact.min(bound));
        }
    }
    let mut replay_lag = replay_lag(&s, primary_view);
    if replay_lag.is_some_and(|l| l > 1.0) && !s.paused {
        // Replay may just be catching up after an idle period: look again.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Seen::Standby(again) = ask(&m.url, timeout).await {
            if again.replay.is_some_and(|r| s.receive.is_some_and(|received| r >= received)) {
                replay_lag = Some(0.0);
            }
        }
    }
    let mut detail = vec![if streaming {
        "streaming".to_string()
    } else {
        format!("receiver {}", s.receiver.as_deref().unwrap_or("stopped"))
    }];
    if s.paused {
        detail.push("replay paused".into());
    }
    ReplicaStatus {
        zone: m.zone.clone(),
        healthy: streaming,
        lag_s: lag,
        replay_lag_s: replay_lag,
        wal: Some(drctl_core::status::WalPositions {
            primary: primary_lsn.to_string(),
            received: s.receive.map(|l| l.to_string()),
            replayed: s.replay.map(|l| l.to_string()),
            streaming,
        }),
        error: (!streaming)
            .then(|| "not streaming from the primary: what it lacks grows until it receives again".to_string()),
        detail: Some(detail.join(", ")),
    }
}

/// How much WAL past the standby's position is read looking for the first
/// commit: enough for any lag a failover would accept, little enough to
/// read in milliseconds.
const WALINSPECT_WINDOW: u64 = 16 << 20;

/// The WAL records of committed transactions, as `pg_walinspect` names them.
const COMMIT_RECORDS: &str = "resource_manager = 'Transaction' AND record_type IN ('COMMIT', 'COMMIT_PREPARED')";

/// Whether the member has `pg_walinspect` (drctl never installs it).
async fn has_walinspect(client: &Client) -> bool {
    client.query_opt("SELECT 1 FROM pg_extension WHERE extname = 'pg_walinspect'", &[]).await.ok().flatten().is_some()
}

/// The age, on the primary's clock, of the first commit record past
/// `received` in the primary's WAL (0.0 when none lies there), when the
/// primary has `pg_walinspect`; `None` when it cannot tell (no extension,
/// no privilege, the WAL recycled, nothing within the window).
async fn first_commit_past(primary_url: &str, received: Lsn, primary_lsn: Lsn, timeout: Duration) -> Option<f64> {
    let end = Lsn(primary_lsn.0.min(received.0.saturating_add(WALINSPECT_WINDOW)));
    let work = async {
        let client = connect(primary_url, timeout).await.ok()?;
        let has = has_walinspect(&client).await;
        if !has {
            return None;
        }
        // A commit record's description starts with its commit time.
        let row = client
            .query_opt(
                &format!(
                    "SELECT EXTRACT(EPOCH FROM (now() - split_part(description, ';', 1)::timestamptz))::float8
                 FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn)
                 WHERE {COMMIT_RECORDS} ORDER BY start_lsn LIMIT 1"
                ),
                &[&received.to_string(), &end.to_string()],
            )
            .await
            .ok()?;
        match row {
            Some(r) => r.get::<_, Option<f64>>(0).map(|age| age.max(0.0)),
            // No commit in the window: nothing at risk if the window reached
            // the primary's position; unknown otherwise.
            None => (end == primary_lsn).then_some(0.0),
        }
    };
    tokio::time::timeout(timeout, work).await.ok().flatten()
}

/// Seconds of committed writes the standby has not received: 0 when its
/// received position reaches the primary's, else the tightest upper bound
/// on the age of the first write past it (see the module documentation).
fn received_lag(s: &StandbyState, primary_lsn: Lsn, primary_view: &[PrimaryView]) -> Option<f64> {
    if s.receive.is_some_and(|r| r >= primary_lsn) {
        return Some(0.0);
    }
    // The primary's row for this standby, if it still has one, as of the
    // position the standby has now.
    let tracker = primary_view.iter().find(|v| v.flush.is_some() && v.flush == s.receive).and_then(|v| v.flush_age);
    [s.since_last_replay, tracker, s.since_restartpoint]
        .into_iter()
        .flatten()
        .map(|l| l.max(0.0))
        .min_by(f64::total_cmp)
}

/// Seconds the standby's replay is behind what it received: 0 when it
/// replayed everything received.
fn replay_lag(s: &StandbyState, primary_view: &[PrimaryView]) -> Option<f64> {
    match (s.replay, s.receive) {
        (Some(replay), Some(receive)) if replay >= receive => return Some(0.0),
        (Some(_), None) => return Some(0.0),
        _ => {}
    }
    let tracker = primary_view.iter().find(|v| v.replay.is_some() && v.replay == s.replay).and_then(|v| v.replay_age);
    [s.since_last_replay, tracker].into_iter().flatten().map(|l| l.max(0.0)).min_by(f64::total_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_compare_as_positions() {
        assert_eq!(Lsn::parse("0/3000060"), Some(Lsn(0x3000060)));
        assert!(Lsn::parse("1/0").unwrap() > Lsn::parse("0/FFFFFFFF").unwrap());
        assert_eq!(Lsn::parse("nonsense"), None);
    }

    fn standby(receive: u64, replay: u64) -> StandbyState {
        StandbyState {
            receive: Some(Lsn(receive)),
            replay: Some(Lsn(replay)),
            since_last_replay: Some(3600.0),
            since_restartpoint: Some(7200.0),
            paused: false,
            receiver: Some("streaming".into()),
        }
    }

    #[test]
    fn a_standby_that_received_everything_has_no_lag_whatever_its_replay() {
        // Replay far behind (paused, or held by a query): nothing is at risk.
        let s = standby(10, 5);
        assert_eq!(received_lag(&s, Lsn(10), &[]), Some(0.0));
        assert_eq!(replay_lag(&s, &[]), Some(3600.0), "the time it costs is reported beside it");
        assert_eq!(replay_lag(&standby(10, 10), &[]), Some(0.0));
    }

    #[test]
    fn a_standby_short_of_the_primary_has_the_tightest_known_bound_and_never_none() {
        let behind = StandbyState { since_last_replay: Some(7.5), ..standby(5, 5) };
        assert_eq!(received_lag(&behind, Lsn(10), &[]), Some(7.5));
        let view = PrimaryView { flush: Some(Lsn(5)), flush_age: Some(2.0), ..Default::default() };
        assert_eq!(received_lag(&behind, Lsn(10), &[view]), Some(2.0), "the primary's tracker is tighter");
        // Nothing replayed since it started, cut off: its restartpoint still bounds it.
        let fresh = StandbyState { since_last_replay: None, receiver: None, ..standby(5, 5) };
        assert_eq!(received_lag(&fresh, Lsn(10), &[]), Some(7200.0));
    }
}

/// A failed query on a member, in words, without its password.
pub(crate) fn query_error(url: &str, what: &str, e: tokio_postgres::Error) -> Error {
    Error::Query { target: redact(url), what: what.into(), why: explain(&e) }
}

/// Connects to a member and asks whether it is in recovery (a standby).
async fn open_member(url: &str, timeout: Duration) -> Result<(Client, bool), Error> {
    let client = connect(url, timeout).await?;
    let in_recovery =
        client.query_one("SELECT pg_is_in_recovery()", &[]).await.map_err(|e| query_error(url, "role", e))?.get(0);
    Ok((client, in_recovery))
}

/// How a member that answered was fenced.
#[derive(Debug, Clone, PartialEq)]
pub enum Fenced {
    /// It is a standby: it cannot take writes, nothing to do.
    Standby,
    /// It already turns clients away (fenced before, e.g. by a run that crashed).
    Already,
    /// Its client path is closed now: `ended` sessions ended, and a fresh
    /// session could not write. `final_lsn` is the last WAL it flushed,
    /// which the standby must replay before it is promoted.
    Closed { ended: u64, final_lsn: Lsn },
}

impl std::fmt::Display for Fenced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fenced::Standby => f.write_str("a standby: nothing to fence"),
            Fenced::Already => f.write_str("already fenced (pg_hba.conf turns clients away)"),
            Fenced::Closed { ended, final_lsn } => write!(
                f,
                "fenced: pg_hba.conf rejects every client but replication, {ended} session(s) ended, a fresh session cannot write; last WAL {final_lsn}"
            ),
        }
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// The `pg_hba.conf` of a fenced member: its replication lines (the
/// standbys keep streaming the last writes), then a rejection of every
/// other connection. `why` goes in the marker line.
pub fn fenced_hba(original: &str, why: &str) -> String {
    let mut out =
        format!("{FENCE_MARK} {why}\n# The original is kept beside this file as pg_hba.conf.drctl-unfenced.\n");
    for line in original.lines() {
        let mut words = line.split_whitespace();
        let (Some(kind), Some(database)) = (words.next(), words.next()) else { continue };
        if kind.starts_with('#') || kind == "include" || kind.starts_with("include_") {
            continue;
        }
        if database.split(',').any(|d| d.trim_matches('"') == "replication") {
            out.push_str(&line.replace('\t', " "));
            out.push('\n');
        }
    }
    out.push_str("local all all reject\nhost all all all reject\n");
    out
}

/// Writes a file on the server through SQL (`COPY ... TO`, which takes no
/// parameters): the text goes in a dollar-quoted literal whose tag it does
/// not contain, one row per line, in a CSV dialect whose quote and
/// delimiter never occur in text.
async fn write_server_file(client: &Client, path: &str, text: &str) -> Result<(), tokio_postgres::Error> {
    let mut tag = String::from("drctl");
    while text.contains(&format!("${tag}$")) || path.contains(&format!("${tag}$")) {
        tag.push('x');
    }
    // CSV writes an empty line as `""`: a blank line becomes one space
    // (still blank to every config parser).
    let body = text
        .trim_end_matches('\n')
        .split('\n')
        .map(|l| if l.is_empty() { " " } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    client
        .batch_execute(&format!(
            "COPY (SELECT line FROM regexp_split_to_table(${tag}${body}${tag}$, E'\\n') WITH ORDINALITY AS t(line, n) ORDER BY n) \
             TO ${tag}${path}${tag}$ WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')"
        ))
        .await
}

/// Fences a member that answers so that no client can commit a write
/// there, whatever it sets: its `pg_hba.conf` is rewritten to reject every
/// connection but replication, the configuration reloaded, every client
/// session ended, and the fence proven by a write from a fresh session,
/// which must fail. Needs a superuser (or `pg_read_server_files`,
/// `pg_write_server_files` and `pg_signal_backend`). Idempotent.
///
/// `ALTER SYSTEM SET default_transaction_read_only` is not a fence: any
/// session can `SET` it off, `BEGIN READ WRITE` or pass it in `PGOPTIONS`.
pub async fn fence(url: &str, why: &str, timeout: Duration) -> Result<Fenced, Error> {
    let target = redact(url);
    let q = |what: &str, e: tokio_postgres::Error| query_error(url, what, e);
    let (client, in_recovery) = match open_member(url, timeout).await {
        Err(Error::Rejected { .. }) => return Ok(Fenced::Already),
        other => other?,
    };
    if in_recovery {
        return Ok(Fenced::Standby);
    }
    let hba_file: String =
        client.query_one("SHOW hba_file", &[]).await.map_err(|e| q("finding pg_hba.conf", e))?.get(0);
    let original: String = client
        .query_one("SELECT pg_read_file($1)", &[&hba_file])
        .await
        .map_err(|e| q("reading pg_hba.conf (the fence needs a superuser, or pg_read_server_files)", e))?
        .get(0);
    if !original.starts_with(FENCE_MARK) {
        write_server_file(&client, &format!("{hba_file}.drctl-unfenced"), &original)
            .await
            .map_err(|e| q("keeping the original pg_hba.conf (the fence needs pg_write_server_files)", e))?;
        write_server_file(&client, &hba_file, &fenced_hba(&original, why))
            .await
            .map_err(|e| q("writing the fenced pg_hba.conf", e))?;
    }
    let loaded: bool =
        client.query_one("SELECT pg_reload_conf()", &[]).await.map_err(|e| q("reloading its configuration", e))?.get(0);
    if !loaded {
        return Err(Error::Refused(format!("{target}: pg_reload_conf() failed; the fence is not in force")));
    }
    // The postmaster reloads on a signal: wait until it turns a fresh session away.
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match connect(url, timeout).await {
            Err(Error::Rejected { .. }) => break,
            Ok(_) | Err(_) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Refused(format!(
                    "{target} still takes client sessions after its pg_hba.conf was rewritten and reloaded"
                )))
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    // Sessions opened before the reload keep their connection: end them.
    let ended = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| q("ending client sessions", e))?
        .len() as u64;
    // The proof: a fresh session, as any client would open it, cannot write.
    if let Ok(c) = connect(url, timeout).await {
        let wrote = c
            .batch_execute(
                "BEGIN READ WRITE; SET LOCAL default_transaction_read_only = off;
                 CREATE TABLE IF NOT EXISTS drctl_fence_probe (at timestamptz); INSERT INTO drctl_fence_probe VALUES (now()); COMMIT",
            )
            .await;
        if wrote.is_ok() {
            return Err(Error::Refused(format!("{target} still accepts writes from a fresh session after fencing")));
        }
    }
    // Everything acknowledged is flushed by now; the standby must replay up to here.
    let row = client
        .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
        .await
        .map_err(|e| q("reading its last WAL position", e))?;
    let final_lsn = Lsn::parse(row.get::<_, &str>(0)).unwrap_or(Lsn(0));
    Ok(Fenced::Closed { ended, final_lsn })
}

/// Waits until the standby at `url` has replayed up to `lsn` (the fenced
/// old primary's last WAL); returns how long it took, or an error past `within`.
pub async fn wait_replayed(url: &str, lsn: Lsn, within: Duration) -> Result<Duration, Error> {
    let target = redact(url);
    let started = tokio::time::Instant::now();
    let client = connect(url, within.max(Duration::from_secs(1))).await?;
    loop {
        let row = client
            .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
            .await
            .map_err(|e| query_error(url, "replay position", e))?;
        let replayed = row.get::<_, Option<&str>>(0).and_then(Lsn::parse);
        if replayed.is_some_and(|r| r >= lsn) {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= within {
            return Err(Error::Refused(format!(
                "{target} replayed only up to {} of the old primary's {lsn} within {}s (failover.catch_up)",
                replayed.map_or("nothing".into(), |r| r.to_string()),
                within.as_secs_f64()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the standby has replayed everything it received and no
/// more WAL arrived for half a second: the catch-up when the old primary's
/// last position cannot be read (it was fenced by an earlier attempt).
pub async fn wait_settled(url: &str, within: Duration) -> Result<(Lsn, Duration), Error> {
    let started = tokio::time::Instant::now();
    let client = connect(url, within.max(Duration::from_secs(1))).await?;
    let mut last: Option<(Lsn, tokio::time::Instant)> = None;
    loop {
        let s = standby_state(&client).await.map_err(|e| query_error(url, "replay position", e))?;
        let (Some(receive), Some(replay)) = (s.receive, s.replay) else {
            return Err(Error::Refused(format!("{} is not a streaming standby", redact(url))));
        };
        let now = tokio::time::Instant::now();
        if replay >= receive {
            match last {
                Some((seen, since)) if seen == receive && now - since >= Duration::from_millis(500) => {
                    return Ok((replay, started.elapsed()))
                }
                Some((seen, _)) if seen == receive => {}
                _ => last = Some((receive, now)),
            }
        } else {
            last = None;
        }
        if started.elapsed() >= within {
            return Err(Error::Refused(format!(
                "{} did not finish replaying what it received within {}s (failover.catch_up)",
                redact(url),
                within.as_secs_f64()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a member answers at all (for the preflight: a member that
/// does not must have a `fence` command). A fenced member answers.
pub async fn answers(url: &str, timeout: Duration) -> Result<bool, String> {
    match open_member(url, timeout).await {
        Ok(_) | Err(Error::Rejected { .. }) => Ok(true),
        Err(Error::Connect { why, .. }) => Err(why),
        Err(Error::Timeout { secs, .. }) => Err(format!("no answer within {secs}s")),
        Err(e) => Err(e.to_string()),
    }
}

/// How far a member's clock is ahead of this machine's, in seconds: its
/// `clock_timestamp()` against the middle of the round trip that read it.
/// Readiness compares the members' offsets (clocks apart skew lag figures).
pub async fn clock_offset(url: &str, timeout: Duration) -> Result<f64, Error> {
    let client = connect(url, timeout).await?;
    let before = std::time::SystemTime::now();
    let row =
        tokio::time::timeout(timeout, client.query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[]))
            .await
            .map_err(|_| Error::Timeout { target: redact(url), secs: timeout.as_secs_f64() })?
            .map_err(|e| query_error(url, "clock", e))?;
    let after = std::time::SystemTime::now();
    let theirs: f64 = row.get(0);
    let epoch = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    Ok(theirs - (epoch(before) + epoch(after)) / 2.0)
}

/// Whether a member answers and is out of recovery: a primary that takes
/// writes (a fenced one turns the session away). Writes nothing.
pub async fn is_open_primary(url: &str, timeout: Duration) -> bool {
    matches!(tokio::time::timeout(timeout, open_member(url, timeout)).await, Ok(Ok((_, false))))
}

/// Promotes a standby to primary and waits until it accepts writes.
/// Idempotent: a member that is already primary is left as it is.
pub async fn promote(url: &str, timeout: Duration) -> Result<String, Error> {
    let target = redact(url);
    let q = |what: &str, e: tokio_postgres::Error| query_error(url, what, e);
    let (client, in_recovery) = open_member(url, timeout).await?;
    if !in_recovery {
        return Ok("already primary".into());
    }
    // Where the new timeline forks from the old primary's WAL: what the old
    // primary wrote past it, should it come back, the new one lacks.
    let fork: Option<String> = client
        .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
        .await
        .map_err(|e| q("reading its replay position", e))?
        .get(0);
    let wait = timeout.as_secs().clamp(1, 3600) as i32;
    let promoted: bool =
        client.query_one("SELECT pg_promote(true, $1)", &[&wait]).await.map_err(|e| q("promoting", e))?.get(0);
    if !promoted {
        return Err(Error::Refused(format!("{target} did not finish promoting within {wait}s")));
    }
    // drctl before 0.4 fenced with this setting; a member rebuilt from such
    // a primary must not stay read-only once promoted.
    client
        .batch_execute("ALTER SYSTEM RESET default_transaction_read_only")
        .await
        .map_err(|e| q("lifting read-only", e))?;
    client.batch_execute("SELECT pg_reload_conf()").await.map_err(|e| q("reloading its configuration", e))?;
    Ok(match fork {
        Some(lsn) => format!("{PROMOTED_AT}{lsn}"),
        None => "promoted".into(),
    })
}

/// How a promote step's note begins, before the position the new timeline
/// forked at.
pub const PROMOTED_AT: &str = "promoted at ";

/// What a member that answers as a writable primary holds past `fork`: the
/// bytes of WAL, and the commits among them when it has `pg_walinspect`
/// (within 256 MiB of WAL). `None` when it is not a writable primary (a
/// standby, fenced, or down).
pub async fn wal_past(url: &str, fork: Lsn, timeout: Duration) -> Option<(u64, Option<u64>)> {
    let work = async {
        let (client, in_recovery) = open_member(url, timeout).await.ok()?;
        if in_recovery {
            return None;
        }
        let lsn: String = client.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.ok()?.get(0);
        let end = Lsn::parse(&lsn)?;
        if end <= fork {
            return Some((0, Some(0)));
        }
        let bytes = end.0 - fork.0;
        let has = has_walinspect(&client).await;
        let commits = if has && bytes <= 256 << 20 {
            client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn) WHERE {COMMIT_RECORDS}"
                    ),
                    &[&fork.to_string(), &lsn],
                )
                .await
                .ok()
                .map(|r| r.get::<_, i64>(0).max(0) as u64)
        } else {
            None
        };
        Some((bytes, commits))
    };
    tokio::time::timeout(timeout, work).await.ok().flatten()
}

/// What the preflight learns about a standby about to be promoted.
#[derive(Debug, Clone, PartialEq)]
pub enum LagCheck {
    /// Measured against a reachable primary: seconds behind.
    Measured(f64),
    /// The primary does not answer (the disaster itself): only history can tell.
    PrimaryUnreachable,
    /// The standby itself does not answer: it cannot be promoted.
    StandbyUnreachable(String),
    /// The member is not a standby (a fenced old primary): promoting it
    /// would discard every write made since it stopped replicating.
    NotAStandby(String),
}

/// A standby's lag right now, for the preflight's `max_lag` check, with
/// the measurement it was read from (evidence for later judgements).
pub async fn standby_lag(members: &[Member], zone: &str, timeout: Duration) -> (LagCheck, Measurement) {
    let m = measure(members, timeout).await;
    let check = lag_check(&m, zone);
    (check, m)
}

fn lag_check(m: &Measurement, zone: &str) -> LagCheck {
    let replica = m.replicas.iter().find(|r| r.zone == zone);
    match (&m.error, replica) {
        (_, None) => LagCheck::StandbyUnreachable(format!("no member in {zone}")),
        (_, Some(r)) if r.detail.as_deref() == Some("fenced") => {
            LagCheck::NotAStandby(r.error.clone().unwrap_or_default())
        }
        (_, Some(r)) if r.error.as_deref().is_some_and(|e| e.contains("cannot connect") || e.contains("no answer")) => {
            LagCheck::StandbyUnreachable(r.error.clone().unwrap_or_default())
        }
        (Some(_), Some(_)) => LagCheck::PrimaryUnreachable,
        (None, Some(r)) => r.lag_s.map_or(LagCheck::PrimaryUnreachable, LagCheck::Measured),
    }
}
