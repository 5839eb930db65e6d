//! Readiness: would the failover of each zone and region work, if it were
//! declared now? (docs/readiness.md)
//!
//! A declaration finds out that a fence command no longer answers or a
//! standby stopped receiving only when someone declares. Readiness runs the
//! declaration's own plan and preflight ([`crate::failover`],
//! [`crate::preflight`]) for every scope ahead of time, without acting,
//! plus what only matters before a disaster: the fences' `check` commands,
//! runbook URLs, protection left after a failover, member clocks and the
//! age of the last drill. Each problem is a [`Finding`]: `error` when the
//! declaration would be refused or a step would fail, `warning` when it
//! would work worse than the contract. A scope with no error is ready.
//!
//! Checks of one evaluation run concurrently, with a bound per endpoint
//! (a datastore's members, an HTTP host) and one over all, and each
//! endpoint is asked once per evaluation however many scopes need it.

use crate::failover::{self, Check, Declaration};
use crate::live::Clients;
use drctl_core::action::{Action, Call};
use drctl_core::plan::plan_with;
use drctl_core::schedule::Policy;
use drctl_core::status::BackupStatus;
use drctl_core::topology::{DatastoreKind, EntitySpec, Location, Topology};
use drctl_engine::StepSpec;
use drctl_providers::postgres;
use drctl_state::State;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How an evaluation asks the world.
#[derive(Debug, Clone)]
pub struct Options {
    /// At most this many checks at once against one endpoint.
    pub per_endpoint: usize,
    /// At most this many checks at once in all.
    pub total: usize,
    /// How long one check may take.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { per_endpoint: 16, total: 512, timeout: Duration::from_secs(5) }
    }
}

/// One evaluation of every scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub evaluated_at: String,
    pub scopes: Vec<ScopeReport>,
}

/// The name under which the latest evaluation is kept in the state store
/// (controllers that follow serve it; `drctl status` reads it).
pub const PUBLISHED: &str = "readiness";

impl Report {
    /// When it was evaluated.
    pub fn at(&self) -> Option<SystemTime> {
        chrono::DateTime::parse_from_rfc3339(&self.evaluated_at).ok().map(SystemTime::from)
    }

    /// Every scope is ready.
    pub fn ready(&self) -> bool {
        self.scopes.iter().all(|s| s.ready)
    }

    /// How many findings of each severity, errors first.
    pub fn counts(&self) -> (usize, usize) {
        let all = self.scopes.iter().flat_map(|s| &s.findings);
        let errors = all.clone().filter(|f| f.severity == Severity::Error).count();
        (errors, all.count() - errors)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeName {
    pub kind: ScopeKind,
    pub name: String,
}

impl std::fmt::Display for ScopeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            ScopeKind::Zone => "zone",
            ScopeKind::Region => "region",
        };
        write!(f, "{kind} {}", self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeKind {
    Zone,
    Region,
}

/// The failover of one zone or region, judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeReport {
    pub scope: ScopeName,
    /// No finding is an `error`.
    pub ready: bool,
    /// The plan's estimated time to the end of the failover.
    pub rto_estimate_s: f64,
    /// The entities whose estimated RTO misses their target.
    pub misses: Vec<Miss>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Miss {
    pub entity: String,
    pub rto_estimate_s: f64,
    pub rto_target_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub entity: String,
    /// What was checked: `plan`, `rto`, `fence`, `lag`, `standby`, `route`,
    /// `aws`, `runbook`, `health`, `protection`, `clock`, `drill`, `topology`.
    pub check: String,
    pub severity: Severity,
    pub message: String,
    /// When this finding was first seen (carried from one evaluation to the next).
    pub since: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// The scopes of a topology: each zone, then each region when there is
/// more than one (a region holding every zone has nowhere to fail to).
pub fn scopes(topo: &Topology) -> Vec<ScopeName> {
    let mut out: Vec<ScopeName> =
        topo.zones.iter().map(|z| ScopeName { kind: ScopeKind::Zone, name: z.name.clone() }).collect();
    let mut regions: Vec<&str> = Vec::new();
    for z in &topo.zones {
        if !regions.contains(&z.region.as_str()) {
            regions.push(&z.region);
        }
    }
    if regions.len() > 1 {
        out.extend(regions.into_iter().map(|r| ScopeName { kind: ScopeKind::Region, name: r.to_string() }));
    }
    out
}

/// Bounds and memory of one evaluation: checks wait for a slot of their
/// endpoint and of the whole, and an answer is asked for once.
struct Ctx<'a> {
    topo: &'a Topology,
    state: &'a State,
    clients: &'a Clients,
    opts: &'a Options,
    now: SystemTime,
    total: tokio::sync::Semaphore,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    answers: Mutex<HashMap<String, Answer>>,
}

/// One endpoint's answer, shared by every check that asks it in an evaluation.
type Answer = Arc<tokio::sync::OnceCell<Result<String, String>>>;

impl Ctx<'_> {
    /// Runs `f` in a slot of `endpoint`.
    async fn bounded<T>(&self, endpoint: &str, f: impl Future<Output = T>) -> T {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(endpoint.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.opts.per_endpoint.max(1))))
            .clone();
        // Neither semaphore is ever closed: acquiring cannot fail.
        let _all = self.total.acquire().await;
        let _one = slot.acquire().await;
        f.await
    }

    /// The answer to `key`, asked once per evaluation (in a slot of `endpoint`).
    async fn once<F>(&self, key: String, endpoint: &str, f: F) -> Result<String, String>
    where
        F: Future<Output = Result<String, String>>,
    {
        let cell = self.answers.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_default().clone();
        cell.get_or_init(|| self.bounded(endpoint, f)).await.clone()
    }
}

