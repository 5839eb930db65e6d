//! The failover plan of docs/reference/cli.md, on small topologies where the right answer
//! can be worked out by hand.

use drctl_core::plan::{plan, Observations, Placement, Plan, Scope};
use drctl_core::{load_str, Error, Topology};
use std::path::Path;
use std::time::Duration;

/// docs/reference/topology.md example topology, verbatim.
const DOCUMENTED_EXAMPLE: &str = r#"
version: 1
name: shop
zones:
  - { name: use1-az1, region: us-east-1, aws_zone: us-east-1a }
  - { name: use1-az2, region: us-east-1, aws_zone: us-east-1b }
  - { name: use1-az3, region: us-east-1, aws_zone: us-east-1c }
objectives:
  tier-0: { rpo: 5s,  rto: 2m }
  tier-1: { rpo: 1m,  rto: 15m }
  tier-2: { rpo: 1h,  rto: 4h }
contracts:
  - customer: acme
    services: [checkout]
    rpo: 1s
    rto: 90s
datastores:
  - name: orders-db
    kind: postgres
    primary:  { zone: use1-az1, url: "postgres://postgres@127.0.0.1:55432/shop" }
    replicas:
      - { zone: use1-az2, url: "postgres://postgres@127.0.0.1:55433/shop" }
    failover: { estimate: 30s, max_lag: 10s }
  - name: assets
    kind: s3
    endpoint: "http://127.0.0.1:5000"
    primary:  { zone: use1-az1, bucket: shop-assets-az1 }
    replicas: [ { zone: use1-az2, bucket: shop-assets-az2 } ]
    replication: { by: drctl, every: 10s }
  - name: billing-db
    kind: rds-cluster
    cluster: billing
    failover: { estimate: 35s }
  - name: ledger-db
    kind: rds-instance
    primary:  { zone: use1-az1, instance: ledger-a }
    replicas: [ { zone: use1-az2, instance: ledger-b } ]
services:
  - name: payments
    tier: tier-0
    zones: [use1-az1, use1-az2]
    depends_on: [orders-db, billing-db]
    health: { url: "http://127.0.0.1:8081/health" }
    route:
      kind: route53
      zone_id: Z123
      name: pay.shop.example.
      type: A
      ttl: 30
      records: { use1-az1: 10.0.1.10, use1-az2: 10.0.2.10 }
    failover: { estimate: 20s }
  - name: checkout
    tier: tier-0
    zones: [use1-az1, use1-az2]
    depends_on: [payments, orders-db, assets]
"#;

fn topo(src: &str) -> Topology {
    let loaded = load_str(src, Path::new("drctl.yaml"));
    loaded.topology.unwrap_or_else(|| panic!("invalid: {:#?}", loaded.diagnostics))
}

fn zones(z: &[&str]) -> Scope {
    Scope { zones: z.iter().map(|s| s.to_string()).collect(), ..Scope::default() }
}

fn step<'a>(p: &'a Plan, id: &str) -> &'a drctl_core::plan::Step {
    p.steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no step {id} in {:#?}", p.steps))
}

#[test]
fn the_spec_example_fails_over_in_dependency_order() {
    let t = topo(DOCUMENTED_EXAMPLE);
    let p = plan(&t, &zones(&["use1-az1"]), &Observations::default(), None).unwrap();
    let orders = step(&p, "orders-db/failover");
    assert_eq!(
        (orders.action.as_str(), orders.from_zone.as_deref(), orders.to_zone.as_deref()),
        ("postgres.promote", Some("use1-az1"), Some("use1-az2"))
    );
    assert_eq!((orders.start_s, orders.finish_s), (0.0, 30.0));
    let payments = step(&p, "payments/failover");
    assert_eq!(payments.after, ["orders-db/failover"], "billing-db's writer moves by itself within the region");
    assert_eq!((payments.start_s, payments.finish_s), (30.0, 50.0));
    let checkout = step(&p, "checkout/failover");
    assert_eq!(checkout.after, ["orders-db/failover", "assets/failover", "payments/failover"]);
    assert_eq!((checkout.start_s, checkout.finish_s), (50.0, 60.0), "default service estimate 10s");
    assert_eq!(step(&p, "assets/failover").action, "s3.promote_replica");
    assert_eq!(step(&p, "ledger-db/failover").estimate_s, 120.0, "rds-instance default");

    let ent = p.entities.iter().find(|e| e.name == "checkout").unwrap();
    assert_eq!((ent.kind.as_str(), ent.tier.as_deref()), ("service", Some("tier-0")));
    assert_eq!((ent.rto_estimate_s, ent.rto_target_s, ent.meets_rto), (60.0, Some(90.0), true));
    assert_eq!(p.critical_path, ["ledger-db/failover"]);
    assert_eq!((p.critical_path_s, p.makespan_s), (120.0, 120.0));
    assert!(p.unrecoverable.is_empty());
    assert!(p.meets_objectives());
}

