//! S3 and RDS restores: one journaled step each, through a cloud API.
//!
//! An S3 bucket restored from its versions and an RDS instance restored
//! from its automated backups are executions like a PostgreSQL restore
//! (journal, resume, audit), with a single step that checks the world
//! first, so running it again after a crash finishes what is left. The
//! CLI's `drctl restore` and a drill's `recover: restore` both run them
//! from here.

use crate::restore::{self, Request};
use crate::Error;
use drctl_control::live::Clients;
use drctl_core::topology::{EntitySpec, Location};
use drctl_core::Topology;
use drctl_engine::{ActionError, Actions, Ended, Note, StepSpec};
use drctl_state::State;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The primary bucket of an S3 datastore with `backup: { versions }` (or any S3 datastore).
pub fn s3_of<'a>(topo: &'a Topology, name: &str) -> Option<&'a drctl_core::topology::Datastore> {
    let id = topo.entity_id(name)?;
    match &topo.entity(id).spec {
        EntitySpec::Datastore(d) if d.kind == drctl_core::topology::DatastoreKind::S3 => Some(d),
        _ => None,
    }
}

/// An RDS datastore (`rds-instance` or `rds-cluster`).
pub fn rds_of<'a>(topo: &'a Topology, name: &str) -> Option<&'a drctl_core::topology::Datastore> {
    use drctl_core::topology::DatastoreKind;
    match &topo.entity(topo.entity_id(name)?).spec {
        EntitySpec::Datastore(d) if matches!(d.kind, DatastoreKind::RdsInstance | DatastoreKind::RdsCluster) => Some(d),
        _ => None,
    }
}

/// The instance (its primary member's) or cluster an RDS datastore restores from.
pub fn rds_source(ds: &drctl_core::topology::Datastore) -> Option<String> {
    ds.cluster.clone().or_else(|| match ds.primary.as_ref().map(|m| &m.location) {
        Some(Location::RdsInstance { instance }) => Some(instance.clone()),
        _ => None,
    })
}

impl CloudRestore {
    async fn rds(&self) -> Result<Note, ActionError> {
        let ds = rds_of(&self.topo, &self.req.datastore)
            .ok_or_else(|| ActionError::Fatal(format!("no RDS datastore `{}`", self.req.datastore)))?;
        let source =
            rds_source(ds).ok_or_else(|| ActionError::Fatal("no instance or cluster to restore from".into()))?;
        let region = ds.region.clone().or_else(|| ds.primary.as_ref().map(|p| self.topo.zones[p.zone].region.clone()));
        let rds = drctl_aws::rds::Rds::new(self.clients.sdk().await, region.as_deref());
        let at = if self.req.to == "latest" {
            None
        } else {
            Some(
                chrono::DateTime::parse_from_rfc3339(&self.req.target)
                    .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
                    .map_err(|_| ActionError::Fatal(format!("journaled target `{}` is unreadable", self.req.target)))?,
            )
        };
        let wait = std::time::Duration::from_secs(6 * 3600);
        let what = if ds.cluster.is_some() {
            drctl_aws::rds_restore::restore_cluster(&rds, &source, &self.req.into, at, wait).await
        } else {
            drctl_aws::rds_restore::restore_instance(&rds, &source, &self.req.into, at, wait).await
        };
        let made = match what {
            Ok(drctl_aws::rds_restore::Outcome::Started) => {
                format!("{} restored from {source}; available", self.req.into)
            }
            Ok(drctl_aws::rds_restore::Outcome::Existed) => {
                format!("{} (made by an earlier attempt) is available", self.req.into)
            }
            Err(e @ drctl_aws::Error::Api { transient: true, .. }) => {
                return Err(ActionError::Transient(e.to_string()))
            }
            Err(e) => return Err(ActionError::Fatal(e.to_string())),
        };
        if self.req.rds_replace.is_some() {
            return Ok(Some(format!("{made}; the erasures are replayed on it next, before it serves")));
        }
        let replay = match self.rds_replay(&rds, at.unwrap_or_else(SystemTime::now)).await? {
            Replay::Done(n) | Replay::Pending(n) => n,
        };
        Ok(Some(format!("{made}; {replay}")))
    }

