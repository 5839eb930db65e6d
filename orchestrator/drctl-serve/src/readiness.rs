//! Readiness in the controller (docs/readiness.md): the leader evaluates
//! every `--evaluate-every`, keeps the result in the state store (followers
//! serve it from there), serves it at `GET /api/v1/readiness`, counts it in
//! `/metrics`, says it in one line on customer pages, and tells the
//! operators — never the public page or its subscribers — when a scope
//! goes from ready to not ready or back.
//!
//! Operators are told once per change: the notifier remembers, per scope,
//! the readiness it last told, so findings that persist are not repeated;
//! the first evaluation after the controller starts tells only the scopes
//! that are not ready. Webhooks are signed as subscribers' are
//! ([`crate::notify::sign`]); e-mail goes through `--smtp`.

use crate::api::answer::{problem, ApiResult};
use crate::api::auth::{authorize, Remote};
use crate::Shared;
use axum::extract::State as Ax;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use drctl_control::readiness::{self, Report, ScopeName, Severity};
use drctl_state::controller::Role;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How the controller evaluates readiness and whom it tells.
#[derive(Clone, Debug)]
pub struct ReadinessOptions {
    /// How often every scope is evaluated.
    pub every: Duration,
    /// Operators' webhook, signed with `webhook_secret` (Standard Webhooks).
    pub webhook: Option<String>,
    /// `whsec_` and base64, as the receiver's Standard Webhooks library takes it.
    pub webhook_secret: Option<String>,
    /// Operators' address (through `--smtp`).
    pub email: Option<String>,
    /// Bounds of each evaluation.
    pub check: readiness::Options,
}

impl Default for ReadinessOptions {
    fn default() -> Self {
        ReadinessOptions {
            every: Duration::from_secs(60),
            webhook: None,
            webhook_secret: None,
            email: None,
            check: readiness::Options::default(),
        }
    }
}

impl ReadinessOptions {
    /// Refuses a webhook without a usable secret before the controller starts.
    pub fn check(&self, smtp: Option<&str>) -> Result<(), String> {
        if let Some(url) = &self.webhook {
            reqwest::Url::parse(url).map_err(|e| format!("--operator-webhook `{url}`: {e}"))?;
            let secret = self.webhook_secret.as_deref().ok_or(
                "--operator-webhook needs a signing secret: --operator-webhook-secret whsec_BASE64 (or DRCTL_OPERATOR_WEBHOOK_SECRET)",
            )?;
            crate::notify::sign(secret, "check", 0, b"").map_err(|e| format!("--operator-webhook-secret: {e}"))?;
        }
        if self.email.is_some() && smtp.is_none() {
            return Err("--operator-email needs --smtp smtp://HOST:PORT to send through".into());
        }
        Ok(())
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/api/v1/readiness", get(latest))
}

async fn latest(Ax(s): Ax<Arc<Shared>>, Extension(Remote(remote)): Extension<Remote>, headers: HeaderMap) -> ApiResult {
    authorize(&s, &headers, remote, Role::Viewer)?;
    match s.readiness() {
        Some(r) => Ok(Json(&*r).into_response()),
        None => Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "readiness has not been evaluated yet: the leader evaluates within --evaluate-every of starting",
        )),
    }
}

impl Shared {
    /// The latest evaluation: this controller's, or (following) the one
    /// the leader stored.
    pub(crate) fn readiness(&self) -> Option<Arc<Report>> {
        self.readiness.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A follower's copy of what the leader stored.
    pub(crate) fn follow_readiness(&self) {
        let stored = self.opts.state.published(readiness::PUBLISHED).ok().flatten();
        if let Some(r) = stored.and_then(|json| serde_json::from_str::<Report>(&json).ok()) {
            *self.readiness.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(r));
        }
    }
}

/// `/metrics`' readiness: `drctl_ready{scope,kind}` and `drctl_readiness_findings{severity}`.
pub(crate) fn metrics(r: Option<&Report>) -> String {
    let Some(r) = r else { return String::new() };
    let mut out = String::from(
        "# HELP drctl_ready Whether the failover of a scope would work now (1) or not (0), at the last readiness evaluation.\n# TYPE drctl_ready gauge\n",
    );
    for s in &r.scopes {
        out.push_str(&format!(
            "drctl_ready{{scope=\"{}\",kind=\"{}\"}} {}\n",
            s.scope.name,
            kind(&s.scope),
            u8::from(s.ready)
        ));
    }
    let (errors, warnings) = r.counts();
    out.push_str("# HELP drctl_readiness_findings Findings of the last readiness evaluation, by severity.\n# TYPE drctl_readiness_findings gauge\n");
    out.push_str(&format!("drctl_readiness_findings{{severity=\"error\"}} {errors}\n"));
    out.push_str(&format!("drctl_readiness_findings{{severity=\"warning\"}} {warnings}\n"));
    out
}