/// A finding that concerns the scopes losing any of `zones` (all scopes
/// when empty), or those whose plan fails `entity` over (`in_plan`).
struct Shared {
    zones: Vec<String>,
    in_plan: bool,
    finding: Finding,
}

/// One evaluation of every scope, at `now`. `previous` carries each
/// finding's `since` over. Changes nothing in the world.
///
/// `backups`: each backed-up datastore's backup RPO and last restore test,
/// as the backup tool's driver read them (empty: no backup findings).
pub async fn evaluate(
    topo: &Topology,
    state: &State,
    clients: &Clients,
    opts: &Options,
    now: SystemTime,
    previous: Option<&Report>,
    backups: &[BackupStatus],
) -> Report {
    let ctx = Ctx {
        topo,
        state,
        clients,
        opts,
        now,
        total: tokio::sync::Semaphore::new(opts.total.max(1)),
        slots: Default::default(),
        answers: Default::default(),
    };
    let (mut shared, scopes) =
        futures::join!(shared_findings(&ctx), join_all(scopes(topo).into_iter().map(|s| evaluate_scope(&ctx, s))));
    shared.extend(backup_findings(topo, backups, now));
    let at = failover::rfc3339(now);
    let mut out = Vec::new();
    for (mut report, plan_entities, lost) in scopes {
        for s in &shared {
            let concerns = if s.in_plan {
                plan_entities.contains(&s.finding.entity)
            } else {
                s.zones.is_empty() || s.zones.iter().any(|z| lost.contains(z))
            };
            if concerns {
                report.findings.push(s.finding.clone());
            }
        }
        // A datastore left without a standby says so once, as `protection`,
        // with how to re-protect it: not again as a standby that cannot be promoted.
        let unprotected: Vec<String> =
            report.findings.iter().filter(|f| f.check == "protection").map(|f| f.entity.clone()).collect();
        report.findings.retain(|f| f.check != "standby" || !unprotected.contains(&f.entity));
        report.findings.sort_by(|a, b| (a.severity, &a.entity, &a.check).cmp(&(b.severity, &b.entity, &b.check)));
        report.findings.dedup_by(|a, b| a.entity == b.entity && a.check == b.check && a.message == b.message);
        for f in &mut report.findings {
            f.since = previous
                .and_then(|p| p.scopes.iter().find(|s| s.scope == report.scope))
                .and_then(|s| {
                    s.findings.iter().find(|o| o.entity == f.entity && o.check == f.check && o.severity == f.severity)
                })
                .map_or_else(|| at.clone(), |o| o.since.clone());
        }
        report.ready = !report.findings.iter().any(|f| f.severity == Severity::Error);
        out.push(report);
    }
    Report { evaluated_at: at, scopes: out }
}

fn finding(entity: &str, check: &str, severity: Severity, message: String) -> Finding {
    Finding { entity: entity.to_string(), check: check.to_string(), severity, message, since: String::new() }
}