    /// The point restored to (now, for `latest`).
    fn point(&self) -> Result<SystemTime, ActionError> {
        if self.req.to == "latest" {
            // The restore step asked RDS for its latest restorable time; the
            // journaled target (when it was asked) is the nearest point known.
            return crate::restore::parse_rfc3339(&self.req.target)
                .ok_or_else(|| ActionError::Fatal(format!("journaled target `{}` is unreadable", self.req.target)));
        }
        chrono::DateTime::parse_from_rfc3339(&self.req.target)
            .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
            .map_err(|_| ActionError::Fatal(format!("journaled target `{}` is unreadable", self.req.target)))
    }

    /// `DS/erasures` of an RDS `--replace`: the replay on the restored
    /// instance; when it cannot be reached from here, the step fails and
    /// the run pauses before the old primary is touched.
    async fn rds_erasures(&self, execution: &str, step: &str) -> Result<Note, ActionError> {
        let rds = crate::rds_replace::client(&self.topo, &self.clients, &self.req.datastore)
            .await
            .map_err(ActionError::Fatal)?;
        match self.rds_replay(&rds, self.point()?).await? {
            Replay::Done(n) => Ok(Some(n)),
            Replay::Pending(n) => Err(ActionError::Fatal(format!(
                "{n}. Nothing is switched until they are: replay them on {} by hand, then `{}`; or `{}` once it can be reached from here",
                self.req.into,
                drctl_core::hint::drctl(&format!("approve {execution} {step} --done")),
                drctl_core::hint::drctl(&format!("retry {execution} {step}")),
            ))),
        }
    }

    /// The ledger's requests made after the point, replayed on the restored
    /// instance through the `url` of the datastore's `locate` entries, its
    /// host and port replaced by the new instance's endpoint. Where the
    /// instance cannot be reached from here, the replay is reported pending
    /// (the copy must not serve until it is done).
    async fn rds_replay(&self, rds: &drctl_aws::rds::Rds, point: SystemTime) -> Result<Replay, ActionError> {
        use drctl_core::topology::erasure::Find;
        let eraser = drctl_control::erasure::Eraser::new(self.topo.clone(), self.state.clone(), self.clients.clone());
        let due = eraser.requests_after(point).map_err(|e| ActionError::Transient(e.to_string()))?;
        let id = self.topo.entity_id(&self.req.datastore);
        let url = self.topo.erasure.as_ref().zip(id).and_then(|(e, id)| {
            e.of(id).find_map(|l| match &l.how {
                Find::Sql { url: Some(u), .. } => Some(u.clone()),
                _ => None,
            })
        });
        let Some(url) = url else {
            return Ok(Replay::Done("no erasure to replay (no `locate` entry with a `url`)".into()));
        };
        if due == 0 {
            return Ok(Replay::Done("no erasure request since the point: nothing to replay".into()));
        }
        let cluster = rds_of(&self.topo, &self.req.datastore).is_some_and(|d| d.cluster.is_some());
        // A restored cluster serves through instances: a --replace adds them
        // before this step; a plain restore into a new cluster has none.
        if cluster && self.req.rds_replace.is_none() {
            return pending_cluster(due, &self.req.into);
        }
        let endpoint = if cluster {
            drctl_aws::rds_restore::cluster_endpoint(rds, &self.req.into).await
        } else {
            drctl_aws::rds_restore::instance_endpoint(rds, &self.req.into).await
        }
        .map_err(|e| ActionError::Transient(e.to_string()))?;
        let pending = |why: String| {
            Ok(Replay::Pending(format!(
                "erasure replay PENDING: {due} request(s) made since the point are not replayed on {} ({why}); do not let it serve before they are",
                self.req.into
            )))
        };
        let Some((host, port)) = endpoint else { return pending("RDS reports no endpoint yet".into()) };
        let Some(there) = with_host(&url, &host, port) else {
            return pending("the `locate` url has no host to replace".into());
        };
        match tokio::time::timeout(Duration::from_secs(30), eraser.replay_on(&self.req.datastore, &there, point)).await
        {
            Ok(Ok(r)) if r.resurrected == 0 => {
                Ok(Replay::Done(format!("{} erasure request(s) made since the point replayed on it", r.requests)))
            }
            Ok(Ok(r)) => Err(ActionError::Transient(format!(
                "{} erased subject(s) are still in {} after the replay",
                r.resurrected, self.req.into
            ))),
            Ok(Err(e)) => pending(format!("not reachable from here: {e}")),
            Err(_) => pending(format!("{host}:{port} did not answer within 30 s")),
        }
    }
}

