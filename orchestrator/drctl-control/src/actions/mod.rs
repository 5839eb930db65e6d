//! The actions that act on the world, one arm per [`Action`]: the engine
//! calls [`RealActions`] for every step but approvals. Each action checks
//! the world first, so that running it again after a crash does no harm.

mod aws;
mod http;
mod postgres;
mod process;
mod routes;

use crate::live::Clients;
use drctl_core::action::{Action, Body, Call};
use drctl_core::topology::{EntitySpec, Location, RouteKind, Topology};
use drctl_engine::{ActionError, Actions, Note, StepSpec};
use drctl_state::State;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// The actions that act on the world.
pub(crate) struct RealActions {
    pub(crate) topo: Arc<Topology>,
    pub(crate) state: Arc<State>,
    pub(crate) clients: Arc<Clients>,
    /// The zones the declaration lost (routes answer with the others).
    pub(crate) lost_zones: Vec<String>,
    /// Entities named with `--target`: they move even when nothing is lost.
    pub(crate) targets: Vec<String>,
    /// The checks the commander lifted, each by name: a member named
    /// `--unfenced`, a lag over `max_lag`, a catch-up past its time are
    /// noted, not refused.
    pub(crate) overrides: crate::overrides::Overrides,
    /// The engine's: `wait` steps, and the age of a recorded lag.
    pub(crate) clock: Arc<dyn drctl_runtime::Clock>,
}

/// The step's action and parameters, decoded as runbook validation
/// decoded them (the journal holds them with templates filled in).
fn call(step: &StepSpec) -> Result<Call, ActionError> {
    let action =
        Action::parse(&step.action).ok_or_else(|| ActionError::Fatal(format!("unknown action `{}`", step.action)))?;
    let empty = serde_json::Map::new();
    Call::decode(action, step.with.as_object().unwrap_or(&empty)).map_err(|errors| {
        let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        ActionError::Fatal(format!("{}: {}", step.action, all.join("; ")))
    })
}

fn provider_error(e: drctl_providers::Error) -> ActionError {
    match e {
        drctl_providers::Error::Connect { .. } | drctl_providers::Error::Timeout { .. } => {
            ActionError::Transient(e.to_string())
        }
        other => ActionError::Fatal(other.to_string()),
    }
}

/// The state store failing to record an effect's result: worth another
/// attempt (the action checks the world first, so the effect is not repeated).
fn state_error(e: impl std::fmt::Display) -> ActionError {
    ActionError::Transient(e.to_string())
}

fn aws_error(e: drctl_aws::Error) -> ActionError {
    match e {
        drctl_aws::Error::Api { transient: true, .. } => ActionError::Transient(e.to_string()),
        other => ActionError::Fatal(other.to_string()),
    }
}