/// One scope: its plan, its misses, and its steps' checks. Also returns
/// the names of the entities the plan fails over and the zones it loses.
async fn evaluate_scope(ctx: &Ctx<'_>, scope: ScopeName) -> (ScopeReport, BTreeSet<String>, Vec<String>) {
    let decl = Declaration {
        zones: if scope.kind == ScopeKind::Zone { vec![scope.name.clone()] } else { Vec::new() },
        regions: if scope.kind == ScopeKind::Region { vec![scope.name.clone()] } else { Vec::new() },
        targets: Vec::new(),
        reason: format!("readiness of {scope}"),
        overrides: Default::default(),
        parallel: None,
    };
    let lost = decl.lost_zones(ctx.topo);
    let mut report = ScopeReport { scope, ready: false, rto_estimate_s: 0.0, misses: Vec::new(), findings: Vec::new() };
    let mut obs = match failover::observations(ctx.topo, ctx.state) {
        Ok(o) => o,
        Err(e) => {
            report.findings.push(finding("", "plan", Severity::Error, format!("the state store cannot be read: {e}")));
            return (report, BTreeSet::new(), lost);
        }
    };
    let mut checks = Vec::new();
    crate::preflight::discover_clusters(ctx.topo, ctx.clients, &decl, &mut obs, &mut checks).await;
    for c in checks.into_iter().filter(|c| !c.ok) {
        report.findings.push(finding(&c.subject, "aws", Severity::Error, c.detail));
    }
    let plan = match plan_with(ctx.topo, &decl.scope(), &obs, None, Policy::Prioritised) {
        Ok(p) => p,
        Err(e) => {
            report.findings.push(finding("", "plan", Severity::Error, e.to_string()));
            return (report, BTreeSet::new(), lost);
        }
    };
    report.rto_estimate_s = plan.plan.makespan_s;
    for e in plan.plan.entities.iter().filter(|e| !e.meets_rto) {
        report.misses.push(Miss {
            entity: e.name.clone(),
            rto_estimate_s: e.rto_estimate_s,
            rto_target_s: e.rto_target_s,
        });
        report.findings.push(finding(
            &e.name,
            "rto",
            Severity::Warning,
            format!(
                "the failover would take about {:.0}s, over its RTO target {}",
                e.rto_estimate_s,
                e.rto_target_s.map_or("?".to_string(), |t| format!("{t:.0}s"))
            ),
        ));
    }
    for u in &plan.plan.unrecoverable {
        report.findings.push(finding(
            &u.name,
            "protection",
            Severity::Error,
            unrecoverable(ctx.topo, &u.name, &u.reason),
        ));
    }
    let in_plan: BTreeSet<String> = plan.plan.entities.iter().map(|e| e.name.clone()).collect();
    let specs = failover::steps(ctx.topo, &plan, "readiness");
    let per_step = join_all(specs.iter().map(|s| step_findings(ctx, &decl, &lost, s))).await;
    report.findings.extend(per_step.into_iter().flatten());
    report.findings.extend(service_health(ctx, &in_plan, &lost).await);
    (report, in_plan, lost)
}

/// What a scope that cannot fail `name` over should do about it.
fn unrecoverable(topo: &Topology, name: &str, reason: &str) -> String {
    let how = topo
        .entity_id(name)
        .map(|id| match &topo.entity(id).spec {
            EntitySpec::Datastore(_) => {
                "give it a replica in another zone (for PostgreSQL, a standby in another zone)".to_string()
            }
            EntitySpec::Service(_) => "run it in another zone too (`zones:`)".to_string(),
        })
        .unwrap_or_default();
    format!("it cannot be failed over: {reason}; {how}")
}

