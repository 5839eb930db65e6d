//! The preflight checks that need the world: a lab DNS server that must
//! answer, and every AWS resource a step will touch, with the credentials
//! at hand. Run before anything changes, so that no credentials, an unknown
//! identifier or a missing permission refuse the run instead of failing it
//! halfway.

use crate::declaration::{Check, Declaration};
use crate::live::Clients;
use drctl_core::action::Action;
use drctl_core::topology::{EntitySpec, Location, Route, Topology};
use drctl_engine::StepSpec;
use std::time::Duration;

/// A lab-dns route can only be switched when its DNS server answers.
pub(crate) async fn lab_dns_check(subject: &str, route: &Route) -> Check {
    let Some(server) = route.server.as_deref() else {
        return Check {
            subject: subject.into(),
            ok: false,
            detail: format!("the lab-dns route {} has no `server`", route.name),
        };
    };
    match drctl_providers::dns::query_a(server, &route.name, Duration::from_secs(3)).await {
        Ok(now) => Check {
            subject: subject.into(),
            ok: true,
            detail: format!(
                "dns://{server} answers {} with {}",
                route.name,
                now.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
            ),
        },
        Err(e) => Check { subject: subject.into(), ok: false, detail: format!("{e}; nothing was changed") },
    }
}

/// Checks that every AWS resource a step will act on exists and answers
/// with the credentials at hand (no credentials, unknown identifiers and
/// missing permissions are found here, not halfway through a failover).
pub(crate) async fn aws_preflight(
    topo: &Topology,
    clients: &Clients,
    decl: &Declaration,
    specs: &[StepSpec],
    checks: &mut Vec<Check>,
) {
    if !needs_aws(topo, specs) {
        return;
    }
    let zones_map = crate::live::zone_map(topo);
    let lost = decl.lost_zones(topo);
    for s in specs {
        checks.extend(aws_step_check(topo, clients, decl, s, &zones_map, &lost).await);
    }
}

/// Whether any step of the plan acts on AWS.
pub(crate) fn needs_aws(topo: &Topology, specs: &[StepSpec]) -> bool {
    specs.iter().any(|s| match Action::parse(&s.action) {
        Some(
            Action::RdsPromoteReadReplica
            | Action::RdsFailoverDbCluster
            | Action::S3PromoteReplica
            | Action::Route53Upsert
            | Action::Route53Failover,
        ) => true,
        Some(Action::ServiceFailover) => service_route53(topo, &s.entity).is_some(),
        _ => false,
    })
}

/// The AWS check of one step (`None`: it touches no AWS resource): what
/// [`aws_preflight`] runs for each step, and readiness concurrently.
pub(crate) async fn aws_step_check(
    topo: &Topology,
    clients: &Clients,
    decl: &Declaration,
    s: &StepSpec,
    zones_map: &drctl_aws::rds::ZoneMap,
    lost: &[String],
) -> Option<Check> {
    let ds =
        topo.entity_id(s.with.get("datastore").and_then(|v| v.as_str()).unwrap_or(&s.entity)).map(|i| topo.entity(i));
    let action = Action::parse(&s.action)?;
    let result: Option<Result<String, String>> = match (action, ds.map(|e| &e.spec)) {
        (Action::RdsPromoteReadReplica, Some(EntitySpec::Datastore(d))) => {
            let to = s.to_zone.as_deref().unwrap_or_default();
            let instance = d.replicas.iter().find(|m| topo.zones[m.zone].name == to).and_then(|m| match &m.location {
                Location::RdsInstance { instance } => Some(instance.clone()),
                _ => None,
            });
            let client = drctl_aws::rds::Rds::new(clients.sdk().await, d.region.as_deref());
            let max_lag = ds.and_then(|e| e.failover.max_lag);
            Some(match instance {
                None => Err(format!("no replica instance in {to}")),
                Some(id) => match drctl_aws::rds::describe_instance(&client, &id).await {
                    Err(e) => Err(e.to_string()),
                    Ok(i) => {
                        let found = format!("{} is {} in {}", i.id, i.status, i.availability_zone);
                        match max_lag {
                            None => Ok(found),
                            Some(max) => {
                                match rds_lag(clients, d.region.as_deref(), &id, max, decl.overrides.accept_lag).await {
                                    (true, lag) => Ok(format!("{found}; {lag}")),
                                    (false, lag) => Err(lag),
                                }
                            }
                        }
                    }
                },
            })
        }
        (Action::RdsFailoverDbCluster, Some(EntitySpec::Datastore(d))) => {
            let client = drctl_aws::rds::Rds::new(clients.sdk().await, d.region.as_deref());
            let cluster = d.cluster.clone().unwrap_or_default();
            Some(match drctl_aws::rds::cluster_members(&client, &cluster, zones_map).await {
                Err(e) => Err(e.to_string()),
                Ok(m) if m.iter().any(|(_, _, z)| !lost.contains(z)) => {
                    Ok(format!("{cluster} has a member outside the lost zones"))
                }
                Ok(_) => Err(format!("{cluster} has no member outside the lost zones")),
            })
        }
        (Action::S3PromoteReplica, Some(EntitySpec::Datastore(d))) => {
            let to = s.to_zone.as_deref().unwrap_or_default();
            let buckets = crate::live::buckets(clients, topo, d).await;
            let native = d.replication.as_ref().is_some_and(|r| r.by == drctl_core::topology::ReplicationBy::S3);
            Some(match buckets.iter().find(|b| b.zone == to) {
                None => Err(format!("no bucket in {to}")),
                Some(b) => match b.client.head_bucket().bucket(&b.name).send().await {
                    Err(e) => Err(format!("bucket {}: {}", b.name, drctl_aws::explain(&e))),
                    Ok(_) if !native => Ok(format!("bucket {} answers", b.name)),
                    // Native replication needs versioning on the new primary,
                    // and a role, read from a replication configuration.
                    Ok(_) => native_turnaround_check(b, &buckets).await,
                },
            })
        }
        (Action::Route53Upsert | Action::Route53Failover, _) => {
            let zone_id = s.with.get("zone_id").and_then(|v| v.as_str()).map(str::to_string);
            Some(hosted_zone_check(clients, zone_id).await)
        }
        (Action::ServiceFailover, _) => match service_route53(topo, &s.entity) {
            Some(zone_id) => Some(hosted_zone_check(clients, Some(zone_id)).await),
            None => None,
        },
        _ => None,
    };
    let (ok, detail) = match result? {
        Ok(d) => (true, d),
        Err(e) => (false, format!("{e}; nothing was changed")),
    };
    Some(Check { subject: s.id.clone(), ok, detail })
}