impl RealActions {
    fn datastore<'a>(
        &'a self,
        named: &'a Option<String>,
        step: &'a StepSpec,
    ) -> Result<(&'a str, &'a drctl_core::topology::Datastore), ActionError> {
        let name = named.as_deref().unwrap_or(&step.entity);
        let id = self.topo.entity_id(name).ok_or_else(|| ActionError::Fatal(format!("no datastore {name}")))?;
        match &self.topo.entity(id).spec {
            EntitySpec::Datastore(d) => Ok((&self.topo.entity(id).name, d)),
            EntitySpec::Service(_) => Err(ActionError::Fatal(format!("{name} is a service, not a datastore"))),
        }
    }

    fn to_zone<'a>(named: &'a Option<String>, step: &'a StepSpec) -> Result<&'a str, ActionError> {
        named.as_deref().or(step.to_zone.as_deref()).ok_or_else(|| ActionError::Fatal("no zone to fail over to".into()))
    }

    /// When a `wait` (or `http.health`'s `within`) ends, and how long is
    /// left of it now. The deadline is kept in the journal when the step
    /// first starts, so a step interrupted by a crash, a detach or Ctrl-C
    /// resumes with the time it had left, not from zero; a commander's
    /// `retry` starts a fresh one.
    fn deadline(
        &self,
        execution: &str,
        step: &StepSpec,
        duration: Duration,
    ) -> Result<(std::time::SystemTime, Duration), ActionError> {
        let now = self.clock.now();
        let mut kept = None;
        for e in self.state.events(execution).map_err(state_error)? {
            if e.step.as_deref() != Some(step.id.as_str()) {
                continue;
            }
            if e.kind == drctl_engine::decide::kind::RETRIED {
                kept = None;
            } else if e.kind == DEADLINE {
                kept = e.detail.as_deref().and_then(|d| d.strip_prefix("until ")).and_then(crate::times::parse_rfc3339);
            }
        }
        let deadline = match kept {
            Some(d) => d,
            None => {
                let d = now + duration;
                let detail = format!("until {}", crate::times::rfc3339(d));
                // Not kept, the step still waits its whole time now; only a
                // resume after an interruption would start it again.
                if let Err(e) = self.state.record_event(execution, now, Some(&step.id), DEADLINE, Some(&detail)) {
                    tracing::warn!(execution, step = %step.id, error = %e, "the step's deadline could not be journaled");
                }
                d
            }
        };
        Ok((deadline, deadline.duration_since(now).unwrap_or_default()))
    }

    fn wait_for(step: &StepSpec) -> Duration {
        step.timeout.unwrap_or(Duration::from_secs(600))
    }
}

/// The journal event that keeps a step's deadline (`wait`, `within`).
pub(crate) const DEADLINE: &str = "deadline";

/// An action's note or error with the secrets of any URL in it hidden
/// (a webhook's path, a password in a connection URL).
fn redacted(outcome: Result<Note, ActionError>) -> Result<Note, ActionError> {
    use drctl_core::redact::text;
    match outcome {
        Ok(note) => Ok(note.map(|n| text(&n))),
        Err(ActionError::Transient(e)) => Err(ActionError::Transient(text(&e))),
        Err(ActionError::Fatal(e)) => Err(ActionError::Fatal(text(&e))),
    }
}

impl Actions for RealActions {
    fn run<'a>(
        &'a self,
        execution: &'a str,
        attempt: u32,
        step: &'a StepSpec,
    ) -> BoxFuture<'a, Result<Note, ActionError>> {
        Box::pin(async move {
            // Every note and error an action returns passes the one
            // redaction on its way to the journal, the output and the page.
            let outcome = async {
                match call(step)? {
                    Call::Wait { duration } => {
                        let (deadline, left) = self.deadline(execution, step, duration)?;
                        self.clock.sleep(left).await;
                        let resumed = if left < duration {
                            format!(", {} of it after an interruption", drctl_core::duration::format_duration(left))
                        } else {
                            String::new()
                        };
                        Ok(Some(format!(
                            "waited {} (until {}{resumed})",
                            drctl_core::duration::format_duration(duration),
                            crate::times::rfc3339(deadline)
                        )))
                    }
                    Call::Exec { command, env, cwd } => self.exec(execution, attempt, step, command, env, cwd).await,
                    Call::HttpHealth { url, within, interval, expect_status } => {
                        let (_, left) = self.deadline(execution, step, within)?;
                        self.health(&url, left, interval, expect_status).await
                    }
                    call @ (Call::HttpRequest { .. } | Call::Notify { .. }) => {
                        self.request(execution, step, call).await
                    }
                    Call::PostgresFence { datastore, zone } => self.fence(execution, step, datastore, zone).await,
                    Call::PostgresPromote { datastore, to_zone, force: _ } => {
                        self.promote(execution, step, &datastore, &to_zone).await
                    }
                    Call::RdsPromoteReadReplica { datastore, to_zone } => {
                        self.rds_promote_read_replica(step, datastore, to_zone).await
                    }
                    Call::RdsFailoverDbCluster { datastore, to_zone } => {
                        self.rds_failover_db_cluster(step, datastore, to_zone).await
                    }
                    Call::S3PromoteReplica { datastore, to_zone } => {
                        self.s3_promote_replica(step, datastore, to_zone).await
                    }
                    Call::Route53Upsert { zone_id, name, values, record_type, ttl } => {
                        self.route53_upsert(step, zone_id, name, values, record_type, ttl).await
                    }
                    Call::Route53Failover { zone_id, name, service } => {
                        self.route53_failover(step, zone_id, name, service).await
                    }
                    Call::DnsFailover { service } => self.dns_failover(step, service).await,
                    Call::ServiceFailover { service } => self.service_failover(step, service).await,
                    // The engine waits for approvals itself; one never reaches here.
                    Call::Approval { .. } => Err(ActionError::Fatal("an approval is the engine's to wait for".into())),
                }
            }
            .await;
            redacted(outcome)
        })
    }
}