/// The checks of one step, in a slot of its entity's endpoint: the
/// preflight's, the fence checks of the members it would fence, and the
/// URLs and programs its runbook step needs.
async fn step_findings(ctx: &Ctx<'_>, decl: &Declaration, lost: &[String], s: &StepSpec) -> Vec<Finding> {
    let action = Action::parse(&s.action);
    let zones_map = crate::live::zone_map(ctx.topo);
    let (checks, aws) = ctx
        .bounded(&format!("entity:{}", s.entity), async {
            let checks = match failover::step_checks(ctx.topo, ctx.state, decl, s, ctx.now).await {
                Ok(c) => c,
                Err(e) => vec![Check { subject: s.id.clone(), ok: false, detail: e.to_string() }],
            };
            let aws = crate::preflight::aws_step_check(ctx.topo, ctx.clients, decl, s, &zones_map, lost).await;
            (checks, aws)
        })
        .await;
    let mut out = Vec::new();
    for c in checks.into_iter().filter(|c| !c.ok) {
        out.push(finding(&s.entity, classify(action, &c.detail), Severity::Error, c.detail));
    }
    if let Some(c) = aws.filter(|c| !c.ok) {
        let check = if matches!(action, Some(Action::Route53Upsert | Action::Route53Failover | Action::ServiceFailover))
        {
            "route"
        } else {
            "aws"
        };
        out.push(finding(&s.entity, check, Severity::Error, c.detail));
    }
    if action == Some(Action::PostgresPromote) {
        out.extend(fence_checks(ctx, s).await);
    }
    if let Some(a) = action {
        out.extend(runbook_step(ctx, a, s).await);
    }
    out
}

/// The check name of a failed preflight check.
fn classify(action: Option<Action>, detail: &str) -> &'static str {
    match action {
        None => "runbook",
        Some(Action::PostgresPromote) if detail.contains("fence") => "fence",
        Some(Action::PostgresPromote) if detail.contains("behind") || detail.contains("lag") => "lag",
        Some(Action::PostgresPromote) => "standby",
        Some(Action::ServiceFailover | Action::DnsFailover | Action::Route53Upsert | Action::Route53Failover) => {
            "route"
        }
        Some(_) => "aws",
    }
}

/// The members a postgres promote would fence, with a fence `check`: each
/// check must succeed (a member that stops answering is fenced by its
/// command, which the check says would work).
async fn fence_checks(ctx: &Ctx<'_>, s: &StepSpec) -> Vec<Finding> {
    let name = s.with.get("datastore").and_then(|v| v.as_str()).unwrap_or(&s.entity);
    let Some(to) = s.with.get("to_zone").and_then(|v| v.as_str()).or(s.to_zone.as_deref()) else { return Vec::new() };
    let Some(EntitySpec::Datastore(d)) = ctx.topo.entity_id(name).map(|i| &ctx.topo.entity(i).spec) else {
        return Vec::new();
    };
    let members: Vec<(String, String, Vec<String>)> = d
        .primary
        .iter()
        .chain(&d.replicas)
        .filter_map(|m| match &m.location {
            Location::Postgres { url, fence_check: Some(check), .. } => {
                Some((ctx.topo.zones[m.zone].name.clone(), url.clone(), check.clone()))
            }
            _ => None,
        })
        .filter(|(zone, _, _)| zone != to)
        .collect();
    let runs = members.iter().map(|(zone, url, check)| async move {
        let member = postgres::Member { zone: zone.clone(), url: url.clone(), fence: None };
        let asker = crate::fence::Asker { datastore: name, execution: "readiness", step: "fence-check" };
        let key = format!("fence-check:{name}:{zone}");
        let r = ctx.once(key, &format!("fence:{name}:{zone}"), crate::fence::run_command(check, &member, &asker)).await;
        r.err().map(|why| {
            finding(
                name,
                "fence",
                Severity::Error,
                format!(
                    "the fence check of the {name} member in {zone} fails ({why}): if that member stops answering, it cannot be fenced and the declaration would be refused; repair its fence (or its `check`)"
                ),
            )
        })
    });
    join_all(runs).await.into_iter().flatten().collect()
}

