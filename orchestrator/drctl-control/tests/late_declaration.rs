//! A person declares a zone lost long after its primary died, against a
//! real PostgreSQL pair: the declaration is judged on what the standby
//! lacked when the primary was last seen answering, from the samples a
//! controller recorded, not on how old those samples are.
//!
//! The samples are real (taken with the machine's clock); the declaration
//! is made on a clock 30 s ahead of it, as a person declaring 30 s after
//! the primary died would, without waiting 30 s.

use drctl_control::declare::{Actor, Declarer, IncidentPolicy, Recorded};
use drctl_control::failover::Declaration;
use drctl_control::live::{self, Clients};
use drctl_engine::Ended;
use drctl_state::State;
use drctl_testkit::PgPair;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn topology(pg: &PgPair, fence: &[String]) -> drctl_core::Topology {
    let yaml = format!(
        "version: 1
zones: [ {{ name: az1, region: r1 }}, {{ name: az2, region: r1 }} ]
objectives: {{ tier-0: {{ rpo: 5s, rto: 2m }} }}
datastores:
  - name: orders-db
    kind: postgres
    primary:  {{ zone: az1, url: \"{}\", fence: {{ command: {} }} }}
    replicas: [ {{ zone: az2, url: \"{}\" }} ]
    failover: {{ max_lag: 10s }}
services:
  - {{ name: shop, tier: tier-0, zones: [az1, az2], depends_on: [orders-db] }}
",
        pg.primary_url(),
        serde_json::to_string(fence).unwrap(),
        pg.standby_url()
    );
    let loaded = drctl_core::load_str(&yaml, std::path::Path::new("drctl.yaml"));
    loaded.topology.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics))
}

/// One sample, as `serve`'s sampler takes it.
async fn sample(clients: &Clients, topo: &drctl_core::Topology, state: &State) {
    let at = SystemTime::now();
    let report = live::status(clients, topo, &state.placements().unwrap(), at).await;
    live::record(state, &report, at).unwrap();
}

fn declaration() -> Declaration {
    Declaration {
        zones: vec!["az1".into()],
        regions: vec![],
        targets: vec![],
        reason: "az1 lost; declared 30 s later".into(),
        overrides: Default::default(),
        parallel: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_killed_and_declared_30_s_later_fails_over_without_an_override() {
    let pg = PgPair::start();
    let dir = std::env::temp_dir().join(format!("drctl-late-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let topo = Arc::new(topology(&pg, &pg.power_off_primary_command(&dir.join("fence.env"))));
    let state = State::in_memory().unwrap();
    let clients = Arc::new(Clients::default());
    pg.psql(pg.primary_port, "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)");
    pg.wait_replayed();

    // The controller samples while the primary answers, the standby caught up...
    sample(&clients, &topo, &*state).await;
    // ...the primary dies, and the controller's next sample finds it dark.
    pg.kill_primary();
    sample(&clients, &topo, &*state).await;
    let evidence = state.lag_evidence("orders-db", "az2").unwrap().unwrap();
    assert_eq!(evidence.last_seen.as_ref().and_then(|s| s.lag_s), Some(0.0), "{evidence:?}");
    assert!(evidence.dark_since.is_some(), "{evidence:?}");

    // A person declares 30 s later (the declarer's clock is 30 s ahead).
    let late = drctl_runtime::MockClock::starting_at(SystemTime::now() + Duration::from_secs(30));
    let declarer = Declarer::new(topo.clone(), state.clone(), clients.clone()).with_clock(Arc::new(late));
    let proposal = declarer.propose(declaration(), None).await.unwrap();
    let said: Vec<String> = proposal.prepared.checks.iter().map(|c| format!("{} {}", c.ok, c.detail)).collect();
    assert!(!proposal.refused(), "refused 30 s after the primary died: {said:#?}");
    let lag = said.iter().find(|c| c.contains("lacked")).unwrap_or_else(|| panic!("no lag said: {said:#?}"));
    assert!(
        lag.contains("the standby in az2 lacked 0.0 s of writes when the primary was last seen answering"),
        "{lag}"
    );
    assert!(lag.contains("up to 3"), "what cannot be known is bounded and said: {lag}");

    let who = Actor::new("commander", "test");
    assert!(matches!(
        declarer.record(&proposal, &who, false, IncidentPolicy::None).unwrap(),
        Recorded::Accepted { .. }
    ));
    let ended = declarer.run(&proposal.id).await.unwrap();
    assert!(matches!(ended, Ended::Succeeded), "{ended:?}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "f", "promoted");
    assert_eq!(pg.psql(pg.standby_port, "SELECT count(*) FROM t"), "100", "nothing lost");
    let steps = state.steps(&proposal.id).unwrap();
    let note = steps.iter().find_map(|s| s.note.clone()).unwrap_or_default();
    assert!(note.contains("az1: fenced out of band"), "{note}");
    assert!(
        note.contains("0.0 s of writes missing; up to")
            && note.contains("more if the primary kept taking writes until it was fenced"),
        "the promote-time check read the same evidence and bounded the unknown by the fence: {note}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without a sample that saw the primary go dark (nothing was sampling),
/// a declaration 30 s after its last answer cannot know what the standby
/// lacked: refused, naming the override, and nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn with_no_sample_since_the_primary_answered_the_lag_is_unknown_and_refused() {
    let pg = PgPair::start();
    let topo = Arc::new(topology(&pg, &["true".to_string()]));
    let state = State::in_memory().unwrap();
    let clients = Arc::new(Clients::default());
    sample(&clients, &topo, &*state).await;
    pg.kill_primary();
    let late = drctl_runtime::MockClock::starting_at(SystemTime::now() + Duration::from_secs(30));
    let declarer = Declarer::new(topo.clone(), state.clone(), clients.clone()).with_clock(Arc::new(late));
    let proposal = declarer.propose(declaration(), None).await.unwrap();
    assert!(proposal.refused());
    let why = proposal.refusals().join("; ");
    assert!(why.contains("its lag is unknown: --accept-lag promotes it anyway"), "{why}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "t", "nothing was changed");

    let proposal = declarer
        .propose(
            Declaration {
                overrides: drctl_control::overrides::Overrides { accept_lag: true, ..Default::default() },
                ..declaration()
            },
            None,
        )
        .await
        .unwrap();
    assert!(!proposal.refused(), "{:?}", proposal.refusals());
}