/// The actions one by one, without the engine: what each does to the
/// world, what it answers, and which failures are worth a retry. The
/// PostgreSQL promote runs against a real primary and standby.
#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TOPOLOGY: &str =
        "version: 1\nname: t\nzones:\n  - { name: az1, region: r1 }\n  - { name: az2, region: r1 }\n\
        services:\n  - { name: web, zones: [az1, az2] }\n";

    fn actions(topology: &str) -> RealActions {
        let loaded = drctl_core::load_str(topology, std::path::Path::new("drctl.yaml"));
        RealActions {
            topo: Arc::new(loaded.topology.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics))),
            state: State::in_memory().unwrap(),
            clients: Default::default(),
            lost_zones: vec!["az1".into()],
            targets: Vec::new(),
            overrides: Default::default(),
            clock: Arc::new(drctl_runtime::SystemClock),
        }
    }

    fn step(action: &str, with: serde_json::Value) -> StepSpec {
        StepSpec {
            id: "s1".into(),
            entity: "web".into(),
            action: action.into(),
            after: Vec::new(),
            priority: 0.0,
            timeout: Some(Duration::from_secs(30)),
            attempts: 1,
            backoff: Duration::ZERO,
            with,
            from_zone: Some("az1".into()),
            to_zone: Some("az2".into()),
            rerun_safe: false,
            continue_on_failure: false,
        }
    }

    /// An HTTP server answering every request with `status`; what it
    /// received, headers and all, is kept.
    async fn answering(status: u16) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = vec![0u8; 16 * 1024];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                log.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).to_string());
                let reply = format!("HTTP/1.1 {status} S\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = sock.write_all(reply.as_bytes()).await;
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn exec_tells_the_program_which_step_it_is_and_a_failure_carries_its_stderr() {
        let a = actions(TOPOLOGY);
        let dir = std::env::temp_dir().join(format!("drctl-actions-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("env");
        let script = format!(
            "env | grep -E '^DRCTL_(EXECUTION|STEP|ATTEMPT)=' | sort > {}; echo \"$GREETING\" >> {}",
            out.display(),
            out.display()
        );
        let s = step("exec", serde_json::json!({"command": ["sh", "-c", script], "env": {"GREETING": "hello"}}));
        assert_eq!(a.run("e1", 2, &s).await, Ok(Some("sh exited 0".into())));
        let seen = std::fs::read_to_string(&out).unwrap();
        assert_eq!(seen, "DRCTL_ATTEMPT=2\nDRCTL_EXECUTION=e1\nDRCTL_STEP=s1\nhello\n");

        let s = step("exec", serde_json::json!({"command": ["sh", "-c", "echo one >&2; echo two >&2; exit 3"]}));
        assert_eq!(a.run("e1", 1, &s).await, Err(ActionError::Fatal("sh exited 3: one | two".into())));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn http_request_retries_only_what_may_pass_and_sends_one_idempotency_key() {
        let a = actions(TOPOLOGY);
        let (unavailable, seen) = answering(503).await;
        let s = step("http.request", serde_json::json!({"url": unavailable, "method": "post", "body": {"a": 1}}));
        assert!(matches!(a.run("e1", 1, &s).await, Err(ActionError::Transient(m)) if m.ends_with(": 503")));
        assert!(matches!(a.run("e1", 2, &s).await, Err(ActionError::Transient(_))));
        let requests = seen.lock().unwrap().clone();
        assert_eq!(requests.len(), 2);
        for r in &requests {
            assert!(r.starts_with("POST /hook "), "{r}");
            assert!(
                r.to_ascii_lowercase().contains("idempotency-key: e1/s1\r\n"),
                "the same key on every attempt: {r}"
            );
        }
        let (missing, _) = answering(404).await;
        let s = step("http.request", serde_json::json!({"url": missing}));
        assert!(matches!(a.run("e1", 1, &s).await, Err(ActionError::Fatal(m)) if m.ends_with(": 404")));
        let s = step("http.request", serde_json::json!({"url": missing, "expect_status": 404}));
        assert!(a.run("e1", 1, &s).await.is_ok(), "expect_status makes 404 the success");
    }

    #[tokio::test]
    async fn http_health_waits_for_the_status_it_expects() {
        let a = actions(TOPOLOGY);
        let (no_content, _) = answering(204).await;
        let s = step("http.health", serde_json::json!({"url": no_content, "within": "2s", "expect_status": 204}));
        assert_eq!(a.run("e1", 1, &s).await, Ok(Some(format!("{no_content} healthy"))));
        let s = step("http.health", serde_json::json!({"url": no_content, "within": "0s", "expect_status": 200}));
        assert!(matches!(a.run("e1", 1, &s).await, Err(ActionError::Transient(m)) if m.contains("not healthy within")));
    }

    #[tokio::test]
    async fn a_step_whose_parameters_do_not_fit_fails_for_good_naming_them() {
        let a = actions(TOPOLOGY);
        let s = step("exec", serde_json::json!({"command": "rm -rf /", "cwd": ["x"]}));
        assert_eq!(
            a.run("e1", 1, &s).await,
            Err(ActionError::Fatal(
                "exec: `command`: must be a list; `cwd`: must be a single value, not a list or a mapping".into()
            ))
        );
        let s = step("teleport", serde_json::json!({}));
        assert_eq!(a.run("e1", 1, &s).await, Err(ActionError::Fatal("unknown action `teleport`".into())));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_promote_fences_the_old_primary_then_promotes_the_standby_it_caught_up() {
        let pg = drctl_testkit::PgPair::start();
        pg.psql(pg.primary_port, "CREATE TABLE t (v int); INSERT INTO t VALUES (1), (2), (3)");
        let a = actions(&pg.shop_topology("", ""));
        let mut s = step("postgres.promote", serde_json::json!({"datastore": "orders-db"}));
        s.entity = "orders-db".into();
        let note = a.run("e1", 1, &s).await.unwrap().unwrap_or_default();
        assert!(note.contains("az2"), "{note}");
        assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "f", "the standby is the primary now");
        assert_eq!(pg.psql(pg.standby_port, "SELECT count(*) FROM t"), "3", "with every write the old one took");
        let refused = pg.try_psql(pg.primary_port, "INSERT INTO t VALUES (4)");
        assert!(refused.is_err(), "the old primary takes no more writes: {refused:?}");
        assert_eq!(a.state.placements().unwrap(), [("orders-db".to_string(), "az2".to_string())]);
        // Run again (a resume after a crash between the promote and the
        // journal): it checks the world, finds the promote done, does no harm.
        let again = a.run("e1", 2, &s).await.unwrap().unwrap_or_default();
        assert!(again.contains("az2: already the primary"), "{again}");
        assert_eq!(pg.psql(pg.standby_port, "SELECT count(*) FROM t"), "3");
    }
}