/// A runbook step's own needs: an `http.health` URL that answers (any
/// HTTP answer: the service behind it may be down now), an `exec`
/// program that exists.
async fn runbook_step(ctx: &Ctx<'_>, action: Action, s: &StepSpec) -> Vec<Finding> {
    let Some(with) = s.with.as_object() else { return Vec::new() };
    match Call::decode(action, with) {
        Ok(Call::HttpHealth { url, .. }) => match answers(ctx, &url).await {
            Ok(_) => Vec::new(),
            Err(why) => vec![finding(
                &s.entity,
                "runbook",
                Severity::Error,
                format!("step {}: its health URL does not answer ({why}): the step would fail", s.id),
            )],
        },
        Ok(Call::Exec { command, .. }) => match command.first() {
            Some(prog) if !program_exists(prog) => vec![finding(
                &s.entity,
                "runbook",
                Severity::Error,
                format!("step {}: the program `{prog}` is not found (PATH, or the path as written)", s.id),
            )],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn program_exists(prog: &str) -> bool {
    if prog.contains('/') {
        return std::path::Path::new(prog).is_file();
    }
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(prog).is_file()))
}

/// Whether a URL answers at all (any HTTP status), asked once per evaluation.
async fn answers(ctx: &Ctx<'_>, url: &str) -> Result<String, String> {
    let endpoint = reqwest::Url::parse(url)
        .map(|u| format!("http:{}:{}", u.host_str().unwrap_or(""), u.port_or_known_default().unwrap_or(0)))
        .unwrap_or_else(|_| url.to_string());
    let timeout = ctx.opts.timeout;
    let http = ctx.clients.http();
    ctx.once(format!("answers:{url}"), &endpoint, async move {
        match http.get(url).timeout(timeout).send().await {
            Ok(r) => Ok(r.status().to_string()),
            Err(e) if e.is_timeout() => Err(format!("no answer within {}s", timeout.as_secs_f64())),
            Err(e) if e.is_connect() => Err(format!("cannot connect to {}", drctl_core::redact::url(url))),
            Err(e) => Err(drctl_core::redact::text(&e.to_string())),
        }
    })
    .await
}

/// The services a scope fails over whose health check does not pass now
/// where they would be served after it (each remaining zone's own URL, or
/// the shared one): a warning, the failover may still bring them up.
async fn service_health(ctx: &Ctx<'_>, in_plan: &BTreeSet<String>, lost: &[String]) -> Vec<Finding> {
    let is_lost = |z: usize| lost.contains(&ctx.topo.zones[z].name);
    let checks = ctx.topo.services().filter(|(_, e, _)| in_plan.contains(&e.name)).flat_map(|(_, e, svc)| {
        let urls: Vec<(&str, Duration)> = svc
            .health
            .as_ref()
            .map(|h| h.urls_outside(is_lost).into_iter().map(|u| (u, h.timeout)).collect())
            .unwrap_or_default();
        urls.into_iter().map(move |(url, timeout)| async move {
            let endpoint = reqwest::Url::parse(url)
                .map(|u| format!("http:{}:{}", u.host_str().unwrap_or(""), u.port_or_known_default().unwrap_or(0)))
                .unwrap_or_else(|_| url.to_string());
            let timeout = timeout.min(ctx.opts.timeout);
            let http = ctx.clients.http();
            let r = ctx
                .once(format!("health:{url}"), &endpoint, async move {
                    drctl_providers::http::check(http, url, timeout).await.map(|_| "healthy".to_string())
                })
                .await;
            r.err().map(|why| {
                finding(&e.name, "health", Severity::Warning, format!("its health check does not pass now: {why}"))
            })
        })
    });
    join_all(checks).await.into_iter().flatten().collect()
}

/// What concerns scopes beyond their plan, asked once per evaluation:
/// each PostgreSQL datastore's protection and member clocks, each
/// entity's last drill, and whether the topology and its runbooks still
/// load as they are on disk.
async fn shared_findings(ctx: &Ctx<'_>) -> Vec<Shared> {
    let mut out = Vec::new();
    let pg = ctx.topo.datastores().filter(|(_, _, d)| d.kind == DatastoreKind::Postgres).map(|(_, e, d)| async move {
        let members = crate::live::postgres_members(ctx.topo, d);
        ctx.bounded(&format!("entity:{}", e.name), async {
            let timeout = ctx.opts.timeout;
            let (m, clocks) = futures::join!(
                postgres::measure(&members, timeout),
                join_all(members.iter().map(|m| postgres::clock_offset(&m.url, timeout)))
            );
            pg_findings(ctx.topo, &e.name, d, &members, m, clocks)
        })
        .await
    });
    out.extend(join_all(pg).await.into_iter().flatten());
    out.extend(drill_findings(ctx));
    out.extend(reload_findings(ctx.topo));
    out.extend(permission_findings(ctx).await);
    out
}

/// Whether the topology names resources on AWS itself (not on an S3
/// endpoint of its own, as the lab's): only then are permissions asked.
fn on_aws(topo: &Topology) -> bool {
    topo.datastores().any(|(_, _, d)| match d.kind {
        DatastoreKind::RdsInstance | DatastoreKind::RdsCluster => true,
        DatastoreKind::S3 => {
            d.primary.iter().chain(&d.replicas).any(|m| matches!(&m.location, Location::S3 { endpoint: None, .. }))
        }
        DatastoreKind::Postgres => false,
    }) || topo
        .services()
        .any(|(_, _, s)| s.route.as_ref().is_some_and(|r| r.kind == drctl_core::topology::RouteKind::Route53))
}

/// The AWS calls a declaration (and the measuring before it) would make,
/// against what the credentials allow: the actions `drctl iam-policy --for
/// declare` prints. Concerns every scope.
async fn permission_findings(ctx: &Ctx<'_>) -> Vec<Shared> {
    if !on_aws(ctx.topo) {
        return Vec::new();
    }
    let target =
        crate::policy::Target { uses: vec![drctl_aws::iam::Use::Status, drctl_aws::iam::Use::Declare], account: None };
    let doc = crate::policy::policy(ctx.topo, &target);
    let mut actions: Vec<String> = doc["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|st| match &st["Action"] {
            serde_json::Value::String(a) => vec![a.clone()],
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        })
        .collect();
    actions.sort();
    actions.dedup();
    if actions.is_empty() {
        return Vec::new();
    }
    let sdk = ctx.clients.sdk().await;
    let verdict = ctx
        .bounded("aws:iam", async {
            match tokio::time::timeout(ctx.opts.timeout * 4, drctl_aws::iam::permitted(sdk, &actions)).await {
                Ok(v) => v,
                Err(_) => drctl_aws::iam::Verdict::Unknown(format!(
                    "IAM did not answer within {}s",
                    (ctx.opts.timeout * 4).as_secs()
                )),
            }
        })
        .await;
    let f = match verdict {
        drctl_aws::iam::Verdict::Allowed { .. } => return Vec::new(),
        drctl_aws::iam::Verdict::Missing { actions, how } => finding(
            "",
            "aws",
            Severity::Error,
            format!(
                "the credentials may not call {} ({how}): a failover step or its preflight would be refused; attach the policy `drctl iam-policy -f {} --for declare` prints",
                actions.join(", "),
                ctx.topo.file.display()
            ),
        ),
        drctl_aws::iam::Verdict::Unknown(why) => finding(
            "",
            "aws",
            Severity::Warning,
            format!("whether the credentials may make the failover's AWS calls is not known: {why}"),
        ),
    };
    vec![Shared { zones: Vec::new(), in_plan: false, finding: f }]
}