fn service_route53(topo: &Topology, name: &str) -> Option<String> {
    let e = topo.entity(topo.entity_id(name)?);
    match &e.spec {
        EntitySpec::Service(svc) => svc
            .route
            .as_ref()
            .filter(|r| r.kind == drctl_core::topology::RouteKind::Route53)
            .and_then(|r| r.zone_id.clone()),
        EntitySpec::Datastore(_) => None,
    }
}

async fn hosted_zone_check(clients: &Clients, zone_id: Option<String>) -> Result<String, String> {
    let Some(zone_id) = zone_id else { return Err("no hosted zone id".into()) };
    let client = drctl_aws::route53::client(clients.sdk().await);
    client
        .get_hosted_zone()
        .id(&zone_id)
        .send()
        .await
        .map(|_| format!("hosted zone {zone_id} answers"))
        .map_err(|e| format!("hosted zone {zone_id}: {}", drctl_aws::explain(&e)))
}

/// Where each RDS cluster's writer is now, asked of AWS at declare time
/// (not only what an earlier `status` recorded): the plan moves a writer
/// that sits in a lost zone. Only clusters the scope can touch are asked.
/// A cluster that cannot be described refuses the run unless forced: the
/// writer could be in the lost zone and nothing would say so.
pub(crate) async fn discover_clusters(
    topo: &Topology,
    clients: &Clients,
    decl: &Declaration,
    obs: &mut drctl_core::plan::Observations,
    checks: &mut Vec<Check>,
) {
    let zones_map = crate::live::zone_map(topo);
    let by_zone = !decl.zones.is_empty() || !decl.regions.is_empty();
    for (id, e, d) in topo.datastores() {
        let Some(cluster) = d.cluster.as_deref() else { continue };
        if !(by_zone || decl.targets.contains(&e.name)) {
            continue;
        }
        let client = drctl_aws::rds::Rds::new(clients.sdk().await, d.region.as_deref());
        match drctl_aws::rds::cluster_members(&client, cluster, &zones_map).await {
            Ok(members) => {
                let zone_ids: Vec<(usize, bool)> =
                    members.iter().filter_map(|(_, w, z)| topo.zone_id(z).map(|zi| (zi, *w))).collect();
                let Some(&(writer, _)) = zone_ids.iter().find(|(_, w)| *w) else { continue };
                let mut replicas: Vec<usize> = zone_ids.iter().filter(|(z, w)| !w && *z != writer).map(|(z, _)| *z).collect();
                replicas.sort_unstable();
                replicas.dedup();
                obs.placement.insert(id, drctl_core::plan::Placement { primary: writer, replicas });
                checks.push(Check {
                    subject: e.name.clone(),
                    ok: true,
                    detail: format!("{cluster}'s writer is in {} now (asked of AWS)", topo.zones[writer].name),
                });
            }
            Err(err) => checks.push(Check {
                subject: e.name.clone(),
                ok: decl.overrides.accept_lag,
                detail: if decl.overrides.accept_lag {
                    format!("cannot see where {cluster}'s writer is ({err}); --accept-lag: planned without it")
                } else {
                    format!("cannot see where {cluster}'s writer is ({err}): it may be in the lost zone; --accept-lag to go on without it; nothing was changed")
                },
            }),
        }
    }
}