/// `/metrics`' backups: `drctl_backup_rpo_seconds{datastore}` (now minus
/// the latest restorable point, at the last readiness evaluation) and its
/// target, for each backed-up datastore whose backups could be read.
pub(crate) fn backup_metrics(all: &[drctl_core::status::BackupStatus]) -> String {
    if all.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "# HELP drctl_backup_rpo_seconds How much a restore from backups would lose now: now minus the latest restorable point.\n# TYPE drctl_backup_rpo_seconds gauge\n",
    );
    for b in all {
        if let Some(rpo) = b.rpo_s {
            out.push_str(&format!("drctl_backup_rpo_seconds{{datastore=\"{}\"}} {rpo:.1}\n", b.datastore));
        }
    }
    out.push_str("# HELP drctl_backup_rpo_target_seconds The restore RPO a datastore's contract sets.\n# TYPE drctl_backup_rpo_target_seconds gauge\n");
    for b in all {
        if let Some(t) = b.rpo_target_s {
            out.push_str(&format!("drctl_backup_rpo_target_seconds{{datastore=\"{}\"}} {t:.1}\n", b.datastore));
        }
    }
    out
}

fn kind(s: &ScopeName) -> &'static str {
    match s.kind {
        readiness::ScopeKind::Zone => "zone",
        readiness::ScopeKind::Region => "region",
    }
}

/// The customer page's line: whether failing over the zones `zones` (all
/// when empty) was verified ready, and how long ago.
pub(crate) fn customer_line(r: Option<&Report>, zones: &[String], now: SystemTime) -> Option<String> {
    let r = r?;
    let scopes: Vec<&readiness::ScopeReport> = r
        .scopes
        .iter()
        .filter(|s| s.scope.kind == readiness::ScopeKind::Zone)
        .filter(|s| zones.is_empty() || zones.contains(&s.scope.name))
        .collect();
    if scopes.is_empty() {
        return None;
    }
    let ago = r.at().and_then(|at| now.duration_since(at).ok()).unwrap_or_default();
    let ago = match ago.as_secs() {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    };
    Some(if scopes.iter().all(|s| s.ready) {
        format!("failover to another zone verified ready {ago} ago")
    } else {
        format!("failover to another zone not verified ready {ago} ago: the operators have been told")
    })
}

/// What the operators were last told, per scope (kept across leadership
/// terms of this process; `None` until the first evaluation after start).
pub(crate) type Told = std::sync::Mutex<Option<BTreeMap<ScopeName, bool>>>;

/// The scopes to tell about: those whose readiness changed since last
/// told; on the first evaluation, those not ready. Updates `told`.
pub(crate) fn changes(
    told: &mut Option<BTreeMap<ScopeName, bool>>,
    r: &Report,
) -> Vec<(ScopeName, Option<bool>, bool)> {
    let first = told.is_none();
    let known = told.get_or_insert_with(BTreeMap::new);
    let mut out = Vec::new();
    for s in &r.scopes {
        let before = known.insert(s.scope.clone(), s.ready);
        let tell = match before {
            None => !first || !s.ready,
            Some(b) => b != s.ready,
        };
        if tell {
            out.push((s.scope.clone(), before, s.ready));
        }
    }
    out
}