fn pg_findings(
    topo: &Topology,
    name: &str,
    d: &drctl_core::topology::Datastore,
    members: &[postgres::Member],
    m: drctl_core::status::Measurement,
    clocks: Vec<Result<f64, drctl_providers::Error>>,
) -> Vec<Shared> {
    let mut out = Vec::new();
    if let Some(primary) = &m.primary_zone {
        // A standby answers in recovery (its detail says how it receives);
        // a fenced old primary or a member that does not answer is none.
        let standbys = m
            .replicas
            .iter()
            .filter(|r| &r.zone != primary && r.detail.as_deref().is_some_and(|x| x != "fenced"))
            .count();
        if standbys == 0 {
            let others: Vec<&postgres::Member> = members.iter().filter(|x| &x.zone != primary).collect();
            let hooks: Vec<String> = d
                .primary
                .iter()
                .chain(&d.replicas)
                .filter(|x| &topo.zones[x.zone].name != primary)
                .filter_map(|x| match &x.location {
                    Location::Postgres { reprotect: Some(cmd), .. } => {
                        Some(format!("{}: run its `reprotect` command ({})", topo.zones[x.zone].name, cmd.join(" ")))
                    }
                    _ => None,
                })
                .collect();
            let how = if !hooks.is_empty() {
                hooks.join("; ")
            } else if others.is_empty() {
                "give it a standby in another zone".to_string()
            } else {
                format!(
                    "rebuild the member in {} as a standby of the primary in {primary} (pg_basebackup or pg_rewind; in the lab, healing the fault rebuilds it), or give it `reprotect: {{ command: [...] }}`",
                    others.iter().map(|x| x.zone.as_str()).collect::<Vec<_>>().join(", ")
                )
            };
            let seen: Vec<String> = m
                .replicas
                .iter()
                .map(|r| format!("{}: {}", r.zone, r.error.clone().or(r.detail.clone()).unwrap_or_default()))
                .collect();
            out.push(Shared {
                zones: vec![primary.clone()],
                in_plan: false,
                finding: finding(
                    name,
                    "protection",
                    Severity::Error,
                    format!(
                        "no standby outside the primary's zone {primary}{}: losing {primary} would lose {name}; re-protect it: {how}",
                        if seen.is_empty() { String::new() } else { format!(" ({})", seen.join("; ")) }
                    ),
                ),
            });
        }
    }
    let offsets: Vec<(&str, f64)> =
        members.iter().zip(&clocks).filter_map(|(x, c)| c.as_ref().ok().map(|o| (x.zone.as_str(), *o))).collect();
    if let (Some(lo), Some(hi)) =
        (offsets.iter().min_by(|a, b| a.1.total_cmp(&b.1)), offsets.iter().max_by(|a, b| a.1.total_cmp(&b.1)))
    {
        if hi.1 - lo.1 > 1.0 {
            out.push(Shared {
                zones: offsets.iter().map(|(z, _)| z.to_string()).collect(),
                in_plan: false,
                finding: finding(
                    name,
                    "clock",
                    Severity::Warning,
                    format!(
                        "the clocks of its members are {:.1}s apart ({} ahead of {}): lag and RPO figures are off by as much; synchronise them (NTP)",
                        hi.1 - lo.1,
                        hi.0,
                        lo.0
                    ),
                ),
            });
        }
    }
    out
}

