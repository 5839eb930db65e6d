//! The preflight checks that need the world: a lab DNS server that must
//! answer, and every AWS resource a step will touch, with the credentials
//! at hand. Run before anything changes, so that no credentials, an unknown
//! identifier or a missing permission refuse the run instead of failing it
//! halfway.

use crate::failover::{Check, Declaration};
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
    let needs_aws = specs.iter().any(|s| match Action::parse(&s.action) {
        Some(
            Action::RdsPromoteReadReplica
            | Action::RdsFailoverDbCluster
            | Action::S3PromoteReplica
            | Action::Route53Upsert
            | Action::Route53Failover,
        ) => true,
        Some(Action::ServiceFailover) => service_route53(topo, &s.entity).is_some(),
        _ => false,
    });
    if !needs_aws {
        return;
    }
    let zones_map = crate::live::zone_map(topo);
    let lost = decl.lost_zones(topo);
    for s in specs {
        let ds = topo
            .entity_id(s.with.get("datastore").and_then(|v| v.as_str()).unwrap_or(&s.entity))
            .map(|i| topo.entity(i));
        let Some(action) = Action::parse(&s.action) else { continue };
        let result: Option<Result<String, String>> = match (action, ds.map(|e| &e.spec)) {
            (Action::RdsPromoteReadReplica, Some(EntitySpec::Datastore(d))) => {
                let to = s.to_zone.as_deref().unwrap_or_default();
                let instance =
                    d.replicas.iter().find(|m| topo.zones[m.zone].name == to).and_then(|m| match &m.location {
                        Location::RdsInstance { instance } => Some(instance.clone()),
                        _ => None,
                    });
                let client = drctl_aws::rds::Rds::new(clients.sdk().await, d.region.as_deref());
                Some(match instance {
                    None => Err(format!("no replica instance in {to}")),
                    Some(id) => drctl_aws::rds::describe_instance(&client, &id)
                        .await
                        .map(|i| format!("{} is {} in {}", i.id, i.status, i.availability_zone))
                        .map_err(|e| e.to_string()),
                })
            }
            (Action::RdsFailoverDbCluster, Some(EntitySpec::Datastore(d))) => {
                let client = drctl_aws::rds::Rds::new(clients.sdk().await, d.region.as_deref());
                let cluster = d.cluster.clone().unwrap_or_default();
                Some(match drctl_aws::rds::cluster_members(&client, &cluster, &zones_map).await {
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
                Some(match buckets.iter().find(|b| b.zone == to) {
                    None => Err(format!("no bucket in {to}")),
                    Some(b) => b
                        .client
                        .head_bucket()
                        .bucket(&b.name)
                        .send()
                        .await
                        .map(|_| format!("bucket {} answers", b.name))
                        .map_err(|e| format!("bucket {}: {}", b.name, drctl_aws::explain(&e))),
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
        if let Some(r) = result {
            let (ok, detail) = match r {
                Ok(d) => (true, d),
                Err(e) => (false, format!("{e}; nothing was changed")),
            };
            checks.push(Check { subject: s.id.clone(), ok, detail });
        }
    }
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
