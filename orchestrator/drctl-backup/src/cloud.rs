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
use std::time::SystemTime;

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
        match what {
            Ok(drctl_aws::rds_restore::Outcome::Started) => {
                Ok(Some(format!("{} restored from {source}; available", self.req.into)))
            }
            Ok(drctl_aws::rds_restore::Outcome::Existed) => {
                Ok(Some(format!("{} (made by an earlier attempt) is available", self.req.into)))
            }
            Err(e @ drctl_aws::Error::Api { transient: true, .. }) => Err(ActionError::Transient(e.to_string())),
            Err(e) => Err(ActionError::Fatal(e.to_string())),
        }
    }
}

/// The actions of an S3 or RDS restore.
struct CloudRestore {
    topo: Arc<Topology>,
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
        let sum = drctl_aws::s3_restore::restore(&src, &prefix, at, &dest).await.map_err(|e| match e {
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
        Ok(Some(format!(
            "{} key(s) restored ({} bytes), {} hidden behind a delete marker, {} already as they were",
            sum.restored, sum.bytes, sum.deleted, sum.unchanged
        )))
    }
}

/// A restore made through a cloud API, one journaled step: S3 from
/// versions, RDS from automated backups.
impl Actions for CloudRestore {
    fn run<'a>(
        &'a self,
        _e: &'a str,
        _a: u32,
        step: &'a StepSpec,
    ) -> futures::future::BoxFuture<'a, Result<Note, ActionError>> {
        Box::pin(async move {
            match step.action.as_str() {
                "s3.restore_versions" => self.s3().await,
                "rds.restore_to_point" => self.rds().await,
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
    let actions = Arc::new(CloudRestore { topo, clients, req });
    let engine = drctl_engine::Engine::new(state, actions, Some(1));
    engine.run(id, &specs).await.map_err(|e| match e {
        drctl_engine::Error::State(s) => Error::State(s),
        other => Error::Engine { execution: id.to_string(), source: other },
    })
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
    })
}