/// Entities whose last drill is older than their `drills: { every }`.
fn drill_findings(ctx: &Ctx<'_>) -> Vec<Shared> {
    let wanted: Vec<(usize, Duration)> =
        (0..ctx.topo.entities.len()).filter_map(|i| ctx.topo.drills_every(i).map(|d| (i, d))).collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let drills = ctx.state.drills().unwrap_or_default();
    let reports: Vec<(SystemTime, serde_json::Value)> = drills
        .iter()
        .filter_map(|r| {
            let rep: serde_json::Value = serde_json::from_str(r.report.as_deref()?).ok()?;
            Some((r.finished_at.unwrap_or(r.started_at), rep))
        })
        .collect();
    let mut out = Vec::new();
    for (id, every) in wanted {
        let name = &ctx.topo.entity(id).name;
        let covers = |rep: &serde_json::Value| {
            ["services", "datastores"]
                .iter()
                .any(|k| rep[k].as_array().is_some_and(|a| a.iter().any(|x| x["name"] == name.as_str())))
        };
        let last = reports.iter().filter(|(_, rep)| covers(rep)).map(|(at, _)| *at).max();
        let message = match last {
            None => Some(format!("never drilled (drills: every {})", human(every))),
            Some(at) => {
                let age = ctx.now.duration_since(at).unwrap_or_default();
                (age > every).then(|| {
                    format!(
                        "last drilled {} ago ({}), longer than its drills: every {}",
                        human(age),
                        failover::rfc3339(at),
                        human(every)
                    )
                })
            }
        };
        if let Some(message) = message {
            out.push(Shared {
                zones: Vec::new(),
                in_plan: true,
                finding: finding(
                    name,
                    "drill",
                    Severity::Warning,
                    format!("{message}; run a drill that covers it (`drctl drill EXPERIMENT`)"),
                ),
            });
        }
    }
    out
}