#[test]
fn the_json_has_every_key_of_the_contract() {
    let t = topo(DOCUMENTED_EXAMPLE);
    let p = plan(&t, &zones(&["use1-az1"]), &Observations::default(), Some(2)).unwrap();
    let json = serde_json::to_value(&p).unwrap();
    for key in
        ["scope", "parallel", "steps", "critical_path", "critical_path_s", "makespan_s", "entities", "unrecoverable"]
    {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["scope"], serde_json::json!({ "zones": ["use1-az1"], "regions": [], "targets": [] }));
    assert_eq!(json["parallel"], 2);
    for key in ["id", "entity", "action", "from_zone", "to_zone", "after", "estimate_s", "start_s", "finish_s"] {
        assert!(json["steps"][0].get(key).is_some(), "step is missing {key}");
    }
    for key in ["name", "kind", "tier", "rto_estimate_s", "rto_target_s", "meets_rto"] {
        assert!(json["entities"][0].get(key).is_some(), "entity is missing {key}");
    }
}

const THREE_ZONES: &str = "version: 1
zones: [ { name: a, region: r1 }, { name: b, region: r1 }, { name: c, region: r2 } ]
objectives: { t0: { rto: 1m } }
";

#[test]
fn the_replica_with_the_lowest_measured_lag_is_preferred_else_zone_order() {
    let t = topo(&format!(
        "{THREE_ZONES}datastores:
  - {{ name: db, kind: postgres, primary: {{ zone: a, url: \"postgres://h/a\" }}, replicas: [ {{ zone: c, url: \"postgres://h/c\" }}, {{ zone: b, url: \"postgres://h/b\" }} ] }}
"
    ));
    let p = plan(&t, &zones(&["a"]), &Observations::default(), None).unwrap();
    assert_eq!(p.steps[0].to_zone.as_deref(), Some("b"), "zone order, not replica order");
    let mut obs = Observations::default();
    obs.lag.insert((0, 1), Duration::from_secs(4));
    obs.lag.insert((0, 2), Duration::from_millis(300));
    let p = plan(&t, &zones(&["a"]), &obs, None).unwrap();
    assert_eq!(p.steps[0].to_zone.as_deref(), Some("c"), "lowest lag wins");
    let p = plan(&t, &zones(&["a", "c"]), &obs, None).unwrap();
    assert_eq!(p.steps[0].to_zone.as_deref(), Some("b"), "never into the scope");
}

#[test]
fn unrecoverable_entities_say_why_and_block_what_depends_on_them() {
    let t = topo(&format!(
        "{THREE_ZONES}datastores:
  - {{ name: db, kind: postgres, primary: {{ zone: a, url: \"postgres://h/a\" }}, replicas: [ {{ zone: b, url: \"postgres://h/b\" }} ] }}
  - {{ name: solo, kind: postgres, primary: {{ zone: a, url: \"postgres://h/s\" }} }}
services:
  - {{ name: legacy, zones: [a, b] }}
  - {{ name: api, zones: [c], depends_on: [db] }}
  - {{ name: web, tier: t0, zones: [b, c], depends_on: [api, legacy] }}
  - {{ name: untouched, zones: [c] }}
"
    ));
    let p = plan(&t, &zones(&["a", "b"]), &Observations::default(), None).unwrap();
    let reasons: Vec<(String, String)> = p.unrecoverable.iter().map(|u| (u.name.clone(), u.reason.clone())).collect();
    assert_eq!(
        reasons,
        [
            ("db".to_string(), "every replica of db is in the disaster scope".to_string()),
            ("solo".to_string(), "solo has no replica to fail over to".to_string()),
            ("legacy".to_string(), "every zone of legacy is in the disaster scope".to_string()),
            ("api".to_string(), "blocked by db".to_string()),
            ("web".to_string(), "blocked by legacy, api".to_string()),
        ]
    );
    assert!(p.steps.is_empty());
    assert!(!p.meets_objectives());
}

#[test]
fn a_region_scope_loses_every_zone_in_it() {
    let t = topo(&format!(
        "{THREE_ZONES}datastores:
  - {{ name: db, kind: postgres, primary: {{ zone: a, url: \"postgres://h/a\" }}, replicas: [ {{ zone: b, url: \"postgres://h/b\" }}, {{ zone: c, url: \"postgres://h/c\" }} ] }}
"
    ));
    let scope = Scope { regions: vec!["r1".into()], ..Scope::default() };
    let p = plan(&t, &scope, &Observations::default(), None).unwrap();
    assert_eq!(p.steps[0].to_zone.as_deref(), Some("c"));
}

#[test]
fn a_target_fails_over_even_when_its_zone_is_fine() {
    let t = topo(&format!(
        "{THREE_ZONES}datastores:
  - {{ name: db, kind: postgres, primary: {{ zone: a, url: \"postgres://h/a\" }}, replicas: [ {{ zone: b, url: \"postgres://h/b\" }} ] }}
services:
  - {{ name: api, zones: [a, b], depends_on: [db] }}
  - {{ name: other, zones: [a] }}
"
    ));
    let scope = Scope { targets: vec!["db".into()], ..Scope::default() };
    let p = plan(&t, &scope, &Observations::default(), None).unwrap();
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["db/failover", "api/failover"], "api depends on db; other is untouched");
    assert_eq!(p.steps[1].from_zone, None, "api only follows its dependency");
    assert_eq!(p.steps[1].to_zone.as_deref(), Some("a"));
}

#[test]
fn a_moved_primary_is_planned_from_where_it_is_now() {
    let t = topo(&format!(
        "{THREE_ZONES}datastores:
  - {{ name: db, kind: postgres, primary: {{ zone: a, url: \"postgres://h/a\" }}, replicas: [ {{ zone: b, url: \"postgres://h/b\" }} ] }}
"
    ));
    let mut obs = Observations::default();
    obs.placement.insert(0, Placement { primary: 1, replicas: vec![0] });
    assert!(plan(&t, &zones(&["a"]), &obs, None).unwrap().steps.is_empty(), "the primary already left zone a");
    let p = plan(&t, &zones(&["b"]), &obs, None).unwrap();
    assert_eq!((p.steps[0].from_zone.as_deref(), p.steps[0].to_zone.as_deref()), (Some("b"), Some("a")), "failback");
}

#[test]
fn unknown_scope_names_are_bad_input_with_the_choices() {
    let t = topo(DOCUMENTED_EXAMPLE);
    let err = plan(&t, &zones(&["use1-az9"]), &Observations::default(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "zone `use1-az9` is not in the topology: did you mean `use1-az1`? (zones: use1-az1, use1-az2, use1-az3)"
    );
    let err = plan(&t, &zones(&["az2"]), &Observations::default(), None).unwrap_err();
    assert!(err.to_string().contains("did you mean `use1-az2`?"), "a shortened name: {err}");
    let err = plan(&t, &Scope { targets: vec!["payment".into()], ..Scope::default() }, &Observations::default(), None)
        .unwrap_err();
    assert_eq!(err, Error::UnknownTarget { name: "payment".into(), hint: Some("payments".into()) });
    let err =
        plan(&t, &Scope { regions: vec!["eu-west-1".into()], ..Scope::default() }, &Observations::default(), None)
            .unwrap_err();
    assert!(matches!(err, Error::UnknownRegion { .. }));
    let err = plan(&t, &Scope { regions: vec!["us-east1".into()], ..Scope::default() }, &Observations::default(), None)
        .unwrap_err();
    assert!(err.to_string().contains("did you mean `us-east-1`?"), "{err}");
    assert_eq!(plan(&t, &zones(&["use1-az1"]), &Observations::default(), Some(0)).unwrap_err(), Error::ZeroParallel);
}

#[test]
fn a_runbook_becomes_one_step_per_runbook_step() {
    let dir = std::env::temp_dir().join(format!("drctl-plan-rb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("rb.yaml"),
        "name: api
steps:
  - { id: drain, action: http.request, with: { url: \"http://x/drain\" }, estimate: 2s }
  - { id: approve, action: approval, needs: [drain], estimate: 10s }
  - { id: route, action: route53.failover, with: { zone_id: Z, name: a. }, needs: [drain], estimate: 5s }
  - { id: verify, action: http.health, with: { url: \"http://x/health\" }, needs: [approve, route] }
",
    )
    .unwrap();
    std::fs::write(
        dir.join("drctl.yaml"),
        format!(
            "{THREE_ZONES}datastores:
  - {{ name: db, kind: postgres, primary: {{ zone: a, url: \"postgres://h/a\" }}, replicas: [ {{ zone: b, url: \"postgres://h/b\" }} ], failover: {{ estimate: 7s }} }}
services:
  - {{ name: api, tier: t0, zones: [a, b], depends_on: [db], failover: {{ runbook: rb.yaml }} }}
"
        ),
    )
    .unwrap();
    let t = drctl_core::load(&dir.join("drctl.yaml")).topology.expect("valid");
    let p = plan(&t, &zones(&["a"]), &Observations::default(), None).unwrap();
    let got: Vec<(&str, &str, Vec<&str>, f64)> = p
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.action.as_str(), s.after.iter().map(String::as_str).collect(), s.finish_s))
        .collect();
    assert_eq!(
        got,
        [
            ("db/failover", "postgres.promote", vec![], 7.0),
            ("api/drain", "http.request", vec!["db/failover"], 9.0),
            ("api/approve", "approval", vec!["api/drain"], 19.0),
            ("api/route", "route53.failover", vec!["api/drain"], 14.0),
            ("api/verify", "http.health", vec!["api/approve", "api/route"], 24.0),
        ]
    );
    let api = p.entities.iter().find(|e| e.name == "api").unwrap();
    assert_eq!(api.rto_estimate_s, 24.0, "the finish of its last step");
    assert_eq!(p.critical_path, ["db/failover", "api/drain", "api/approve", "api/verify"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_parallel_cap_serialises_steps_and_misses_are_reported() {
    let t = topo(&format!(
        "{THREE_ZONES}datastores:
  - {{ name: d1, kind: postgres, primary: {{ zone: a, url: \"postgres://h/1\" }}, replicas: [ {{ zone: b, url: \"postgres://h/1b\" }} ], failover: {{ estimate: 40s }} }}
  - {{ name: d2, kind: postgres, primary: {{ zone: a, url: \"postgres://h/2\" }}, replicas: [ {{ zone: b, url: \"postgres://h/2b\" }} ], failover: {{ estimate: 40s }} }}
services:
  - {{ name: api, tier: t0, zones: [a, b], depends_on: [d1, d2] }}
"
    ));
    let free = plan(&t, &zones(&["a"]), &Observations::default(), None).unwrap();
    assert_eq!(free.makespan_s, 50.0);
    assert!(free.meets_objectives());
    let capped = plan(&t, &zones(&["a"]), &Observations::default(), Some(1)).unwrap();
    assert_eq!(capped.makespan_s, 90.0);
    assert_eq!(capped.critical_path_s, 50.0, "the critical path does not depend on the cap");
    let api = capped.entities.iter().find(|e| e.name == "api").unwrap();
    assert_eq!((api.rto_estimate_s, api.rto_target_s, api.meets_rto), (90.0, Some(60.0), false));
    assert!(!capped.meets_objectives());
}
