//! The PostgreSQL provider against a real primary and streaming standby.

use drctl_providers::postgres::{measure, Member};
use drctl_testkit::PgPair;
use std::time::{Duration, Instant};

fn members(pg: &PgPair) -> Vec<Member> {
    vec![
        Member { zone: "az1".into(), url: pg.primary_url(), fence: None },
        Member { zone: "az2".into(), url: pg.standby_url(), fence: None },
    ]
}

/// Commits one row per 100 ms on the primary for `secs` seconds.
async fn write_for(url: &str, secs: f64) {
    let client = drctl_providers::postgres::connect(url, Duration::from_secs(5)).await.unwrap();
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS t (id serial primary key, at timestamptz default now())")
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        client.execute("INSERT INTO t DEFAULT VALUES", &[]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rpo_is_about_zero_and_replay_lag_about_n_after_n_seconds_of_paused_replay() {
    let pg = PgPair::start();
    let m = members(&pg);
    write_for(&pg.primary_url(), 0.5).await;
    pg.wait_replayed();

    let caught_up = measure(&m, Duration::from_secs(5)).await;
    assert_eq!(caught_up.error, None);
    assert_eq!(caught_up.primary_zone.as_deref(), Some("az1"));
    let r = &caught_up.replicas[0];
    assert!(r.healthy, "{r:?}");
    assert!(r.lag_s.unwrap() < 1.0, "caught up: {r:?}");

    pg.psql(pg.standby_port, "SELECT pg_wal_replay_pause()");
    write_for(&pg.primary_url(), 4.0).await;
    let paused = measure(&m, Duration::from_secs(5)).await;
    let r = &paused.replicas[0];
    // Received (on its disk) but not replayed: promotion would replay it,
    // so nothing is at risk; the replay lag is what it costs in time.
    let lag = r.lag_s.unwrap();
    assert!(lag < 1.0, "the link is up, everything was received: RPO {lag}s ({r:?})");
    let replay = r.replay_lag_s.unwrap();
    assert!((3.0..=5.0).contains(&replay), "4s of writes with replay paused: replay lag {replay}s ({r:?})");
    assert!(r.healthy, "still streaming: {r:?}");
    assert!(r.detail.as_deref().unwrap().contains("replay paused"));

    pg.psql(pg.standby_port, "SELECT pg_wal_replay_resume()");
    pg.wait_replayed();
    let resumed = measure(&m, Duration::from_secs(5)).await;
    assert!(resumed.replicas[0].lag_s.unwrap() < 1.0, "{:?}", resumed.replicas[0]);
    assert!(resumed.replicas[0].replay_lag_s.unwrap() < 1.0, "{:?}", resumed.replicas[0]);
}

/// A standby cut off from its primary while the primary keeps committing:
/// what it lacks is reported, and grows with the writes it misses; it is
/// marked not streaming, and it is the RPO (the best a failover could
/// promote), never "unknown". Healed, it catches up to about 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_cut_off_from_its_primary_reports_a_growing_rpo() {
    let pg = PgPair::start_with_cuttable_link();
    let m = members(&pg);
    write_for(&pg.primary_url(), 0.5).await;
    pg.wait_replayed();
    let before = measure(&m, Duration::from_secs(5)).await;
    assert!(before.replicas[0].lag_s.unwrap() < 1.0, "{:?}", before.replicas[0]);

    pg.cut_link();
    write_for(&pg.primary_url(), 3.0).await;
    let cut = measure(&m, Duration::from_secs(5)).await;
    assert_eq!(cut.error, None, "the primary answers");
    let r = &cut.replicas[0];
    let lag = r.lag_s.expect("a cut-off standby still has a lag");
    assert!((2.0..=4.5).contains(&lag), "3s of writes it did not receive read {lag}s ({r:?})");
    assert!(!r.healthy, "{r:?}");
    assert!(!r.wal.as_ref().unwrap().streaming, "marked not streaming: {r:?}");
    assert_eq!(drctl_core::status::rpo_of(&cut.replicas), Some(lag), "it is the RPO");

    write_for(&pg.primary_url(), 2.0).await;
    let later = measure(&m, Duration::from_secs(5)).await;
    let grown = later.replicas[0].lag_s.unwrap();
    assert!((4.0..=6.5).contains(&grown) && grown > lag, "5s of missed writes read {grown}s (was {lag}s)");

    pg.restore_link();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let healed = measure(&m, Duration::from_secs(5)).await;
        let r = &healed.replicas[0];
        if r.healthy && r.lag_s.is_some_and(|l| l < 1.0) {
            break;
        }
        assert!(Instant::now() < until, "the healed standby did not catch up: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A standby cut off after a quiet spell: its last replayed commit is long
/// before the first write it lacks, so the bounds alone would read the
/// quiet spell as lag. With `pg_walinspect` on the primary, the lag is the
/// age of the first commit past what the standby received: exact.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_quiet_spell_a_cut_off_standby_reads_the_writes_it_missed_not_the_quiet() {
    let pg = PgPair::start_with_cuttable_link();
    pg.psql(pg.primary_port, "CREATE EXTENSION pg_walinspect");
    let m = members(&pg);
    write_for(&pg.primary_url(), 0.3).await;
    pg.wait_replayed();
    // The quiet spell, then the cut: nothing the standby lacks yet.
    tokio::time::sleep(Duration::from_secs(5)).await;
    pg.cut_link();
    let quiet = measure(&m, Duration::from_secs(5)).await;
    assert!(quiet.replicas[0].lag_s.unwrap() < 1.0, "nothing written since the cut: {:?}", quiet.replicas[0]);
    write_for(&pg.primary_url(), 3.0).await;
    let cut = measure(&m, Duration::from_secs(5)).await;
    let r = &cut.replicas[0];
    let lag = r.lag_s.unwrap();
    assert!((2.5..=4.0).contains(&lag), "3 s of missed writes after 5 s of quiet read {lag}s ({r:?})");
    assert!(!r.healthy, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_primary_reads_zero_not_the_age_of_the_last_write() {
    let pg = PgPair::start();
    write_for(&pg.primary_url(), 0.3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = measure(&members(&pg), Duration::from_secs(5)).await;
    assert!(m.replicas[0].lag_s.unwrap() < 1.0, "idle for 3s: {:?}", m.replicas[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_members_are_errors_not_crashes() {
    let pg = PgPair::start();
    let mut m = members(&pg);
    m.push(Member {
        zone: "az3".into(),
        url: format!("postgres://postgres:hunter2@127.0.0.1:{}/postgres", drctl_testkit::free_port()),
        fence: None,
    });
    let got = measure(&m, Duration::from_secs(3)).await;
    assert_eq!(got.error, None, "the primary is fine");
    let dead = got.replicas.iter().find(|r| r.zone == "az3").unwrap();
    assert!(!dead.healthy);
    let why = dead.error.as_deref().unwrap();
    assert!(why.contains("connection refused"), "{why}");
    assert!(!why.contains("hunter2"), "a password leaked: {why}");

    pg.kill_primary();
    let got = measure(&members(&pg), Duration::from_secs(3)).await;
    assert!(got.error.as_deref().unwrap().starts_with("the primary is unreachable"), "{got:?}");
    // The standby answers: it still has a lag (a bound), never "unknown".
    let standby = &got.replicas[0];
    assert!(standby.lag_s.is_some(), "a standby that answers has a lag: {standby:?}");
    assert!(!standby.healthy && standby.detail.as_deref() == Some("primary dark"), "{standby:?}");
    assert!(standby.wal.as_ref().unwrap().received.is_some(), "{standby:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_standby_is_found_as_primary_and_two_primaries_are_split_brain() {
    let pg = PgPair::start();
    pg.psql(pg.standby_port, "SELECT pg_promote(true, 30)");
    let got = measure(&members(&pg), Duration::from_secs(3)).await;
    assert!(got.error.as_deref().unwrap().starts_with("split brain: members in az1 and az2"), "{got:?}");
    pg.kill_primary();
    let got = measure(&members(&pg), Duration::from_secs(3)).await;
    assert_eq!(got.primary_zone.as_deref(), Some("az2"), "{got:?}");
    assert!(!got.replicas[0].healthy);
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_lag_counts_from_the_first_unreplayed_write_not_from_an_idle_period_before_it() {
    let pg = PgPair::start();
    write_for(&pg.primary_url(), 0.3).await;
    // Idle for a while, then replay pauses and the primary commits for 4 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    pg.psql(pg.standby_port, "SELECT pg_wal_replay_pause()");
    write_for(&pg.primary_url(), 4.0).await;
    let m = measure(&members(&pg), Duration::from_secs(5)).await;
    let r = &m.replicas[0];
    let replay = r.replay_lag_s.unwrap();
    assert!((3.0..=5.0).contains(&replay), "4 s of unreplayed writes after 6 s idle read {replay}s ({r:?})");
    assert!(r.lag_s.unwrap() < 1.0, "all of it was received: {r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_that_is_not_streaming_is_unhealthy() {
    let pg = PgPair::start();
    let dead = drctl_testkit::free_port();
    pg.psql(
        pg.standby_port,
        &format!("ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port={dead} user=postgres'"),
    );
    pg.psql(pg.standby_port, "SELECT pg_reload_conf()");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = measure(&members(&pg), Duration::from_secs(5)).await;
        let r = &m.replicas[0];
        if !r.healthy {
            assert!(r.error.as_deref().unwrap().starts_with("not streaming from the primary"), "{r:?}");
            assert!(r.lag_s.is_some(), "it still has a lag: {r:?}");
            assert!(!r.detail.as_deref().unwrap().starts_with("streaming"), "{r:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the standby kept streaming with a dead primary_conninfo: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every way a client could get past an advisory read-only setting fails
/// against the fence: a session opened before it is ended, and fresh
/// sessions (with `SET`, `BEGIN READ WRITE` or `PGOPTIONS`) are turned away.
#[tokio::test(flavor = "multi_thread")]
async fn no_client_can_write_past_the_fence_whatever_it_sets() {
    use drctl_providers::postgres::{connect, fence, Fenced};
    let pg = PgPair::start();
    let before = connect(&pg.primary_url(), Duration::from_secs(5)).await.unwrap();
    before.batch_execute("CREATE TABLE orders (id int)").await.unwrap();

    let hba = pg.dir.join("primary/pg_hba.conf");
    let original = std::fs::read_to_string(&hba).unwrap();
    let fenced = fence(&pg.primary_url(), "test", Duration::from_secs(5)).await.unwrap();
    let Fenced::Closed { ended, .. } = fenced else { panic!("not closed: {fenced:?}") };
    // The original is kept, line for line, to lift the fence by hand if ever needed.
    let kept = std::fs::read_to_string(pg.dir.join("primary/pg_hba.conf.drctl-unfenced")).unwrap();
    let lines = |t: &str| t.lines().map(|l| l.trim().to_string()).collect::<Vec<_>>();
    assert_eq!(lines(&kept), lines(&original));
    assert!(std::fs::read_to_string(&hba).unwrap().starts_with("# drctl fence: test"));
    assert!(ended >= 1, "the session opened before the fence was ended");
    assert!(before.batch_execute("INSERT INTO orders VALUES (1)").await.is_err(), "an old session wrote");

    let opts = format!("{}?options=-c%20default_transaction_read_only%3Doff", pg.primary_url());
    for (how, url, sql) in [
        ("SET", pg.primary_url(), "SET default_transaction_read_only = off; INSERT INTO orders VALUES (2)"),
        ("BEGIN READ WRITE", pg.primary_url(), "BEGIN READ WRITE; INSERT INTO orders VALUES (3); COMMIT"),
        ("PGOPTIONS", opts, "INSERT INTO orders VALUES (4)"),
    ] {
        let wrote = match connect(&url, Duration::from_secs(5)).await {
            Ok(c) => c.batch_execute(sql).await.is_ok(),
            Err(e) => {
                assert!(e.to_string().contains("turns sessions away"), "{how}: {e}");
                false
            }
        };
        assert!(!wrote, "a fresh session wrote past the fence with {how}");
    }
    // Idempotent: fencing again sees the fence and changes nothing.
    assert_eq!(fence(&pg.primary_url(), "again", Duration::from_secs(5)).await.unwrap(), Fenced::Already);
    // The standby still streams from it, and says it replicates.
    let m = measure(&members(&pg), Duration::from_secs(3)).await;
    assert!(m.error.as_deref().unwrap_or("").contains("no member accepts writes"), "{m:?}");
}

/// A fenced primary's last writes reach the standby before it is promoted:
/// with replay paused, writes pile up; after the fence the standby replays
/// up to the fenced primary's final WAL position, and every acknowledged
/// row is there.
#[tokio::test(flavor = "multi_thread")]
async fn after_the_fence_the_standby_catches_up_with_every_acknowledged_write() {
    use drctl_providers::postgres::{connect, fence, promote, wait_replayed, Fenced};
    let pg = PgPair::start();
    let c = connect(&pg.primary_url(), Duration::from_secs(5)).await.unwrap();
    c.batch_execute("CREATE TABLE acked (id int PRIMARY KEY)").await.unwrap();
    pg.wait_replayed();
    pg.psql(pg.standby_port, "SELECT pg_wal_replay_pause()");
    for i in 0..500 {
        c.execute("INSERT INTO acked VALUES ($1)", &[&i]).await.unwrap();
    }
    let Fenced::Closed { final_lsn, .. } = fence(&pg.primary_url(), "test", Duration::from_secs(5)).await.unwrap()
    else {
        panic!("not closed")
    };
    let lagging = wait_replayed(&pg.standby_url(), final_lsn, Duration::from_millis(300)).await;
    assert!(lagging.is_err(), "replay is paused: the catch-up must not pass");
    pg.psql(pg.standby_port, "SELECT pg_wal_replay_resume()");
    wait_replayed(&pg.standby_url(), final_lsn, Duration::from_secs(30)).await.unwrap();
    promote(&pg.standby_url(), Duration::from_secs(30)).await.unwrap();
    assert_eq!(pg.psql(pg.standby_port, "SELECT count(*) FROM acked"), "500", "an acknowledged write was lost");
}

/// `default_transaction_read_only = on` does not stop writes, so a member
/// with it set is a primary to `status`: two of them are split brain.
#[tokio::test(flavor = "multi_thread")]
async fn an_advisory_read_only_primary_beside_the_new_one_is_split_brain() {
    let pg = PgPair::start();
    pg.psql(pg.primary_port, "ALTER SYSTEM SET default_transaction_read_only = on");
    pg.psql(pg.primary_port, "SELECT pg_reload_conf()");
    pg.psql(pg.standby_port, "SELECT pg_promote(true, 30)");
    let got = measure(&members(&pg), Duration::from_secs(3)).await;
    assert!(got.error.as_deref().unwrap_or("").starts_with("split brain"), "{got:?}");
}

/// Whether the session `url` opens is encrypted, as the server sees it.
async fn encrypted(url: &str) -> Result<bool, String> {
    let client = drctl_providers::postgres::connect(url, Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
    let row = client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap();
    Ok(row.get(0))
}

/// A server that refuses unencrypted sessions (as RDS for PostgreSQL 15
/// does by default) is reached over TLS; the certificate is checked as
/// `sslmode` says; a certificate from another CA, or for another name
/// under verify-full, is refused.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_over_tls_checks_the_certificate_as_sslmode_says() {
    let pg = PgPair::start();
    let ca = drctl_testkit::TestCa::new(&pg.dir);
    pg.require_tls(&ca);
    let other_dir = pg.dir.join("other-ca");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = drctl_testkit::TestCa::new(&other_dir);
    let (port, root, wrong) =
        (pg.primary_port, ca.dir.join("ca.pem").display().to_string(), other.dir.join("ca.pem").display().to_string());
    let url = |host: &str, q: &str| format!("postgres://postgres@{host}:{port}/postgres?{q}");

    let err = encrypted(&url("127.0.0.1", "sslmode=disable")).await.unwrap_err();
    assert!(err.contains("no encryption"), "the server refuses clear text: {err}");
    assert_eq!(encrypted(&url("127.0.0.1", "")).await, Ok(true), "prefer, the default, encrypts when offered");
    assert_eq!(encrypted(&url("127.0.0.1", "sslmode=require")).await, Ok(true));
    assert_eq!(encrypted(&url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={root}"))).await, Ok(true));
    // The certificate names 127.0.0.1, not localhost: only the name check minds.
    assert_eq!(encrypted(&url("localhost", &format!("sslmode=verify-ca&sslrootcert={root}"))).await, Ok(true));
    let err = encrypted(&url("localhost", &format!("sslmode=verify-full&sslrootcert={root}"))).await.unwrap_err();
    assert!(err.to_lowercase().contains("name"), "another name under verify-full: {err}");
    for mode in ["verify-ca", "verify-full", "require"] {
        let err = encrypted(&url("127.0.0.1", &format!("sslmode={mode}&sslrootcert={wrong}"))).await.unwrap_err();
        assert!(err.contains("invalid peer certificate"), "{mode} with another CA: {err}");
    }
    // The measurement reaches the TLS-only primary through the same path.
    let m = measure(
        &[
            Member {
                zone: "az1".into(),
                url: url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={root}")),
                fence: None,
            },
            Member { zone: "az2".into(), url: pg.standby_url(), fence: None },
        ],
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(m.error, None, "{m:?}");
    assert_eq!(m.primary_zone.as_deref(), Some("az1"));
}