/// The actions of an S3 or RDS restore.
struct CloudRestore {
    topo: Arc<Topology>,
    state: Arc<State>,
    clients: Arc<Clients>,
    req: Request,
}

impl CloudRestore {
    async fn s3(&self) -> Result<Note, ActionError> {
        let ds = s3_of(&self.topo, &self.req.datastore)
            .ok_or_else(|| ActionError::Fatal(format!("no S3 datastore `{}`", self.req.datastore)))?;
        let buckets = drctl_control::live::buckets(&self.clients, &self.topo, ds).await;
        let src = buckets
            .into_iter()
            .next()
            .ok_or_else(|| ActionError::Fatal("the datastore has no primary bucket".into()))?;
        let at = chrono::DateTime::parse_from_rfc3339(&self.req.target)
            .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
            .map_err(|_| ActionError::Fatal(format!("journaled target `{}` is unreadable", self.req.target)))?;
        let dest =
            if self.req.replace {
                drctl_aws::s3_restore::Dest::InPlace
            } else {
                let (bucket, prefix) = self.req.into.split_once('/').unwrap_or((self.req.into.as_str(), ""));
                let region = match ds.primary.as_ref().map(|m| &m.location) {
                    Some(Location::S3 { region, .. }) => region.clone().or_else(|| ds.region.clone()),
                    _ => ds.region.clone(),
                };
                let client = self.clients.s3(src.endpoint.as_deref(), region.as_deref()).await;
                if client.head_bucket().bucket(bucket).send().await.is_err() {
                    client.create_bucket().bucket(bucket).send().await.map_err(|e| {
                        ActionError::Fatal(format!("create bucket {bucket}: {}", drctl_aws::explain(&e)))
                    })?;
                }
                let b = drctl_aws::s3::Bucket {
                    zone: src.zone.clone(),
                    name: bucket.to_string(),
                    endpoint: src.endpoint.clone(),
                    client,
                };
                drctl_aws::s3_restore::Dest::Copy { bucket: b, prefix: prefix.to_string() }
            };
        let prefix = self.req.prefix.clone().unwrap_or_default();
        let (copy, to) = match &dest {
            drctl_aws::s3_restore::Dest::InPlace => (src.clone(), prefix.clone()),
            drctl_aws::s3_restore::Dest::Copy { bucket, prefix: p } => (bucket.clone(), p.clone()),
        };
        let sum = drctl_aws::s3_restore::restore_with(
            &src,
            &prefix,
            at,
            &dest,
            &drctl_aws::s3_restore::Copying::like_replication(ds.replication.as_ref()),
        )
        .await
        .map_err(|e| match e {
            drctl_aws::Error::Api { transient: true, .. } => ActionError::Transient(e.to_string()),
            other => ActionError::Fatal(other.to_string()),
        })?;
        if !sum.failed.is_empty() {
            let list: Vec<String> = sum.failed.iter().take(5).map(|(k, why)| format!("{k}: {why}")).collect();
            return Err(ActionError::Transient(format!(
                "{} key(s) not restored: {}",
                sum.failed.len(),
                list.join("; ")
            )));
        }
        // No restore brings an erased subject back: the ledger's requests made
        // after the point are replayed on what was restored before it serves.
        let eraser = drctl_control::erasure::Eraser::new(self.topo.clone(), self.state.clone(), self.clients.clone());
        let replayed = eraser
            .replay_on_bucket(&self.req.datastore, &copy, &prefix, &to, at)
            .await
            .map_err(|e| ActionError::Transient(format!("replaying the erasures on the copy: {e}")))?;
        if replayed.resurrected > 0 {
            return Err(ActionError::Transient(format!(
                "{} erased subject(s) still have versions in the copy after the replay",
                replayed.resurrected
            )));
        }
        Ok(Some(format!(
            "{} key(s) restored ({} bytes), {} hidden behind a delete marker, {} already as they were; {} erasure request(s) made since replayed",
            sum.restored, sum.bytes, sum.deleted, sum.unchanged, replayed.requests
        )))
    }
}