/// Backups that would not restore as the contract says: a backup RPO over
/// its restore target, backups that cannot be read, and a restore test
/// missing, failed or older than the entity's `drills: { every }`. All
/// warnings (a failover does not need them), in every scope.
fn backup_findings(topo: &Topology, backups: &[BackupStatus], now: SystemTime) -> Vec<Shared> {
    let mut out = Vec::new();
    let mut add = |name: &str, check: &str, message: String| {
        out.push(Shared {
            zones: Vec::new(),
            in_plan: false,
            finding: finding(name, check, Severity::Warning, message),
        })
    };
    for b in backups {
        let name = b.datastore.as_str();
        if let Some(why) = &b.error {
            add(name, "backup", format!("its backups cannot be read: {why}; `drctl backups` says more"));
        } else if let (Some(rpo), Some(target)) = (b.rpo_s, b.rpo_target_s) {
            if rpo > target {
                add(
                    name,
                    "backup",
                    format!(
                        "backup RPO {} is over its restore RPO {}: take a backup (`drctl backup {name}`) and check that WAL is archived",
                        human(Duration::from_secs_f64(rpo.max(0.0))),
                        human(Duration::from_secs_f64(target.max(0.0)))
                    ),
                );
            }
        }
        let Some(every) = topo.entity_id(name).and_then(|id| topo.drills_every(id)) else { continue };
        let message = match b.last_test {
            None => Some(format!("never restore-tested (drills: every {})", human(every))),
            Some((at, false)) => Some(format!("its last restore test failed ({})", failover::rfc3339(at))),
            Some((at, true)) => {
                let age = now.duration_since(at).unwrap_or_default();
                (age > every).then(|| {
                    format!(
                        "last restore-tested {} ago ({}), longer than its drills: every {}",
                        human(age),
                        failover::rfc3339(at),
                        human(every)
                    )
                })
            }
        };
        if let Some(m) = message {
            add(name, "restore-test", format!("{m}; run a restore test (`drctl drill RESTORE-TEST`)"));
        }
    }
    out
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 86_400 => format!("{:.1}d", s as f64 / 86_400.0),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The topology file and its runbooks as they are on disk now: a runbook
/// edited since the controller started that no longer validates would
/// refuse the next declaration.
fn reload_findings(topo: &Topology) -> Vec<Shared> {
    if !topo.file.is_file() {
        return Vec::new();
    }
    let loaded = drctl_core::load(&topo.file);
    loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == drctl_core::Severity::Error)
        .map(|d| {
            let in_runbook = d.file != topo.file;
            Shared {
                zones: Vec::new(),
                in_plan: false,
                finding: finding(
                    "",
                    if in_runbook { "runbook" } else { "topology" },
                    Severity::Error,
                    format!("{d}: the next declaration would be refused"),
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        let src = "version: 1\nzones: [ { name: az1 }, { name: az2 } ]\n\
                   objectives:\n  tier-0: { rpo: 5s, rto: 2m, restore: { rpo: 1h, rto: 10m }, drills: { every: 30d } }\n\
                   datastores:\n  - { name: db, kind: s3, tier: tier-0, primary: { zone: az1, bucket: bucket-a }, replicas: [ { zone: az2, bucket: bucket-b } ] }\n";
        let loaded = drctl_core::load_str(src, std::path::Path::new("t.yaml"));
        loaded.topology.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics))
    }

    fn messages(found: &[Shared]) -> Vec<(String, String)> {
        found.iter().map(|s| (s.finding.check.clone(), s.finding.message.clone())).collect()
    }

    /// A backup RPO over its restore target, backups that cannot be read,
    /// and a restore test missing, failed or too old are each a warning
    /// (a failover does not need backups; the contract does).
    #[test]
    fn backups_and_restore_tests_are_judged_against_the_contract() {
        let t = topo();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let day = Duration::from_secs(86_400);
        let b = |rpo: f64, error: Option<&str>, test: Option<(SystemTime, bool)>| BackupStatus {
            datastore: "db".into(),
            rpo_s: Some(rpo),
            rpo_target_s: Some(3600.0),
            error: error.map(str::to_string),
            last_test: test,
        };
        assert!(backup_findings(&t, &[b(60.0, None, Some((now - day, true)))], now).is_empty(), "all well");
        let f = messages(&backup_findings(&t, &[b(7200.0, None, Some((now - day, true)))], now));
        assert_eq!(f.len(), 1);
        assert!(
            f[0].1.starts_with("backup RPO 2h is over its restore RPO 1h: take a backup (`drctl backup db`)"),
            "{f:?}"
        );
        let f = messages(&backup_findings(&t, &[b(60.0, Some("pgbackrest: no stanza"), None)], now));
        assert!(f[0].1.contains("cannot be read: pgbackrest: no stanza"), "{f:?}");
        assert!(f[1].1.starts_with("never restore-tested (drills: every 30d)"), "{f:?}");
        let f = messages(&backup_findings(&t, &[b(60.0, None, Some((now - day * 40, true)))], now));
        assert!(f[0].1.starts_with("last restore-tested 40d ago"), "{f:?}");
        let f = messages(&backup_findings(&t, &[b(60.0, None, Some((now - day, false)))], now));
        assert!(f[0].1.starts_with("its last restore test failed"), "{f:?}");
        assert!(backup_findings(&t, &[b(60.0, None, Some((now - day, false)))], now)
            .iter()
            .all(|s| s.finding.severity == Severity::Warning));
    }
}
