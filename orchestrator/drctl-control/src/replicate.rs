//! Running `by: drctl` replication: which datastores, one recorded pass each.

use crate::live::{buckets, Clients};
use crate::{Error, Request};
use drctl_aws::s3::{self, Options, Progress, Summary};
use drctl_core::topology::{DatastoreKind, EntityId, EntitySpec, ReplicationBy, Topology};
use drctl_state::State;
use std::sync::Arc;

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
            None => Err(Request::NotADatastore { name: n.clone() }.into()),
            Some(id) if !replicated(id) => Err(Request::NotReplicatedByDrctl { name: n.clone() }.into()),
            Some(id) => Ok(id),
        })
        .collect()
}

/// A datastore's buckets, the current primary first: after
/// `s3.promote_replica` the primary is where the state store says.
async fn primary_first(
    clients: &Clients,
    topo: &Topology,
    state: &State,
    name: &str,
    ds: &drctl_core::topology::Datastore,
) -> Result<Vec<s3::Bucket>, Error> {
    let mut all = buckets(clients, topo, ds).await;
    let moved_to = state.placements()?.into_iter().find(|(d, _)| d == name).map(|(_, z)| z);
    crate::live::primary_first(&mut all, moved_to.as_deref());
    Ok(all)
}

/// One pass over one datastore, recorded in the state store with the
/// times `clock` gives.
pub async fn run_once(
    clients: &Clients,
    topo: &Topology,
    id: EntityId,
    state: &State,
    clock: &Arc<dyn crate::schedule::Clock>,
    progress: &dyn Progress,
) -> Result<Summary, Error> {
    let e = topo.entity(id);
    let EntitySpec::Datastore(ds) = &e.spec else {
        return Err(Request::NotADatastore { name: e.name.clone() }.into());
    };
    let options = ds
        .replication
        .as_ref()
        .map(|r| Options {
            concurrency: r.concurrency,
            sse: r.sse.clone(),
            kms_key_id: r.kms_key_id.clone(),
            deletes: r.deletes_replicate,
            ..Options::default()
        })
        .unwrap_or_default();
    let options = Options { clock: clock.clone(), ..options };
    let all = primary_first(clients, topo, state, &e.name, ds).await?;
    let Some((primary, replicas)) = all.split_first() else {
        return Err(Request::NoBuckets { name: e.name.clone() }.into());
    };
    let run = state.begin_replication_run(&e.name, clock.now())?;
    let summary = s3::replicate_once(&e.name, primary, replicas, state, &options, progress).await;
    let error = (!summary.errors.is_empty()).then(|| drctl_core::redact::text(&summary.errors.join("; ")));
    state.finish_replication_run(run, clock.now(), summary.totals, error.as_deref())?;
    Ok(summary)
}

/// Runs each datastore on its own schedule (`every` or `cron`) until
/// `shutdown` completes; a pass in progress finishes first. `report` hears
/// about every pass; a datastore `held` says is held skips its passes until
/// it is not (the lab holds one to stop the controller's copying as a fault).
#[allow(clippy::too_many_arguments)]
pub async fn run_scheduled(
    clients: &Clients,
    topo: &Topology,
    state: &State,
    ids: &[EntityId],
    clock: &Arc<dyn crate::schedule::Clock>,
    shutdown: impl std::future::Future<Output = ()>,
    held: &(dyn Fn(&str) -> bool + Sync),
    report: &(dyn Fn(&str, &Result<Summary, Error>) + Sync),
) {
    let jobs: Vec<(EntityId, drctl_core::topology::Schedule)> = ids
        .iter()
        .filter_map(|&id| match &topo.entity(id).spec {
            EntitySpec::Datastore(d) => Some((id, d.replication.as_ref()?.schedule.clone()?)),
            EntitySpec::Service(_) => None,
        })
        .collect();
    crate::schedule::run_schedule(&**clock, &jobs, shutdown, |id| async move {
        let name = &topo.entity(id).name;
        if held(name) {
            return;
        }
        let result = run_once(clients, topo, id, state, clock, &s3::NoProgress).await;
        report(name, &result);
    })
    .await;
}

/// What an operator does with a conflict (an object replication would not
/// overwrite or delete, because it may be the only copy of a write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Leave it as it is; replication stops reporting it while it is unchanged.
    Keep,
    /// Let replication replace or delete it on the next pass.
    Discard,
    /// Copy it into the primary under `drctl-conflicts/ZONE/KEY` (so it is
    /// replicated everywhere, under another name), then discard it.
    CopyAside,
}

/// A conflict as the store keeps it per zone: (key, ETag, reason).
type ConflictRow = (String, String, String);

/// What [`resolve_all`] did with one conflict: (datastore, zone, key, outcome).
pub type ResolvedConflict = (String, String, String, Result<String, Error>);

