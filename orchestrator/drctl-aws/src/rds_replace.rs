//! The RDS calls of `drctl restore --replace` of an `rds-instance`: a
//! restored instance put in the primary's place under the primary's own
//! identifier, so clients keep the same endpoint name (AWS's own advice
//! for a point-in-time restore that must serve where the old one did).
//!
//! An instance's endpoint name follows its identifier: renaming the old
//! primary aside (`<source>-replaced-<stamp>`) takes its name away from
//! clients, and renaming the restored instance to the freed identifier
//! gives it to the copy. Read replicas are made again from the new primary
//! under their old names, the old ones renamed aside first.
//!
//! Every call here is meant to be made by a step that looked at the world
//! first (which names exist, in which state): a rename is a
//! `ModifyDBInstance` with `ApplyImmediately`, and a name that already
//! moved is never moved again.

use crate::iam::{Grant, On, Use};
use crate::rds::Rds;
use crate::{api_error, Error, Result};
use std::time::{Duration, SystemTime};

/// Renaming the old primary aside and the restored instance into its
/// name, stopping the old one, and making read replicas again from the
/// new primary (on the datastore's instances, their `-restored-*` copies
/// and the `-replaced-*` names they are moved aside to).
pub const REPLACE_INSTANCES: Grant = Grant {
    sid: "RdsReplaceInstances",
    actions: &[
        "rds:DescribeDBInstances",
        "rds:ModifyDBInstance",
        "rds:StopDBInstance",
        "rds:CreateDBInstanceReadReplica",
    ],
    on: On::ReplacedInstances,
    uses: &[Use::Restore],
};

/// Adding instances to the restored Aurora cluster (it has none), and
/// renaming the old cluster aside and the restored one into its name (on
/// the datastore's cluster, its `-restored-*` copies and `-replaced-*`
/// names, and the instances: the old members are read, found at run time).
pub const REPLACE_CLUSTERS: Grant = Grant {
    sid: "RdsReplaceClusters",
    actions: &[
        "rds:DescribeDBClusters",
        "rds:DescribeDBInstances",
        "rds:CreateDBInstance",
        "rds:ModifyDBCluster",
        "rds:StopDBCluster",
    ],
    on: On::ReplacedClusters,
    uses: &[Use::Restore],
};

pub const PERMISSIONS: &[Grant] = &[REPLACE_INSTANCES, REPLACE_CLUSTERS];

/// An instance as a replace step needs to see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    pub status: String,
    pub created: Option<SystemTime>,
    /// Read replicas made from it, as RDS lists them.
    pub replicas: Vec<String>,
    /// The instance it is a read replica of, if it is one.
    pub replica_of: Option<String>,
    pub availability_zone: Option<String>,
    pub class: Option<String>,
    pub resource_id: Option<String>,
}

fn to_system(t: &aws_sdk_rds::primitives::DateTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t.as_secs_f64().max(0.0))
}

/// The instance named `id`, or `None` when no instance has that name.
pub async fn instance(rds: &Rds, id: &str) -> Result<Option<Instance>> {
    match rds.rds.describe_db_instances().db_instance_identifier(id).send().await {
        Ok(out) => Ok(out.db_instances().first().map(|i| Instance {
            id: i.db_instance_identifier().unwrap_or(id).to_string(),
            status: i.db_instance_status().unwrap_or("unknown").to_string(),
            created: i.instance_create_time().map(to_system),
            replicas: i.read_replica_db_instance_identifiers().to_vec(),
            replica_of: i.read_replica_source_db_instance_identifier().map(str::to_string),
            availability_zone: i.availability_zone().map(str::to_string),
            class: i.db_instance_class().map(str::to_string),
            resource_id: i.dbi_resource_id().map(str::to_string),
        })),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_db_instance_not_found_fault()) => Ok(None),
        Err(e) => Err(api_error(format!("describing RDS instance {id}"), &e)),
    }
}

/// Renames instance `from` to `to` now (`ApplyImmediately`): its endpoint
/// name changes with it.
pub async fn rename(rds: &Rds, from: &str, to: &str) -> Result<()> {
    rds.rds
        .modify_db_instance()
        .db_instance_identifier(from)
        .new_db_instance_identifier(to)
        .apply_immediately(true)
        .send()
        .await
        .map_err(|e| api_error(format!("renaming RDS instance {from} to {to}"), &e))?;
    Ok(())
}

/// Stops instance `id` (RDS starts a stopped instance again by itself
/// after seven days).
pub async fn stop(rds: &Rds, id: &str) -> Result<()> {
    rds.rds
        .stop_db_instance()
        .db_instance_identifier(id)
        .send()
        .await
        .map_err(|e| api_error(format!("stopping RDS instance {id}"), &e))?;
    Ok(())
}

/// Makes `id` a read replica of `source`, in the zone and class given
/// (those of the replica it takes the place of).
pub async fn create_replica(
    rds: &Rds,
    id: &str,
    source: &str,
    availability_zone: Option<&str>,
    class: Option<&str>,
) -> Result<()> {
    rds.rds
        .create_db_instance_read_replica()
        .db_instance_identifier(id)
        .source_db_instance_identifier(source)
        .set_availability_zone(availability_zone.map(str::to_string))
        .set_db_instance_class(class.map(str::to_string))
        .send()
        .await
        .map_err(|e| api_error(format!("making {id} a read replica of {source}"), &e))?;
    Ok(())
}