/// A restore made through a cloud API, one journaled step: S3 from
/// versions, RDS from automated backups.
impl Actions for CloudRestore {
    fn run<'a>(
        &'a self,
        execution: &'a str,
        _a: u32,
        step: &'a StepSpec,
    ) -> futures::future::BoxFuture<'a, Result<Note, ActionError>> {
        Box::pin(async move {
            use crate::rds_replace as r;
            let rds = || async {
                r::client(&self.topo, &self.clients, &self.req.datastore).await.map_err(ActionError::Fatal)
            };
            match step.action.as_str() {
                "s3.restore_versions" => self.s3().await,
                "rds.restore_to_point" => self.rds().await,
                r::ERASURES => self.rds_erasures(execution, &step.id).await,
                r::FENCE => r::fence(&rds().await?, &self.req).await,
                r::SWITCH => r::switch(&rds().await?, &self.req).await,
                r::INSTANCES => r::instances(&rds().await?, &self.req).await,
                r::REPLICAS => r::replicas(&rds().await?, &self.req).await,
                other => Err(ActionError::Fatal(format!("a restore has no action `{other}`"))),
            }
        })
    }
}

/// Runs (or resumes) a journaled S3 or RDS restore to its end.
pub async fn execute(
    topo: Arc<Topology>,
    state: Arc<State>,
    clients: Arc<Clients>,
    id: &str,
    req: Request,
) -> Result<Ended, Error> {
    let specs = restore::steps(&req);
    let replaces = req.rds_replace.is_some();
    let actions = Arc::new(CloudRestore { topo, state: state.clone(), clients, req });
    let engine = drctl_engine::Engine::new(state.clone(), actions, Some(1));
    let ended = engine.run(id, &specs).await.map_err(|e| match e {
        drctl_engine::Error::State(s) => Error::State(s),
        other => Error::Engine { execution: id.to_string(), source: other },
    });
    if replaces {
        // The public incident opened with it says how this run ended.
        crate::replace::close_incident(&*state, id, &ended);
    }
    ended
}

/// The journaled request of an S3 restore of `datastore` to `to`: into
/// `into` (`BUCKET[/PREFIX]`), or in place with `replace`.
pub fn s3_request(
    datastore: &str,
    to: &str,
    into: Option<&str>,
    prefix: Option<&str>,
    replace: bool,
    now: SystemTime,
) -> Result<Request, Error> {
    let target = restore::resolve_target(to, now)?;
    let into = match (into, replace) {
        (Some(_), true) => return Err(Error::BadRequest("give --into BUCKET[/PREFIX] or --replace, not both".into())),
        (None, false) => {
            return Err(Error::BadRequest(
                "an S3 restore goes --into BUCKET[/PREFIX] (a new bucket or prefix) or, with --replace, into the bucket itself"
                    .into(),
            ))
        }
        (Some(i), false) => i.to_string(),
        (None, true) => String::new(),
    };
    Ok(Request {
        datastore: datastore.to_string(),
        to: to.to_string(),
        target: restore::rfc3339(target),
        into,
        replace,
        scratch: false,
        port: 0,
        listen: None,
        kind: "s3".into(),
        prefix: prefix.map(str::to_string),
        set: None,
        replace_of: None,
        unfenced: Vec::new(),
        rds_replace: None,
    })
}