/// Resolves, one after the other and each audited as [`resolve`] does,
/// every conflict replication has recorded for the datastores `names` (every
/// `by: drctl` one when empty), in `zone` only when one is given: after a
/// failover a former primary can hold thousands, which nobody resolves one
/// command at a time. Answers one outcome per conflict, in the order they
/// were recorded; one that fails does not stop the rest.
#[allow(clippy::too_many_arguments)]
pub async fn resolve_all(
    clients: &Clients,
    topo: &Topology,
    state: &State,
    names: &[String],
    zone: Option<&str>,
    how: Resolution,
    who: &crate::declare::Actor,
) -> Result<Vec<ResolvedConflict>, Error> {
    let ids = selected(topo, names)?;
    let mut out = Vec::new();
    for id in ids {
        let name = topo.entity(id).name.clone();
        // Per zone, the conflicts still standing once these are resolved.
        let mut left: Vec<(String, Vec<ConflictRow>)> = Vec::new();
        for (z, key, etag, reason) in state.conflicts(&name)? {
            if zone.is_some_and(|wanted| wanted != z) {
                continue;
            }
            let r = resolve(clients, topo, state, &name, &z, &key, how, who).await;
            let at = match left.iter().position(|(lz, _)| *lz == z) {
                Some(i) => i,
                None => {
                    left.push((z.clone(), Vec::new()));
                    left.len() - 1
                }
            };
            if r.is_err() {
                left[at].1.push((key.clone(), etag, reason));
            }
            out.push((name.clone(), z, key, r));
        }
        // What was resolved leaves `status` now, not only after the next pass.
        for (z, rows) in left {
            state.replace_conflicts(&name, &z, &rows)?;
        }
    }
    Ok(out)
}

/// The key a conflicting object is copied aside to.
pub fn aside_key(zone: &str, key: &str) -> String {
    format!("drctl-conflicts/{zone}/{key}")
}

/// Resolves one conflict, written to the audit log before it acts.
#[allow(clippy::too_many_arguments)]
pub async fn resolve(
    clients: &Clients,
    topo: &Topology,
    state: &State,
    name: &str,
    zone: &str,
    key: &str,
    how: Resolution,
    who: &crate::declare::Actor,
) -> Result<String, Error> {
    let id = selected(topo, &[name.to_string()])?[0];
    let EntitySpec::Datastore(ds) = &topo.entity(id).spec else { unreachable!("selected returns datastores") };
    let all = primary_first(clients, topo, state, name, ds).await?;
    let Some((primary, _)) = all.split_first() else {
        return Err(Request::NoBuckets { name: name.to_string() }.into());
    };
    let bucket = all
        .iter()
        .find(|b| b.zone == zone)
        .ok_or_else(|| Request::NoBucketInZone { name: name.to_string(), zone: zone.to_string() })?;
    if bucket.zone == primary.zone {
        return Err(Request::PrimaryHasNoConflicts { name: name.to_string(), zone: zone.to_string() }.into());
    }
    let head = bucket.client.head_object().bucket(&bucket.name).key(key).send().await.map_err(|e| {
        Request::UnreadableObject {
            key: key.to_string(),
            bucket: bucket.name.clone(),
            zone: zone.to_string(),
            why: drctl_aws::explain(&e),
        }
    })?;
    let etag = head.e_tag().unwrap_or_default().trim_matches('"').to_string();
    let word = match how {
        Resolution::Keep => "keep",
        Resolution::Discard => "discard",
        Resolution::CopyAside => "copy-aside",
    };
    crate::declare::audit(
        state,
        who,
        "replicate.resolve",
        &format!("{name} {zone} {key}"),
        &serde_json::json!({ "datastore": name, "zone": zone, "key": key, "etag": etag, "resolution": word }),
    )?;
    let discard = |state: &State| {
        state.record_replicated(
            name,
            &[drctl_state::ReplicatedObject {
                zone: zone.to_string(),
                key: key.to_string(),
                etag: etag.clone(),
                source_etag: etag.clone(),
                kept: false,
            }],
        )
    };
    Ok(match how {
        Resolution::Keep => {
            state.keep_replicated(name, zone, key, &etag)?;
            format!("kept {key} in {zone} as it is; replication leaves it alone while it is unchanged")
        }
        Resolution::Discard => {
            discard(state)?;
            format!("discarded {key} in {zone}: the next pass replaces or deletes it")
        }
        Resolution::CopyAside => {
            let aside = aside_key(zone, key);
            let bytes = s3::get_bytes(bucket, key).await?;
            s3::put_bytes(primary, &aside, bytes).await?;
            discard(state)?;
            format!(
                "copied {key} from {zone} into the primary ({}) as {aside}; the next pass replaces or deletes the original",
                primary.zone
            )
        }
    })
}