/// The leader's loop: evaluate, store, render, tell; then wait on the clock.
pub(crate) async fn run(s: Arc<Shared>, stop: drctl_runtime::CancellationToken) {
    let opts = s.opts.readiness.clone();
    let smtp = match (&opts.email, s.opts.notify.smtp.as_deref()) {
        (Some(_), Some(url)) => match crate::notify::smtp_transport(url, s.opts.notify.smtp_insecure) {
            Ok(t) => Some(t),
            Err(e) => {
                (s.opts.say)(&format!("operator e-mail is off: {e}"));
                None
            }
        },
        _ => None,
    };
    let mut waiting_told = std::collections::BTreeSet::new();
    loop {
        let previous = s.readiness();
        let now = s.opts.clock.now();
        let topo = &s.opts.topology;
        let report = tokio::select! {
            r = async {
                let backups = drctl_backup::report::statuses(topo, &drctl_backup::site_dir(topo), &*s.opts.state, now).await;
                *s.backup_status.write().unwrap_or_else(|p| p.into_inner()) = backups.clone();
                readiness::evaluate(topo, &*s.opts.state, &s.opts.clients, &opts.check, now, previous.as_deref(), &backups).await
            } => r,
            _ = stop.cancelled() => return,
        };
        if let Ok(text) = serde_json::to_string(&report) {
            if let Err(e) = s.opts.state.publish(readiness::PUBLISHED, &text) {
                tracing::warn!(error = %e, "the readiness evaluation could not be stored; followers serve the previous one");
            }
        }
        let changed = {
            let mut told = s.told.lock().unwrap_or_else(|p| p.into_inner());
            changes(&mut told, &report)
        };
        *s.readiness.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(report.clone()));
        s.refresh().await;
        if !changed.is_empty() {
            tell(&s, &opts, smtp.as_ref(), &report, &changed).await;
        }
        tell_waiting(&s, &opts, smtp.as_ref(), &mut waiting_told, now).await;
        tokio::select! {
            _ = s.opts.clock.sleep(opts.every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One message for the changes of one evaluation, to each operator channel,
/// tried three times.
async fn tell(
    s: &Shared,
    opts: &ReadinessOptions,
    smtp: Option<&lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
    r: &Report,
    changed: &[(ScopeName, Option<bool>, bool)],
) {
    let scopes: Vec<serde_json::Value> = changed
        .iter()
        .filter_map(|(name, was, now)| {
            let sc = r.scopes.iter().find(|x| &x.scope == name)?;
            let errors: Vec<&readiness::Finding> =
                sc.findings.iter().filter(|f| f.severity == Severity::Error).collect();
            Some(json!({ "scope": name, "ready": now, "was_ready": was, "findings": errors }))
        })
        .collect();
    let summary: Vec<String> = changed
        .iter()
        .map(|(n, _, ready)| format!("{n} {}", if *ready { "ready again" } else { "NOT READY" }))
        .collect();
    let at_ms = r.at().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_millis());
    let id = format!("msg_drctl_readiness_{at_ms}");
    let body = json!({
        "type": "readiness.changed",
        "timestamp": r.evaluated_at,
        "evaluated_at": r.evaluated_at,
        "summary": summary.join("; "),
        "scopes": scopes,
    });
    let text = readiness_text(&summary.join("; "), &body);
    deliver(s, opts, smtp, &id, &summary.join("; "), &body, &text).await;
}

/// Tells the operators of what waits for a person (a paused execution, an
/// approval past its `remind_after`), once per situation: `told` keeps the
/// keys already told (a paused execution retried and failing again is a
/// new situation).
async fn tell_waiting(
    s: &Shared,
    opts: &ReadinessOptions,
    smtp: Option<&lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
    told: &mut std::collections::BTreeSet<String>,
    now: SystemTime,
) {
    let waiting = drctl_control::attention::waiting(&*s.opts.state, now);
    told.retain(|k| waiting.iter().any(|w| &w.key == k));
    for w in waiting {
        if !told.insert(w.key.clone()) {
            continue;
        }
        let at = drctl_control::failover::rfc3339(now);
        let body = json!({
            "type": w.kind,
            "timestamp": at,
            "execution": w.execution,
            "steps": w.steps,
            "title": w.title,
            "summary": w.summary,
        });
        let id = format!("msg_drctl_{}", w.key.replace([':', ',', '#', '/'], "_"));
        let text = format!("drctl at {at}: {}\n\nWhat it did so far: drctl show {}\n", w.summary, w.execution);
        deliver(s, opts, smtp, &id, &w.title, &body, &text).await;
    }
}

/// One message to each operator channel, tried three times.
async fn deliver(
    s: &Shared,
    opts: &ReadinessOptions,
    smtp: Option<&lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
    id: &str,
    summary: &str,
    body: &serde_json::Value,
    text: &str,
) {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    for attempt in 0..3u32 {
        let mut failed = Vec::new();
        if let (Some(url), Some(secret)) = (&opts.webhook, &opts.webhook_secret) {
            if let Err(e) = post(s, url, secret, id, &bytes).await {
                failed.push(format!("webhook: {e}"));
            }
        }
        if let (Some(to), Some(t)) = (&opts.email, smtp) {
            if let Err(e) = mail(t, &s.opts.notify.from, to, summary, text).await {
                failed.push(format!("e-mail: {e}"));
            }
        }
        if failed.is_empty() {
            (s.opts.say)(&format!("operators told: {summary}"));
            return;
        }
        tracing::warn!(attempt = attempt + 1, failures = %failed.join("; "), "operators could not be told");
        if attempt == 2 {
            (s.opts.say)(&format!("operators NOT told of {summary}: {}", failed.join("; ")));
            return;
        }
        s.opts.clock.sleep(Duration::from_secs(1 << attempt)).await;
    }
}

async fn post(s: &Shared, url: &str, secret: &str, id: &str, body: &[u8]) -> Result<(), String> {
    let ts = s.opts.clock.now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let signature = crate::notify::sign(secret, id, ts, body)?;
    let r = s
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| drctl_core::redact::text(&e.to_string()))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", r.status()))
    }
}