/// The journaled request of an RDS restore of `datastore` to `to`: into a
/// new instance (or cluster) `into`, by default
/// `SOURCE-restored-YYYYMMDDHHMMSS` after the point.
pub fn rds_request(
    topo: &Topology,
    datastore: &str,
    to: &str,
    into: Option<&str>,
    now: SystemTime,
) -> Result<Request, Error> {
    let ds =
        rds_of(topo, datastore).ok_or_else(|| Error::NotBackedUp(format!("`{datastore}` is not an RDS datastore")))?;
    let source =
        rds_source(ds).ok_or_else(|| Error::BadRequest("the RDS datastore names no instance or cluster".into()))?;
    let target = restore::resolve_target(to, now)?;
    let into = match into {
        Some(i) => i.to_string(),
        None => {
            let stamp = chrono::DateTime::<chrono::Utc>::from(target).format("%Y%m%d%H%M%S");
            drctl_aws::rds_replace::identifier(&source, &format!("restored-{stamp}"))
        }
    };
    if !(1..=63).contains(&into.len())
        || !into.starts_with(|c: char| c.is_ascii_alphabetic())
        || !into.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        || into.ends_with('-')
        || into.contains("--")
    {
        return Err(Error::BadRequest(format!(
            "--into `{into}`: an RDS identifier has 1 to 63 letters, digits and single hyphens, starting with a letter"
        )));
    }
    Ok(Request {
        datastore: datastore.to_string(),
        to: to.to_string(),
        target: restore::rfc3339(target),
        into,
        replace: false,
        scratch: false,
        port: 0,
        listen: None,
        kind: topo.entity(topo.entity_id(datastore).unwrap_or_default()).kind_name().to_string(),
        prefix: None,
        set: None,
        replace_of: None,
        unfenced: Vec::new(),
        rds_replace: None,
    })
}

/// A restored Aurora cluster has no instance to connect to until one is added.
fn pending_cluster(due: usize, into: &str) -> Result<Replay, ActionError> {
    Ok(Replay::Pending(format!(
        "erasure replay PENDING: {due} request(s) made since the point are not replayed on {into} (a restored cluster has no instance yet); do not let it serve before they are"
    )))
}

/// How an erasure replay on a restored instance went.
enum Replay {
    /// Replayed, or nothing to replay: what was done.
    Done(String),
    /// The instance could not be reached from here: what is left, and why.
    Pending(String),
}

/// `url` with its host and port replaced (`postgres://user:pw@HOST:PORT/db?...`).
fn with_host(url: &str, host: &str, port: i32) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (auth, after) = match rest.split_once('@') {
        Some((a, r)) => (format!("{a}@"), r),
        None => (String::new(), rest),
    };
    let end = after.find(['/', '?']).unwrap_or(after.len());
    Some(format!("{scheme}://{auth}{host}:{port}{}", &after[end..]))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_locate_url_points_at_the_restored_instance() {
        assert_eq!(
            super::with_host(
                "postgres://eraser:pw@ledger.abc.rds.amazonaws.com:5432/ledger?sslmode=require",
                "copy.rds",
                6543
            )
            .as_deref(),
            Some("postgres://eraser:pw@copy.rds:6543/ledger?sslmode=require")
        );
        assert_eq!(super::with_host("postgres://h/db", "n", 1).as_deref(), Some("postgres://n:1/db"));
    }
}
