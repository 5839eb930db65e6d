//! Running `by: drctl` replication: which datastores, one recorded pass each.

use crate::live::{buckets, Clients};
use crate::Error;
use drctl_aws::s3::{self, Options, Progress, Summary};
use drctl_core::topology::{DatastoreKind, EntityId, EntitySpec, ReplicationBy, Topology};
use drctl_state::State;
use std::time::SystemTime;

/// The datastores to replicate: every `by: drctl` one, or those named.
pub fn selected(topo: &Topology, names: &[String]) -> Result<Vec<EntityId>, Error> {
    let replicated = |id: EntityId| {
        matches!(&topo.entity(id).spec, EntitySpec::Datastore(d)
            if d.kind == DatastoreKind::S3 && d.replication.as_ref().is_some_and(|r| r.by == ReplicationBy::Drctl))
    };
    if names.is_empty() {
        return Ok((0..topo.entities.len()).filter(|&i| replicated(i)).collect());
    }
    names
        .iter()
        .map(|n| match topo.entity_id(n) {
            None => Err(Error::BadRequest(format!("`{n}` is not a datastore of the topology"))),
            Some(id) if !replicated(id) => Err(Error::BadRequest(format!(
                "`{n}` is not replicated by drctl (only s3 datastores with `replication: {{ by: drctl }}` are)"
            ))),
            Some(id) => Ok(id),
        })
        .collect()
}

/// One pass over one datastore, recorded in the state store.
pub async fn run_once(
    clients: &Clients,
    topo: &Topology,
    id: EntityId,
    state: &State,
    progress: &dyn Progress,
) -> Result<Summary, Error> {
    let e = topo.entity(id);
    let EntitySpec::Datastore(ds) = &e.spec else {
        return Err(Error::BadRequest(format!("`{}` is not a datastore", e.name)));
    };
    let options = ds
        .replication
        .as_ref()
        .map(|r| Options {
            concurrency: r.concurrency,
            sse: r.sse.clone(),
            kms_key_id: r.kms_key_id.clone(),
            ..Options::default()
        })
        .unwrap_or_default();
    let mut all = buckets(clients, topo, ds).await;
    // After `s3.promote_replica` the primary is elsewhere: copy from it.
    let moved_to = state.placements()?.into_iter().find(|(d, _)| *d == e.name).map(|(_, z)| z);
    crate::live::primary_first(&mut all, moved_to.as_deref());
    let Some((primary, replicas)) = all.split_first() else {
        return Err(Error::BadRequest(format!("`{}` has no buckets", e.name)));
    };
    let run = state.begin_replication_run(&e.name, SystemTime::now())?;
    let summary = s3::replicate_once(&e.name, primary, replicas, state, &options, progress).await;
    let error = (!summary.errors.is_empty()).then(|| summary.errors.join("; "));
    state.finish_replication_run(run, SystemTime::now(), summary.totals, error.as_deref())?;
    Ok(summary)
}

/// Runs each datastore on its own schedule (`every` or `cron`) until
/// `shutdown` completes; a pass in progress finishes first. `report` hears
/// about every pass.
pub async fn run_scheduled(
    clients: &Clients,
    topo: &Topology,
    state: &State,
    ids: &[EntityId],
    clock: &dyn crate::schedule::Clock,
    shutdown: impl std::future::Future<Output = ()>,
    report: &(dyn Fn(&str, &Result<Summary, Error>) + Sync),
) {
    let jobs: Vec<(EntityId, drctl_core::topology::Schedule)> = ids
        .iter()
        .filter_map(|&id| match &topo.entity(id).spec {
            EntitySpec::Datastore(d) => Some((id, d.replication.as_ref()?.schedule.clone()?)),
            EntitySpec::Service(_) => None,
        })
        .collect();
    crate::schedule::run_schedule(clock, &jobs, shutdown, |id| async move {
        let result = run_once(clients, topo, id, state, &s3::NoProgress).await;
        report(&topo.entity(id).name, &result);
    })
    .await;
}