/// A readiness change in words, for e-mail.
fn readiness_text(summary: &str, body: &serde_json::Value) -> String {
    let mut text = format!("drctl readiness at {}: {summary}\n", body["evaluated_at"].as_str().unwrap_or_default());
    for sc in body["scopes"].as_array().into_iter().flatten() {
        let name =
            format!("{} {}", sc["scope"]["kind"].as_str().unwrap_or(""), sc["scope"]["name"].as_str().unwrap_or(""));
        text.push_str(&format!("\n{name}: {}\n", if sc["ready"] == true { "ready" } else { "NOT READY" }));
        for f in sc["findings"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "  error [{}] {} {}\n",
                f["check"].as_str().unwrap_or(""),
                f["entity"].as_str().unwrap_or(""),
                f["message"].as_str().unwrap_or("")
            ));
        }
    }
    text.push_str("\nThe findings now: drctl readiness, or GET /api/v1/readiness.\n");
    text
}

async fn mail(
    smtp: &lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: &str,
    to: &str,
    summary: &str,
    text: &str,
) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::AsyncTransport;
    let m = lettre::Message::builder()
        .from(from.parse().map_err(|e| format!("--smtp-from `{from}`: {e}"))?)
        .to(to.parse().map_err(|e| format!("--operator-email `{to}`: {e}"))?)
        .subject(format!("drctl: {summary}"))
        .header(ContentType::TEXT_PLAIN)
        .body(drctl_core::redact::text(text))
        .map_err(|e| e.to_string())?;
    smtp.send(m).await.map(|_| ()).map_err(|e| drctl_core::redact::text(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use drctl_control::readiness::{ScopeKind, ScopeReport};

    fn report(ready: &[(&str, bool)]) -> Report {
        Report {
            evaluated_at: "2026-12-06T00:00:00.000Z".into(),
            scopes: ready
                .iter()
                .map(|(n, r)| ScopeReport {
                    scope: ScopeName { kind: ScopeKind::Zone, name: n.to_string() },
                    ready: *r,
                    rto_estimate_s: 0.0,
                    misses: Vec::new(),
                    findings: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn operators_hear_of_each_change_once_and_at_start_only_of_what_is_not_ready() {
        let mut told = None;
        let first = changes(&mut told, &report(&[("az1", true), ("az2", false)]));
        assert_eq!(first.iter().map(|c| c.0.name.as_str()).collect::<Vec<_>>(), ["az2"]);
        assert!(changes(&mut told, &report(&[("az1", true), ("az2", false)])).is_empty(), "nothing changed");
        let down = changes(&mut told, &report(&[("az1", false), ("az2", false)]));
        assert_eq!(down.len(), 1);
        assert_eq!((down[0].0.name.as_str(), down[0].1, down[0].2), ("az1", Some(true), false));
        assert!(changes(&mut told, &report(&[("az1", false), ("az2", false)])).is_empty(), "repeated findings");
        let back = changes(&mut told, &report(&[("az1", true), ("az2", true)]));
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn metrics_name_each_scope_and_count_findings() {
        let m = metrics(Some(&report(&[("az1", true), ("az2", false)])));
        assert!(m.contains("drctl_ready{scope=\"az1\",kind=\"zone\"} 1\n"), "{m}");
        assert!(m.contains("drctl_ready{scope=\"az2\",kind=\"zone\"} 0\n"), "{m}");
        assert!(m.contains("drctl_readiness_findings{severity=\"error\"} 0\n"), "{m}");
    }
}