/// Waits until an instance named `id` exists in one of `states`; gives it
/// back.
pub async fn wait_for(rds: &Rds, id: &str, states: &[&str], wait: Duration) -> Result<Instance> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let seen = instance(rds, id).await?;
        if let Some(i) = seen.as_ref().filter(|i| states.contains(&i.status.as_str())) {
            return Ok(i.clone());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Api {
                what: format!("waiting for RDS instance {id} to be {}", states.join(" or ")),
                why: format!(
                    "still {} after {}s",
                    seen.map(|i| i.status).unwrap_or_else(|| "absent".into()),
                    wait.as_secs()
                ),
                transient: true,
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// An Aurora cluster as a replace step needs to see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub id: String,
    pub status: String,
    pub created: Option<SystemTime>,
    pub engine: Option<String>,
    /// Its instances, the writer first.
    pub members: Vec<String>,
}

/// The cluster named `id`, or `None` when no cluster has that name.
pub async fn cluster(rds: &Rds, id: &str) -> Result<Option<Cluster>> {
    match rds.rds.describe_db_clusters().db_cluster_identifier(id).send().await {
        Ok(out) => Ok(out.db_clusters().first().map(|c| {
            let mut members: Vec<_> = c.db_cluster_members().iter().collect();
            members.sort_by_key(|m| !m.is_cluster_writer().unwrap_or(false));
            Cluster {
                id: c.db_cluster_identifier().unwrap_or(id).to_string(),
                status: c.status().unwrap_or("unknown").to_string(),
                created: c.cluster_create_time().map(to_system),
                engine: c.engine().map(str::to_string),
                members: members.iter().filter_map(|m| m.db_instance_identifier().map(str::to_string)).collect(),
            }
        })),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_db_cluster_not_found_fault()) => Ok(None),
        Err(e) => Err(api_error(format!("describing RDS cluster {id}"), &e)),
    }
}

/// Renames cluster `from` to `to` now (`ApplyImmediately`): its endpoint
/// names change with it.
pub async fn rename_cluster(rds: &Rds, from: &str, to: &str) -> Result<()> {
    rds.rds
        .modify_db_cluster()
        .db_cluster_identifier(from)
        .new_db_cluster_identifier(to)
        .apply_immediately(true)
        .send()
        .await
        .map_err(|e| api_error(format!("renaming RDS cluster {from} to {to}"), &e))?;
    Ok(())
}

/// Stops cluster `id` and its instances (RDS starts a stopped cluster
/// again by itself after seven days).
pub async fn stop_cluster(rds: &Rds, id: &str) -> Result<()> {
    rds.rds
        .stop_db_cluster()
        .db_cluster_identifier(id)
        .send()
        .await
        .map_err(|e| api_error(format!("stopping RDS cluster {id}"), &e))?;
    Ok(())
}

/// Creates instance `id` of `class` and `engine` in cluster `cluster`.
pub async fn create_cluster_instance(rds: &Rds, id: &str, cluster: &str, class: &str, engine: &str) -> Result<()> {
    rds.rds
        .create_db_instance()
        .db_instance_identifier(id)
        .db_cluster_identifier(cluster)
        .db_instance_class(class)
        .engine(engine)
        .send()
        .await
        .map_err(|e| api_error(format!("creating instance {id} in cluster {cluster}"), &e))?;
    Ok(())
}

/// Waits until a cluster named `id` exists in one of `states`; gives it
/// back.
pub async fn wait_for_cluster(rds: &Rds, id: &str, states: &[&str], wait: Duration) -> Result<Cluster> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let seen = cluster(rds, id).await?;
        if let Some(c) = seen.as_ref().filter(|c| states.contains(&c.status.as_str())) {
            return Ok(c.clone());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Api {
                what: format!("waiting for RDS cluster {id} to be {}", states.join(" or ")),
                why: format!(
                    "still {} after {}s",
                    seen.map(|c| c.status).unwrap_or_else(|| "absent".into()),
                    wait.as_secs()
                ),
                transient: true,
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// An identifier made of `base` and a suffix, cut to RDS's 63 characters
/// without a trailing hyphen.
pub fn identifier(base: &str, suffix: &str) -> String {
    let keep = 63usize.saturating_sub(suffix.len() + 1);
    let mut b: String = base.chars().take(keep).collect();
    while b.ends_with('-') {
        b.pop();
    }
    format!("{b}-{suffix}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_identifier_stays_within_63_characters_without_a_double_hyphen() {
        assert_eq!(super::identifier("ledger-a", "replaced-20261206050000"), "ledger-a-replaced-20261206050000");
        // Cut where a hyphen would end the base: the hyphen goes too.
        let long = format!("{}-{}", "a".repeat(38), "b".repeat(20));
        let id = super::identifier(&long, "replaced-20261206050000");
        assert_eq!(id, format!("{}-replaced-20261206050000", "a".repeat(38)));
        assert!(!id.contains("--"), "{id}");
    }
}
