//! The operator API's handlers, called in-process through the router on an
//! in-memory store: who may do what, what a refused or malformed request
//! answers, and that the controller's time is the clock it is given. The
//! binary's tests (`drctl/tests/serve.rs`) cover the same API over HTTP
//! with real datastores; these are quick and say which handler broke.

use crate::api::{router, Remote};
use crate::{Limits, NotifyOptions, Options, Shared};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use drctl_runtime::{Clock, MockClock, SystemClock};
use drctl_state::controller::Role;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tower::ServiceExt;

/// Nothing listens on ports 1 and 2 of loopback: both members of the
/// datastore are unreachable, so the preflight refuses any failover.
const TOPOLOGY: &str = r#"version: 1
name: shop
zones:
  - { name: az1, region: r1 }
  - { name: az2, region: r1 }
objectives:
  tier-0: { rpo: 5s, rto: 2m }
datastores:
  - name: orders-db
    kind: postgres
    primary: { zone: az1, url: "postgres://drctl@127.0.0.1:1/shop" }
    replicas: [ { zone: az2, url: "postgres://drctl@127.0.0.1:2/shop" } ]
services:
  - { name: checkout, tier: tier-0, zones: [az1, az2], depends_on: [orders-db] }
"#;

/// A controller on an in-memory store, both on `clock`.
fn shared(clock: Arc<dyn Clock>) -> Arc<Shared> {
    let loaded = drctl_core::load_str(TOPOLOGY, std::path::Path::new("drctl.yaml"));
    let topology = loaded.topology.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics));
    shared_with(topology, clock)
}

fn shared_with(topology: drctl_core::Topology, clock: Arc<dyn Clock>) -> Arc<Shared> {
    Arc::new(Shared::new(options(topology, clock), "http://status.example".into()))
}

pub(crate) fn options(topology: drctl_core::Topology, clock: Arc<dyn Clock>) -> Options {
    Options {
        topology_path: PathBuf::from("drctl.yaml"),
        topology: Arc::new(topology),
        state: Arc::new(drctl_state::Sqlite::in_memory().unwrap().with_clock(clock.clone())),
        clients: Default::default(),
        state_url: "sqlite://:memory:".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        peer_ca: None,
        allow: Vec::new(),
        sample_every: Duration::from_secs(60),
        base_url: None,
        shutdown_deadline: Duration::from_secs(1),
        reports_dir: std::env::temp_dir(),
        say: Arc::new(|_| {}),
        id: "test".into(),
        leadership: None,
        limits: Limits::default(),
        notify: NotifyOptions::default(),
        readiness: crate::ReadinessOptions::default(),
        clock,
    }
}

/// One request through the whole router (middleware included), from 127.0.0.1.
async fn call(
    s: &Arc<Shared>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let app = router(s.clone()).layer(axum::Extension(Remote("127.0.0.1:40000".parse().unwrap())));
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())))
}

/// An empty folder of this test process's own, `name` telling tests apart.
fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("drctl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn token(s: &Arc<Shared>, name: &str, role: Role) -> String {
    let customer = (role == Role::Customer).then_some("acme");
    s.opts.state.create_token(name, role, customer).unwrap()
}

