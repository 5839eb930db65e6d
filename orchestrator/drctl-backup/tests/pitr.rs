//! Backups and point-in-time restores with real PostgreSQL and real
//! pgBackRest: what was committed before the point comes back, what was
//! committed after it does not.

use drctl_backup::restore::{self, Request};
use drctl_backup::{pg_datastore, pgbackrest::Kind, Error};
use drctl_engine::Ended;
use drctl_state::State;
use drctl_testkit::PgPair;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn have_pgbackrest() -> bool {
    drctl_backup::pgbackrest::find().is_ok()
}

/// A folder for the backup site and the repository, given to postgres.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drctl-backup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    drctl_pgserver::hand_over(&dir).unwrap();
    dir
}

fn topology(pair: &PgPair, dir: &Path) -> drctl_core::Topology {
    let src = format!(
        "version: 1\nname: shop\nzones:\n  - {{ name: az1, region: r1 }}\n  - {{ name: az2, region: r1 }}\n  - {{ name: az3, region: r1 }}\n\
         objectives:\n  tier-0: {{ rpo: 5s, rto: 2m, restore: {{ rpo: 1h, rto: 1h }} }}\n\
         datastores:\n  - name: orders-db\n    kind: postgres\n    tier: tier-0\n    primary: {{ zone: az1, url: \"{}\" }}\n    replicas: [ {{ zone: az2, url: \"{}\" }} ]\n\
         \x20   backup: {{ tool: pgbackrest, repo: {{ zone: az3, path: {} }}, full: \"0 3 * * 0\", retention: 7d }}\n",
        pair.primary_url(),
        pair.standby_url(),
        dir.join("repo").display()
    );
    let path = dir.join("drctl.yaml");
    std::fs::write(&path, &src).unwrap();
    let loaded = drctl_core::load(&path);
    loaded.topology.unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics))
}

/// Turns archive_mode on (a restart, as an operator would), leaving
/// archive_command for drctl to set.
fn archive_mode_on(pair: &PgPair) {
    pair.psql(pair.primary_port, "ALTER SYSTEM SET archive_mode = on");
    let data = pair.dir.join("primary");
    let out = drctl_pgserver::command(&pair.bin(), "pg_ctl", drctl_pgserver::Lifetime::Independent)
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(pair.dir.join("primary.log"))
        .args(["-w", "-m", "fast", "restart"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn run_restore(
    topo: &drctl_core::Topology,
    site: &Path,
    state: &Arc<State>,
    to: &str,
) -> (String, Request, Ended) {
    let p =
        restore::propose(topo, site, &**state, "orders-db", to, None, false, false, SystemTime::now()).await.unwrap();
    restore::create(&**state, &p, "test", SystemTime::now()).unwrap();
    let ended = restore::execute(
        Arc::new(topo.clone()),
        site.to_path_buf(),
        state.clone(),
        Arc::new(drctl_runtime::SystemClock),
        &p.id,
    )
    .await
    .unwrap();
    (p.id.clone(), p.request, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_to_a_time_between_two_inserts_has_the_first_and_not_the_second() {
    if !have_pgbackrest() {
        panic!("pgBackRest is needed for this test: {}", drctl_backup::pgbackrest::INSTALL_HINT);
    }
    let pair = PgPair::start();
    let dir = scratch("pitr");
    let topo = topology(&pair, &dir);
    let site = dir.join("site");
    let ds = pg_datastore(&topo, "orders-db").unwrap();

    // Archiving off: refused, with the exact settings to apply.
    let err = drctl_backup::take_backup(&site, &ds, Kind::Full).await.unwrap_err();
    let Error::ArchivingOff { settings, .. } = &err else { panic!("{err}") };
    assert!(settings.contains("ALTER SYSTEM SET archive_mode = 'on'"), "{settings}");
    assert!(settings.contains("archive-push %p"), "{settings}");

    archive_mode_on(&pair);
    pair.psql(pair.primary_port, "CREATE TABLE orders (id int, at timestamptz DEFAULT clock_timestamp())");
    let full = drctl_backup::take_backup(&site, &ds, Kind::Full).await.unwrap();
    assert_eq!(full.kind, "full");
    // drctl set archive_command itself, pointing at its own stanza.
    let cmd = pair.psql(pair.primary_port, "SHOW archive_command");
    assert!(cmd.contains("--stanza=orders-db") && cmd.contains("archive-push"), "{cmd}");
    // The repository is encrypted.
    let conf = std::fs::read_to_string(site.join("pgbackrest/orders-db.conf")).unwrap();
    assert!(conf.contains("repo1-cipher-type=aes-256-cbc"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(site.join("keys/orders-db.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    pair.psql(pair.primary_port, "INSERT INTO orders (id) VALUES (1)");
    // The point: after the first commit, before the second, on the database's clock.
    let point = pair.psql(
        pair.primary_port,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    pair.psql(pair.primary_port, "INSERT INTO orders (id) VALUES (2)");
    let first_commit: f64 =
        pair.psql(pair.primary_port, "SELECT extract(epoch FROM at) FROM orders WHERE id = 1").parse().unwrap();

    let state = State::in_memory().unwrap();
    let (id, req, ended) = run_restore(&topo, &site, &state, &point).await;
    assert_eq!(ended, Ended::Succeeded, "{:#?}", state.steps(&id).unwrap());
    let copy = restore::copy_of(&site, &req);
    let url = copy.tcp_url("postgres", "postgres").unwrap();
    assert_ne!(req.port, pair.primary_port);
    let c = drctl_providers::postgres::connect(&url, Duration::from_secs(10)).await.unwrap();
    let ids: Vec<i32> =
        c.query("SELECT id FROM orders ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [1], "the row committed before the point is back, the one after is not");
    // The copy is promoted and does not archive into the production repository.
    let row = c.query_one("SELECT pg_is_in_recovery(), current_setting('archive_mode')", &[]).await.unwrap();
    assert!(!row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "off");
    let done = restore::restored(&site, &req).unwrap();
    let recovered = done.recovered_point.unwrap();
    // The newest data in the copy is the first insert (a few µs of timestamp default vs commit).
    assert!((recovered - first_commit).abs() < 0.5, "recovered {recovered}, first commit {first_commit}");
    copy.remove();

    // `latest`: a row committed just now comes back (the segment is
    // closed and archived first).
    pair.psql(pair.primary_port, "INSERT INTO orders (id) VALUES (3)");
    let (id, req, ended) = run_restore(&topo, &site, &state, "latest").await;
    assert_eq!(ended, Ended::Succeeded, "{:#?}", state.steps(&id).unwrap());
    let copy = restore::copy_of(&site, &req);
    let c = drctl_providers::postgres::connect(&copy.tcp_url("postgres", "postgres").unwrap(), Duration::from_secs(10))
        .await
        .unwrap();
    let n: i64 = c.query_one("SELECT count(*) FROM orders", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
    copy.remove();

    // A point before the first backup is refused before anything happens.
    let err = restore::propose(
        &topo,
        &site,
        &*state,
        "orders-db",
        "2020-01-01T00:00:00Z",
        None,
        false,
        false,
        SystemTime::now(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("before the earliest restorable point"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