/// `max_lag` against an `rds-instance` replica about to be promoted: the
/// `ReplicaLag` AWS reports. Unknown counts as over, unless forced.
pub(crate) async fn rds_lag(
    clients: &Clients,
    region: Option<&str>,
    instance: &str,
    max_lag: Duration,
    accept_lag: bool,
) -> (bool, String) {
    let client = drctl_aws::rds::Rds::new(clients.sdk().await, region);
    match drctl_aws::rds::replica_lag(&client, instance).await {
        Ok(Some(l)) if l > max_lag.as_secs_f64() && !accept_lag => (
            false,
            format!("{instance} is {l:.0}s behind (ReplicaLag), over max_lag {}s: --accept-lag to promote anyway", max_lag.as_secs_f64()),
        ),
        Ok(Some(l)) => (true, format!("{instance} is {l:.0}s behind (ReplicaLag)")),
        Ok(None) if !accept_lag => (
            false,
            format!("the lag of {instance} is unknown (no ReplicaLag in the last 5 minutes), and max_lag is set: --accept-lag to promote anyway"),
        ),
        Ok(None) => (true, format!("the lag of {instance} is unknown; --accept-lag")),
        Err(e) if !accept_lag => (false, format!("cannot read the lag of {instance} ({e}): --accept-lag to promote anyway")),
        Err(e) => (true, format!("cannot read the lag of {instance} ({e}); --accept-lag")),
    }
}

/// Whether native S3 replication can be turned around onto `new`: it is
/// versioned (S3 replicates only from versioned buckets), and some bucket of
/// the datastore has a replication configuration drctl can read (its role).
async fn native_turnaround_check(new: &drctl_aws::s3::Bucket, all: &[drctl_aws::s3::Bucket]) -> Result<String, String> {
    // A bucket never versioned answers an empty configuration, which some
    // endpoints send in a shape the SDK does not read: that is "not versioned" too.
    // (moto 5.2 answers under another XML root element, which the SDK
    // refuses to decode: the answer's status is read from the body then.)
    let status = match new.client.get_bucket_versioning().bucket(&new.name).send().await {
        Ok(v) => v.status().map(|s| s.as_str().to_string()),
        Err(e) => {
            let body = e.raw_response().and_then(|r| r.body().bytes()).map(String::from_utf8_lossy).unwrap_or_default();
            if body.contains("<Status>Enabled</Status>") {
                Some("Enabled".to_string())
            } else {
                Some(format!("unreadable: {}", drctl_aws::explain(&e)))
            }
        }
    };
    if status.as_deref() != Some("Enabled") {
        return Err(format!(
            "{} is not versioned ({}): S3 cannot replicate from it; enable versioning before failing over to it",
            new.name,
            status.unwrap_or_else(|| "never enabled".into())
        ));
    }
    for b in all {
        if let Ok(out) = b.client.get_bucket_replication().bucket(&b.name).send().await {
            if let Some(role) = out.replication_configuration().map(|c| c.role()).filter(|r| !r.is_empty()) {
                // The turnaround writes a configuration on the new primary:
                // refused credentials are said now, before anything changes.
                let may = match drctl_aws::s3::replication_permission(new).await {
                    drctl_aws::s3::Permission::Denied(why) => {
                        return Err(format!(
                            "these credentials may not configure replication on {} (s3:PutReplicationConfiguration: {why}): native replication could not be turned around; grant it (and iam:PassRole on {role}) before failing over",
                            new.name
                        ))
                    }
                    drctl_aws::s3::Permission::Allowed => "s3:PutReplicationConfiguration allowed".to_string(),
                    drctl_aws::s3::Permission::Unknown(why) => format!("s3:PutReplicationConfiguration not checked: {why}"),
                };
                return Ok(format!(
                    "{} is versioned; native replication will be turned around with role {role} ({may})",
                    new.name
                ));
            }
        }
    }
    Err(format!(
        "no bucket of the datastore has a replication configuration drctl can read (s3:GetReplicationConfiguration), so native replication cannot be turned around onto {}",
        new.name
    ))
}