#[tokio::test]
async fn each_operator_endpoint_answers_by_role() {
    let s = shared(Arc::new(SystemClock));
    let viewer = token(&s, "v", Role::Viewer);
    let operator = token(&s, "o", Role::Operator);
    let admin = token(&s, "a", Role::Admin);
    let customer = token(&s, "c", Role::Customer);
    let incident =
        json!({"title": "slow checkout", "status": "investigating", "body": "looking", "services": ["checkout"]});

    assert_eq!(call(&s, "GET", "/api/v1/executions", None, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&s, "GET", "/api/v1/executions", Some("not-a-token"), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&s, "GET", "/api/v1/executions", Some(&customer), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&s, "GET", "/api/v1/executions", Some(&viewer), None).await.0, StatusCode::OK);
    assert_eq!(
        call(&s, "POST", "/api/v1/incidents", Some(&viewer), Some(incident.clone())).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = call(&s, "POST", "/api/v1/incidents", Some(&operator), Some(incident)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(call(&s, "GET", "/api/v1/audit", Some(&operator), None).await.0, StatusCode::FORBIDDEN);
    let (status, audit) = call(&s, "GET", "/api/v1/audit", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"incident.create"), "the incident was audited: {audit}");
    let declare = json!({"zones": ["az1"], "reason": "drill"});
    assert_eq!(call(&s, "POST", "/api/v1/declare", Some(&operator), Some(declare)).await.0, StatusCode::FORBIDDEN);
    assert!(s.opts.state.executions().unwrap().is_empty(), "a forbidden declaration journals nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declaration_the_preflight_refuses_is_journaled_audited_and_opens_nothing() {
    let s = shared(Arc::new(SystemClock));
    let commander = token(&s, "ic", Role::Commander);
    let (status, body) =
        call(&s, "POST", "/api/v1/declare", Some(&commander), Some(json!({"zones": ["az1"], "reason": "az1 is dark"})))
            .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let id = body["id"].as_str().expect("a refusal names its execution");
    assert!(body["checks"].as_array().unwrap().iter().any(|c| c["ok"] == false), "{body}");
    let (_, shown) = call(&s, "GET", &format!("/api/v1/executions/{id}"), Some(&commander), None).await;
    assert_eq!(shown["state"], "refused", "{shown}");
    let audit = s.opts.state.audit_entries().unwrap();
    assert!(audit.iter().any(|e| e.action == "declare.refused" && e.target == format!("execution {id}")));
    assert!(s.opts.state.incidents().unwrap().is_empty(), "a refused declaration tells customers nothing");
    assert!(s.opts.state.placements().unwrap().is_empty(), "nothing moved");
}

#[tokio::test]
async fn malformed_and_impossible_requests_say_what_is_wrong_with_a_code() {
    let s = shared(Arc::new(SystemClock));
    let commander = token(&s, "ic", Role::Commander);
    let (status, body) =
        call(&s, "POST", "/api/v1/declare", Some(&commander), Some(json!({"reason": "no scope"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        (body["code"].as_str(), body["error"].as_str()),
        (Some("E103"), Some("say what is lost: zones, regions or targets"))
    );
    assert!(body["hint"].as_str().unwrap().contains("--zone"), "{body}");
    let (status, body) =
        call(&s, "POST", "/api/v1/declare", Some(&commander), Some(json!({"zones": ["az9"], "reason": "typo"}))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("E104")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("zone `az9` is not in the topology"), "{body}");
    let (status, body) =
        call(&s, "POST", "/api/v1/executions/nope/approve", Some(&commander), Some(json!({"step": "x"}))).await;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(body["error"].as_str().unwrap().contains("no execution `nope`"), "{body}");
    let (status, _) = call(&s, "POST", "/api/v1/declare", Some(&commander), Some(json!(["not", "an", "object"]))).await;
    assert!(status.is_client_error(), "{status}");
    assert!(s.opts.state.executions().unwrap().is_empty(), "nothing was journaled");
}

/// A mistyped field never runs as something else: `{"dryrun": true}` is
/// refused with 422 naming `dryrun`, and nothing is journaled or moved.
/// So are unknown fields in the decision bodies.
#[tokio::test]
async fn a_body_with_an_unknown_field_is_refused_naming_it_and_never_declares() {
    let s = shared(Arc::new(SystemClock));
    let commander = token(&s, "ic", Role::Commander);
    let typo = json!({"zones": ["az1"], "reason": "rehearsal", "dryrun": true});
    let (status, body) = call(&s, "POST", "/api/v1/declare", Some(&commander), Some(typo)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("`dryrun` is refused") && error.contains("unknown field `dryrun`"), "{body}");
    let (status, body) = call(
        &s,
        "POST",
        "/api/v1/declare",
        Some(&commander),
        Some(json!({"zones": ["az1"], "reason": "x", "overrides": {"accept_lag": true, "all": true}})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "an unknown override is refused too: {body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("unknown field `all`"), "{body}");
    let (status, body) = call(
        &s,
        "POST",
        "/api/v1/declare",
        Some(&commander),
        Some(json!({"zones": ["az1"], "reason": "x", "overrides": {"unfenced": ["orders-db"]}})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("is not DATASTORE/ZONE"), "{body}");
    let long = json!({"zones": ["az1"], "reason": "x".repeat(1001)});
    assert_eq!(
        call(&s, "POST", "/api/v1/declare", Some(&commander), Some(long)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    for (path, bad) in [
        ("retry", json!({"step": "orders-db/failover", "force": true})),
        ("skip", json!({"step": "orders-db/failover", "and_after": true})),
        ("approve", json!({"step": "orders-db/failover", "done": true, "by": "me"})),
    ] {
        let (status, body) =
            call(&s, "POST", &format!("/api/v1/executions/x/{path}"), Some(&commander), Some(bad)).await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::NOT_FOUND,
            "{path}: {status} {body}"
        );
    }
    let (status, body) =
        call(&s, "POST", "/api/v1/executions/x/retry", Some(&commander), Some(json!({"step": "a", "force": true})))
            .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("unknown field `force`"), "{body}");
    assert!(s.opts.state.executions().unwrap().is_empty(), "nothing was declared");
    let audit = s.opts.state.audit_entries().unwrap();
    assert!(audit.iter().all(|e| !e.action.starts_with("declare")), "nothing was declared: {audit:?}");
}

#[tokio::test(start_paused = true)]
async fn maintenance_is_announced_when_the_controllers_clock_reaches_it() {
    let t0 = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let s = shared(Arc::new(MockClock::starting_at(t0)));
    let operator = token(&s, "o", Role::Operator);
    let new = s
        .opts
        .state
        .subscribe(drctl_state::audience::Channel::Email, "ops@example.com", &[], "en", s.opts.clock.now())
        .unwrap();
    s.opts.state.confirm_subscription(new.confirm_token.as_deref().unwrap(), s.opts.clock.now()).unwrap();
    let at = |secs: u64| drctl_control::failover::rfc3339(t0 + Duration::from_secs(secs));
    let window = json!({"title": "database upgrade", "body": "", "services": ["checkout"],
                        "starts_at": at(3_600), "ends_at": at(7_200)});
    let (status, body) = call(&s, "POST", "/api/v1/maintenance", Some(&operator), Some(window)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let told = |s: &Arc<Shared>| -> Vec<String> {
        let mut kinds: Vec<String> =
            s.opts.state.deliveries().unwrap().into_iter().map(|d| d.notification.kind).collect();
        kinds.sort();
        kinds
    };
    let mut done = crate::notify::Done::default();
    s.refresh().await;
    crate::notify::tick(&s, None, &mut done).await;
    assert_eq!(told(&s), ["maintenance.scheduled"], "announced when scheduled, and only that");

    // An hour of the controller's time, not of the test's.
    s.opts.clock.sleep(Duration::from_secs(3_600)).await;
    s.refresh().await;
    crate::notify::tick(&s, None, &mut done).await;
    assert!(told(&s).contains(&"maintenance.started".to_string()), "{:?}", told(&s));
    assert!(!told(&s).contains(&"maintenance.completed".to_string()), "not over yet");
    let (_, page) = call(&s, "GET", "/api/v2/scheduled-maintenances/active.json", None, None).await;
    assert_eq!(page["scheduled_maintenances"][0]["name"], "database upgrade", "{page}");
}

/// A runbook's `role: admin` is enforced: a commander's approval is
/// refused (403, E109) and audited, an admin's goes through, and the
/// execution, run by the one declarer, carries on.
#[tokio::test(flavor = "multi_thread")]
async fn an_approval_kept_to_admins_refuses_a_commander() {
    let dir = tempdir("approval");
    std::fs::write(
        dir.join("rb.yaml"),
        "name: guarded
steps:
  - id: approve
    action: approval
    with: { role: admin, prompt: \"Move checkout?\" }
  - { id: settle, action: wait, with: { for: 0s }, needs: [approve] }
",
    )
    .unwrap();
    let path = dir.join("drctl.yaml");
    std::fs::write(
        &path,
        "version: 1
name: shop
zones:
  - { name: az1, region: r1 }
  - { name: az2, region: r1 }
services:
  - { name: checkout, zones: [az1, az2], failover: { runbook: rb.yaml } }
",
    )
    .unwrap();
    let loaded = drctl_core::load(&path);
    let topology = loaded.topology.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics));
    let s = shared_with(topology, Arc::new(SystemClock));
    let commander = token(&s, "ic", Role::Commander);
    let admin = token(&s, "head-of-sre", Role::Admin);
    let (status, body) = call(
        &s,
        "POST",
        "/api/v1/declare",
        Some(&commander),
        Some(json!({"targets": ["checkout"], "reason": "drill"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    // This controller does not lead (no task center): the test runs the execution.
    let declarer = s.declarer();
    let run = {
        let id = id.clone();
        tokio::spawn(async move { declarer.run(&id).await })
    };
    let waiting = || {
        s.opts
            .state
            .steps(&id)
            .unwrap()
            .iter()
            .any(|st| st.id == "checkout/approve" && st.state == drctl_state::journal::StepState::WaitingApproval)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !waiting() {
        if run.is_finished() || std::time::Instant::now() > deadline {
            panic!("the approval step never waited: {:?}", s.opts.state.steps(&id).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let step = s.opts.state.steps(&id).unwrap().into_iter().find(|st| st.id == "checkout/approve").unwrap();
    assert_eq!(step.note.as_deref(), Some("Move checkout? (for an admin to approve)"));

    let approve = format!("/api/v1/executions/{id}/approve");
    let (status, body) = call(&s, "POST", &approve, Some(&commander), Some(json!({"step": "checkout/approve"}))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("E109")), "{body}");
    assert_eq!(
        body["error"], "step `checkout/approve` is for admin to approve (its runbook's `role`); ic is commander",
        "{body}"
    );
    assert!(s.opts.state.approved_by(&id, "checkout/approve", 0).unwrap().is_none(), "nothing was approved");
    let audit = s.opts.state.audit_entries().unwrap();
    assert!(
        audit.iter().any(|e| e.action == "approve.refused" && e.actor == "ic"),
        "the refused approval is audited: {audit:?}"
    );

    let (status, body) = call(&s, "POST", &approve, Some(&admin), Some(json!({"step": "checkout/approve"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["approved_by"], "head-of-sre");
    let ended = tokio::time::timeout(Duration::from_secs(20), run).await.unwrap().unwrap().unwrap();
    assert_eq!(ended, drctl_engine::Ended::Succeeded);
    let steps = s.opts.state.steps(&id).unwrap();
    assert_eq!(steps[0].note.as_deref(), Some("approved by head-of-sre"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Scheduled drills start when the controller's clock reaches their cron
/// time: half a minute of the controller's time here, none of the test's.
#[tokio::test(start_paused = true)]
async fn scheduled_drills_follow_the_controllers_clock() {
    let dir = tempdir("cron");
    let path = dir.join("drctl.yaml");
    std::fs::write(&path, format!("{TOPOLOGY}drills:\n  - {{ experiment: gone.yaml, cron: \"0 4 * * *\" }}\n"))
        .unwrap();
    std::fs::write(
        dir.join("gone.yaml"),
        "name: gone\nduration: 1m\nfaults:\n  - { kind: replication-pause, datastore: orders-db }\ndeclare: manual\n",
    )
    .unwrap();
    let loaded = drctl_core::load(&path);
    let topology = loaded.topology.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics));
    // Removed after the controller started: at 04:00 the scheduler says so.
    std::fs::remove_dir_all(&dir).unwrap();
    // 03:59:30 UTC on 2030-03-18.
    let t0 = UNIX_EPOCH + Duration::from_secs(1_900_036_800 - 30);
    let clock: Arc<dyn Clock> = Arc::new(MockClock::starting_at(t0));
    let said = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut opts = options(topology, clock.clone());
    opts.topology_path = path;
    let log = said.clone();
    opts.say = Arc::new(move |line| log.lock().unwrap().push(line.to_string()));
    let s = Arc::new(Shared::new(opts, "http://status.example".into()));
    let stop = drctl_runtime::CancellationToken::new();
    let scheduler = tokio::spawn(crate::api::drill_scheduler(s.clone(), stop.clone()));

    clock.sleep(Duration::from_secs(29)).await;
    assert!(said.lock().unwrap().is_empty(), "nothing before 04:00: {:?}", said.lock().unwrap());
    clock.sleep(Duration::from_secs(2)).await;
    let lines = said.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("scheduled drill {}:", dir.join("gone.yaml").display())),
        "the 04:00 drill was due: {lines:?}"
    );
    stop.cancel();
    scheduler.await.unwrap();
}

/// A measurement is stamped, on the page and in the samples, with the
/// controller's clock.
#[tokio::test(start_paused = true)]
async fn a_status_sample_is_stamped_with_the_controllers_time() {
    let t0 = UNIX_EPOCH + Duration::from_secs(1_900_036_800);
    let s = shared(Arc::new(MockClock::starting_at(t0)));
    s.sample(&drctl_control::live::Clients::default()).await;
    let (status, body) = call(&s, "GET", "/api/v1/status", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["at"], "2030-03-18T04:00:00Z", "{body}");
    let samples = s.opts.state.rpo_samples("orders-db", UNIX_EPOCH).unwrap();
    assert_eq!(samples.iter().map(|x| x.at).collect::<Vec<_>>(), [t0], "{samples:?}");
}

/// A follower forwards to a leader serving HTTPS under a private CA when
/// it trusts that CA (`--peer-ca`); without it, the refusal names the
/// cause; a file with no certificate stops the controller at start.
#[tokio::test(flavor = "multi_thread")]
async fn forwarding_to_a_leader_under_a_private_ca_needs_peer_ca() {
    let dir = tempdir("peer-ca");
    let ca = drctl_testkit::TestCa::new(&dir);
    ca.issue("leader.pem", "leader.key", "leader", "serverAuth");
    let leader = shared(Arc::new(SystemClock));
    let commander = token(&leader, "ic", Role::Commander);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let stop = drctl_runtime::CancellationToken::new();
    let tls = crate::tls::config(&dir.join("leader.pem"), &dir.join("leader.key")).unwrap();
    let server = tokio::spawn(crate::api::serve(leader.clone(), listener, Some(tls), stop.clone()));
    let request = || {
        Request::builder()
            .method("GET")
            .uri("/api/v1/executions")
            .header("authorization", format!("Bearer {commander}"))
            .body(Body::empty())
            .unwrap()
    };

    let trusting = crate::tls::forwarder(Some(&dir.join("ca.pem"))).unwrap();
    let answer = crate::api::forward(&trusting, &url, "follower-1", request()).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body = axum::body::to_bytes(answer.into_body(), 1 << 20).await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!([]), "the leader's own answer");

    let public_roots = crate::tls::forwarder(None).unwrap();
    let why = crate::api::forward(&public_roots, &url, "follower-1", request()).await.unwrap_err();
    assert!(why.to_lowercase().contains("unknownissuer"), "the cause, not only `error sending request`: {why}");

    std::fs::write(dir.join("empty.pem"), "").unwrap();
    let err = crate::tls::forwarder(Some(&dir.join("empty.pem"))).unwrap_err().to_string();
    assert!(err.contains("empty.pem: no certificate in it"), "{err}");
    stop.cancel();
    server.await.unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// A request forwarded by a controller is judged (and audited) as its
/// client; the same headers with a forged, stale or missing proof are
/// dropped and the request is judged by the address it came from.
#[tokio::test(flavor = "multi_thread")]
async fn a_forwarded_client_counts_only_with_a_controllers_proof() {
    let s = shared(Arc::new(SystemClock));
    let operator = token(&s, "ops", Role::Operator);
    let post = |title: &str, headers: Vec<(String, String)>| {
        let mut r = Request::builder()
            .method("POST")
            .uri("/api/v1/incidents")
            .header("authorization", format!("Bearer {operator}"))
            .header("content-type", "application/json");
        for (k, v) in headers {
            r = r.header(k, v);
        }
        let mut r = r.body(Body::from(json!({"title": title, "status": "investigating"}).to_string())).unwrap();
        if title == "signed" {
            crate::peer::sign(&s, "az2-ctl", "203.0.113.7".parse().unwrap(), &mut r);
        }
        r
    };
    let proof_at = |secs: u64| {
        let mac = crate::peer::proof(&s, "az2-ctl", "203.0.113.8".parse().unwrap(), secs, "POST", "/api/v1/incidents");
        vec![
            ("x-drctl-forwarded-by".to_string(), "az2-ctl".to_string()),
            ("x-drctl-forwarded-for".to_string(), "203.0.113.8".to_string()),
            ("x-drctl-forwarded-proof".to_string(), format!("{secs}.{mac}")),
        ]
    };
    let now = crate::peer::now_secs(&s);
    let mut forged = proof_at(now);
    forged[2].1 = format!("{now}.{}", "0".repeat(64));
    for (title, headers) in [
        ("signed", vec![]),
        ("stale", proof_at(now - 120)),
        ("forged", forged),
        ("bare", vec![("x-drctl-forwarded-for".to_string(), "203.0.113.9".to_string())]),
    ] {
        let app = router(s.clone()).layer(axum::Extension(Remote("127.0.0.1:40000".parse().unwrap())));
        let resp = app.oneshot(post(title, headers)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{title}");
    }
    let source = |title: &str| {
        let entries = s.opts.state.audit_entries().unwrap();
        let e = entries.iter().find(|e| e.request.contains(&format!("\"{title}\""))).unwrap();
        e.source.clone()
    };
    assert_eq!(source("signed"), "203.0.113.7", "a controller's proof: the client");
    for title in ["stale", "forged", "bare"] {
        assert_eq!(source(title), "127.0.0.1", "{title}: judged by the address it came from");
    }
}
