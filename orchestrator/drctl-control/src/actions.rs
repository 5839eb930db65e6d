//! The actions that act on the world, one arm per [`Action`]: the engine
//! calls [`RealActions`] for every step but approvals. Each action checks
//! the world first, so that running it again after a crash does no harm.

use crate::live::Clients;
use drctl_core::action::{Action, Body, Call};
use drctl_core::topology::{EntitySpec, Location, RouteKind, Topology};
use drctl_engine::{ActionError, Actions, Note, StepSpec};
use drctl_providers::{http, postgres};
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
    /// The commander forced the run: an unfenceable member, a lag over
    /// `max_lag` or a catch-up past its time are noted, not refused.
    pub(crate) force: bool,
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

    fn wait_for(step: &StepSpec) -> Duration {
        step.timeout.unwrap_or(Duration::from_secs(600))
    }

    /// Points a service's route53 record at the zones outside the scope.
    async fn switch_route(&self, route: &drctl_core::topology::Route, wait: Duration) -> Result<String, ActionError> {
        let values: Vec<String> = route
            .records
            .iter()
            .filter(|(z, _)| !self.lost_zones.contains(&self.topo.zones[*z].name))
            .map(|(_, v)| v.clone())
            .collect();
        if values.is_empty() {
            return Err(ActionError::Fatal(format!("every zone of {} is lost: no record to answer with", route.name)));
        }
        if route.kind == RouteKind::LabDns {
            let server = route
                .server
                .as_deref()
                .ok_or_else(|| ActionError::Fatal("the lab-dns route has no `server`".into()))?;
            let zone = route.zone_id.clone().unwrap_or_else(|| drctl_providers::dns::parent_zone(&route.name));
            let timeout = wait.min(Duration::from_secs(10));
            return drctl_providers::dns::replace_a(server, &zone, &route.name, route.ttl as u32, &values, timeout)
                .await
                .map_err(|e| match e {
                    drctl_providers::Error::Refused(m) => ActionError::Fatal(m),
                    other => ActionError::Transient(other.to_string()),
                });
        }
        let zone_id = route.zone_id.as_deref().ok_or_else(|| ActionError::Fatal("the route has no zone_id".into()))?;
        let client = drctl_aws::route53::client(self.clients.sdk().await);
        drctl_aws::route53::upsert(&client, zone_id, &route.name, &route.record_type, route.ttl as i64, &values, wait)
            .await
            .map_err(aws_error)
    }

    /// The route a `route53.*` step means: its `service`, else the service
    /// whose route has this zone and name, else the step's own entity.
    fn route_for(
        &self,
        zone_id: &str,
        name: &str,
        service: &Option<String>,
        step: &StepSpec,
    ) -> Option<drctl_core::topology::Route> {
        let routes = self.topo.services().filter_map(|(_, e, s)| s.route.clone().map(|r| (e.name.clone(), r)));
        let by_service = service.as_deref().or(Some(&step.entity));
        let (zone_id, name) = (Some(zone_id), Some(name));
        let all: Vec<(String, drctl_core::topology::Route)> = routes.collect();
        all.iter()
            .find(|(_, r)| {
                zone_id.is_some()
                    && r.zone_id.as_deref() == zone_id
                    && Some(r.name.trim_end_matches('.')) == name.map(|n| n.trim_end_matches('.'))
            })
            .or_else(|| all.iter().find(|(svc, _)| Some(svc.as_str()) == by_service))
            .map(|(_, r)| r.clone())
    }

    async fn health(
        &self,
        url: &str,
        within: Duration,
        interval: Duration,
        expect_status: Option<u16>,
    ) -> Result<Note, ActionError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match http::check_status(self.clients.http(), url, Duration::from_secs(5), expect_status).await {
                Ok(()) => return Ok(Some(format!("{url} healthy"))),
                Err(why) if tokio::time::Instant::now() >= deadline => {
                    return Err(ActionError::Transient(format!("not healthy within {}s: {why}", within.as_secs_f64())))
                }
                Err(_) => tokio::time::sleep(interval).await,
            }
        }
    }

    /// SPEC §6a in order: fence every other member (and prove it), let
    /// the standby catch up with an old primary fenced while it answered,
    /// check the standby's lag once more, then promote.
    async fn promote(
        &self,
        execution: &str,
        step: &StepSpec,
        datastore: &Option<String>,
        to_zone: &Option<String>,
    ) -> Result<Note, ActionError> {
        let name = datastore.as_deref().unwrap_or(&step.entity);
        let (members, max_lag, catch_up) = crate::fence::pg_datastore(&self.topo, name)
            .ok_or_else(|| ActionError::Fatal(format!("`{name}` is not a postgres datastore")))?;
        let to = to_zone
            .as_deref()
            .or(step.to_zone.as_deref())
            .ok_or_else(|| ActionError::Fatal("no zone to promote in".into()))?;
        let target = members
            .iter()
            .find(|m| m.zone == to)
            .ok_or_else(|| ActionError::Fatal(format!("`{name}` has no member in {to}")))?;
        let who = crate::fence::Asker { datastore: name, execution, step: &step.id };
        let mut notes = Vec::new();
        // The old primary's last WAL, when it was fenced while it answered.
        let mut catch_up_to: Option<Option<postgres::Lsn>> = None;
        for m in members.iter().filter(|m| m.zone != to) {
            let outcome = crate::fence::fence_member(m, &who, self.force).await.map_err(|why| {
                ActionError::Fatal(format!(
                    "not promoting {name} in {to}: {why}. Nothing was promoted; members fenced so far stay fenced"
                ))
            })?;
            match &outcome {
                crate::fence::Outcome::Answered(postgres::Fenced::Closed { final_lsn, .. }) => {
                    catch_up_to =
                        Some(Some(catch_up_to.flatten().map_or(*final_lsn, |l: postgres::Lsn| l.max(*final_lsn))));
                }
                crate::fence::Outcome::Answered(postgres::Fenced::Already) if catch_up_to.is_none() => {
                    catch_up_to = Some(None)
                }
                _ => {}
            }
            tracing::info!(execution, datastore = name, zone = %m.zone, outcome = %outcome.describe(&m.zone), "fence");
            notes.push(outcome.describe(&m.zone));
        }
        // An earlier attempt already promoted it (a crash, or a lost answer,
        // between the promote and the journal): the others are fenced
        // again above; there is nothing to catch up and nothing to promote.
        if postgres::is_open_primary(&target.url, Duration::from_secs(5)).await {
            self.state.set_placement(name, to).map_err(|e| ActionError::Transient(e.to_string()))?;
            notes.push(format!("{to}: already the primary (promoted by an earlier attempt)"));
            return Ok(Some(notes.join("; ")));
        }
        match catch_up_to {
            Some(lsn) => match crate::fence::catch_up(target, lsn, catch_up).await {
                Ok(n) => notes.push(n),
                Err(e) if self.force => notes.push(format!("NOT CAUGHT UP ({e}; --force)")),
                Err(e) => {
                    return Err(ActionError::Fatal(format!(
                        "{e}; not promoting (writes the old primary acknowledged would be lost): the old primary stays fenced, `--force` promotes anyway"
                    )))
                }
            },
            // No old primary answered: the last recorded lag, aged, is all there is.
            None => {
                if let Some(max) = max_lag {
                    let lag = crate::failover::recorded_lag(&*self.state, name, to).map_err(|e| ActionError::Transient(e.to_string()))?;
                    let over = match lag {
                        Some((l, _)) => l > max.as_secs_f64(),
                        None => true,
                    };
                    let how = lag.map_or("unknown (no sample recorded)".to_string(), |(l, how)| format!("{l:.1}s ({how})"));
                    if over && !self.force {
                        return Err(ActionError::Fatal(format!(
                            "the standby in {to} is behind by {how}, over max_lag {}s, checked again just before the promote; not promoting (the old primary stays fenced): --force to promote anyway",
                            max.as_secs_f64()
                        )));
                    }
                    notes.push(format!("lag of the standby in {to}: {how}{}", if over { " (over max_lag; --force)" } else { "" }));
                }
            }
        }
        let what = postgres::promote(&target.url, step.timeout.unwrap_or(Duration::from_secs(60)))
            .await
            .map_err(provider_error)?;
        self.state.set_placement(name, to).map_err(|e| ActionError::Transient(e.to_string()))?;
        notes.push(format!("{to}: {what}"));
        Ok(Some(notes.join("; ")))
    }
}

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
                        tokio::time::sleep(duration).await;
                        Ok(Some(format!("waited {}", drctl_core::duration::format_duration(duration))))
                    }
                    Call::Exec { command, env, cwd } => {
                        let (prog, args) = command
                            .split_first()
                            .ok_or_else(|| ActionError::Fatal("`command` must be a non-empty list".into()))?;
                        let mut cmd = tokio::process::Command::new(prog);
                        cmd.args(args).kill_on_drop(true);
                        // What the program needs to make its own effect happen once.
                        cmd.env("DRCTL_EXECUTION", execution)
                            .env("DRCTL_STEP", &step.id)
                            .env("DRCTL_ATTEMPT", attempt.to_string());
                        if let Some(dir) = cwd {
                            cmd.current_dir(dir);
                        }
                        cmd.envs(env);
                        let out =
                            cmd.output().await.map_err(|e| ActionError::Fatal(format!("cannot run {prog}: {e}")))?;
                        if out.status.success() {
                            Ok(Some(format!("{prog} exited 0")))
                        } else {
                            let err = String::from_utf8_lossy(&out.stderr);
                            let tail: String = err
                                .lines()
                                .rev()
                                .take(3)
                                .collect::<Vec<_>>()
                                .into_iter()
                                .rev()
                                .collect::<Vec<_>>()
                                .join(" | ");
                            Err(ActionError::Fatal(format!(
                                "{prog} exited {}: {tail}",
                                out.status.code().unwrap_or(-1)
                            )))
                        }
                    }
                    Call::HttpHealth { url, within, interval, expect_status } => {
                        self.health(&url, within, interval, expect_status).await
                    }
                    call @ (Call::HttpRequest { .. } | Call::Notify { .. }) => {
                        let (url, method, headers, body, expected) = match call {
                            Call::Notify { url, text, channel } => {
                                let mut body = serde_json::json!({ "text": text });
                                if let Some(c) = channel {
                                    body["channel"] = c.into();
                                }
                                (url, "POST".to_string(), Vec::new(), Some(Body::Json(body)), None)
                            }
                            Call::HttpRequest { url, method, headers, body, expect_status } => {
                                (url, method, headers, body, expect_status)
                            }
                            _ => unreachable!("matched above"),
                        };
                        let client = self.clients.http();
                        let mut req = client.request(
                            reqwest::Method::from_bytes(method.as_bytes())
                                .map_err(|e| ActionError::Fatal(e.to_string()))?,
                            &url,
                        );
                        req = match body {
                            Some(Body::Text(t)) => req.body(t),
                            Some(Body::Json(j)) => req.json(&j),
                            None => req,
                        };
                        for (k, v) in headers {
                            req = req.header(k, v);
                        }
                        // The same key on every attempt and after a resume: a receiver
                        // that honours it applies the effect once (SPEC §6a).
                        req = req.header("Idempotency-Key", format!("{execution}/{}", step.id));
                        let resp = req
                            .timeout(Duration::from_secs(30))
                            .send()
                            .await
                            .map_err(|e| ActionError::Transient(format!("{url}: {e}")))?;
                        let status = resp.status().as_u16();
                        let ok = expected.map_or((200..300).contains(&status), |e| e == status);
                        match (ok, status) {
                            (true, _) => Ok(Some(format!("{method} {url}: {status}"))),
                            (false, s) if s >= 500 || s == 429 => {
                                Err(ActionError::Transient(format!("{method} {url}: {s}")))
                            }
                            (false, s) => Err(ActionError::Fatal(format!("{method} {url}: {s}"))),
                        }
                    }
                    Call::PostgresFence { datastore, zone } => {
                        let name = datastore.as_deref().unwrap_or(&step.entity);
                        let (members, _, _) = crate::fence::pg_datastore(&self.topo, name)
                            .ok_or_else(|| ActionError::Fatal(format!("`{name}` is not a postgres datastore")))?;
                        let zone = zone.as_deref().or(step.from_zone.as_deref());
                        let m = members
                            .iter()
                            .find(|m| Some(m.zone.as_str()) == zone)
                            .or(members.first())
                            .ok_or_else(|| ActionError::Fatal("no member".into()))?;
                        let who = crate::fence::Asker { datastore: name, execution, step: &step.id };
                        crate::fence::fence_member(m, &who, self.force)
                            .await
                            .map(|o| Some(o.describe(&m.zone)))
                            .map_err(ActionError::Fatal)
                    }
                    Call::PostgresPromote { datastore, to_zone, force: _ } => {
                        self.promote(execution, step, &datastore, &to_zone).await
                    }
                    Call::RdsPromoteReadReplica { datastore, to_zone } => {
                        let (name, ds) = self.datastore(&datastore, step)?;
                        let to = Self::to_zone(&to_zone, step)?;
                        let instance = ds
                            .replicas
                            .iter()
                            .find(|m| self.topo.zones[m.zone].name == to)
                            .and_then(|m| match &m.location {
                                Location::RdsInstance { instance } => Some(instance.clone()),
                                _ => None,
                            })
                            .ok_or_else(|| ActionError::Fatal(format!("{name} has no replica instance in {to}")))?;
                        // `max_lag` once more, just before the promote (after any approval wait).
                        let max_lag = self.topo.entity(self.topo.entity_id(name).unwrap_or_default()).failover.max_lag;
                        if let Some(max) = max_lag {
                            let (ok, lag) = crate::preflight::rds_lag(
                                &self.clients,
                                ds.region.as_deref(),
                                &instance,
                                max,
                                self.force,
                            )
                            .await;
                            if !ok {
                                return Err(ActionError::Fatal(format!("{lag}; not promoting")));
                            }
                        }
                        let client = drctl_aws::rds::Rds::new(self.clients.sdk().await, ds.region.as_deref());
                        let what = drctl_aws::rds::promote_read_replica(&client, &instance, Self::wait_for(step))
                            .await
                            .map_err(aws_error)?;
                        self.state.set_placement(name, to).map_err(|e| ActionError::Transient(e.to_string()))?;
                        Ok(Some(what))
                    }
                    Call::RdsFailoverDbCluster { datastore, to_zone } => {
                        let (name, ds) = self.datastore(&datastore, step)?;
                        let cluster =
                            ds.cluster.clone().ok_or_else(|| ActionError::Fatal(format!("{name} has no cluster")))?;
                        let client = drctl_aws::rds::Rds::new(self.clients.sdk().await, ds.region.as_deref());
                        let zones = crate::live::zone_map(&self.topo);
                        let members =
                            drctl_aws::rds::cluster_members(&client, &cluster, &zones).await.map_err(aws_error)?;
                        let writer = members.iter().find(|(_, w, _)| *w).map(|(i, _, z)| (i.id.clone(), z.clone()));
                        // A targeted cluster moves off its writer; on a zone loss it
                        // moves only when the writer is in a lost zone.
                        let targeted = self.targets.iter().any(|t| t == name);
                        if let Some((id, zone)) = &writer {
                            if !targeted && !self.lost_zones.contains(zone) {
                                self.state
                                    .set_placement(name, zone)
                                    .map_err(|e| ActionError::Transient(e.to_string()))?;
                                return Ok(Some(format!("{id} in {zone} already writes, outside the lost zones")));
                            }
                        }
                        let wanted = to_zone.as_deref().or(step.to_zone.as_deref());
                        let candidates: Vec<_> = members
                            .iter()
                            .filter(|(i, _, z)| {
                                !self.lost_zones.contains(z) && writer.as_ref().is_none_or(|(w, _)| *w != i.id)
                            })
                            .collect();
                        let target = candidates
                            .iter()
                            .find(|(_, _, z)| wanted.is_none_or(|w| w == z))
                            .or(candidates.first())
                            .ok_or_else(|| {
                                ActionError::Fatal(format!("{cluster} has no other member outside the lost zones"))
                            })?;
                        let what = drctl_aws::rds::failover_cluster(
                            &client,
                            &cluster,
                            &target.0.id,
                            &zones,
                            Self::wait_for(step),
                        )
                        .await
                        .map_err(aws_error)?;
                        self.state.set_placement(name, &target.2).map_err(|e| ActionError::Transient(e.to_string()))?;
                        Ok(Some(what))
                    }
                    Call::S3PromoteReplica { datastore, to_zone } => {
                        let (name, ds) = self.datastore(&datastore, step)?;
                        let to = Self::to_zone(&to_zone, step)?;
                        // Any bucket of the datastore but the current primary's: after a
                        // failover, failing back promotes the topology's own primary bucket.
                        if !ds.primary.iter().chain(&ds.replicas).any(|m| self.topo.zones[m.zone].name == to) {
                            return Err(ActionError::Fatal(format!("{name} has no bucket in {to}")));
                        }
                        let native =
                            ds.replication.as_ref().is_some_and(|r| r.by == drctl_core::topology::ReplicationBy::S3);
                        let note = if native {
                            // S3 replicates by itself: turn its rules around, verified.
                            let all = crate::live::buckets(&self.clients, &self.topo, ds).await;
                            let (new, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|b| b.zone == to);
                            let new = new
                                .first()
                                .ok_or_else(|| ActionError::Fatal(format!("{name} has no bucket in {to}")))?;
                            drctl_aws::s3::turn_native_replication(new, &others).await.map_err(aws_error)?
                        } else {
                            "replication copies from it".to_string()
                        };
                        self.state.set_placement(name, to).map_err(|e| ActionError::Transient(e.to_string()))?;
                        Ok(Some(format!("the bucket in {to} is now the primary; {note}")))
                    }
                    Call::Route53Upsert { zone_id, name, values, record_type, ttl } => {
                        let client = drctl_aws::route53::client(self.clients.sdk().await);
                        let wait = Self::wait_for(step);
                        drctl_aws::route53::upsert(&client, &zone_id, &name, &record_type, ttl, &values, wait)
                            .await
                            .map(Some)
                            .map_err(aws_error)
                    }
                    Call::Route53Failover { zone_id, name, service } => {
                        let route = self.route_for(&zone_id, &name, &service, step).ok_or_else(|| {
                            ActionError::Fatal("no service route matches this step's zone_id and name".into())
                        })?;
                        self.switch_route(&route, Self::wait_for(step)).await.map(Some)
                    }
                    Call::DnsFailover { service } => {
                        let name = service.as_deref().unwrap_or(&step.entity);
                        let route = self
                            .topo
                            .entity_id(name)
                            .and_then(|i| match &self.topo.entity(i).spec {
                                EntitySpec::Service(svc) => svc.route.clone(),
                                EntitySpec::Datastore(_) => None,
                            })
                            .filter(|r| r.kind == RouteKind::LabDns)
                            .ok_or_else(|| ActionError::Fatal(format!("service `{name}` has no lab-dns route")))?;
                        self.switch_route(&route, Self::wait_for(step)).await.map(Some)
                    }
                    Call::ServiceFailover { service } => {
                        let name = service.as_deref().unwrap_or(&step.entity);
                        let e = self.topo.entity(
                            self.topo
                                .entity_id(name)
                                .ok_or_else(|| ActionError::Fatal(format!("no service {name}")))?,
                        );
                        let EntitySpec::Service(svc) = &e.spec else {
                            return Err(ActionError::Fatal(format!("{name} is not a service")));
                        };
                        let mut notes = Vec::new();
                        if let Some(route) = &svc.route {
                            notes.push(self.switch_route(route, Self::wait_for(step)).await?);
                        }
                        if let Some(h) = &svc.health {
                            if let Some(n) =
                                self.health(&h.url, Duration::from_secs(60), Duration::from_millis(250), None).await?
                            {
                                notes.push(n);
                            }
                        }
                        if notes.is_empty() {
                            notes.push("no route or health check to act on".into());
                        }
                        Ok(Some(notes.join("; ")))
                    }
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
            force: false,
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
        let script = format!("env | grep ^DRCTL_ | sort > {}; echo \"$GREETING\" >> {}", out.display(), out.display());
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
