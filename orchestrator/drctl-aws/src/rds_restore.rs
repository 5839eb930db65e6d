//! RDS point-in-time restores: a new instance (or Aurora cluster) made
//! from the source's automated backups as it was at a time.
//!
//! A restore interrupted by a crash must not make a second copy: the
//! target's identifier is decided before the call and journaled, and a
//! target that already exists is waited for, not created again.
//!
//! AWS keeps automated backups for `BackupRetentionPeriod` days and can
//! restore any second between the earliest restorable time and
//! `LatestRestorableTime` (typically within five minutes of now).

use crate::iam::{Grant, On, Use};
use crate::rds::Rds;
use crate::{api_error, Error, Result};
use std::time::{Duration, SystemTime};

/// Reading the source's restore window, restoring it into a new instance
/// and waiting for that one (on the source and on instances named
/// `<source>-restored-*`, the name drctl gives a copy).
pub const RESTORE_INSTANCES: Grant = Grant {
    sid: "RdsRestoreInstances",
    actions: &["rds:DescribeDBInstances", "rds:RestoreDBInstanceToPointInTime"],
    on: On::RestoredInstances,
    uses: &[Use::Restore],
};

/// The same for Aurora clusters (`<cluster>-restored-*`).
pub const RESTORE_CLUSTERS: Grant = Grant {
    sid: "RdsRestoreClusters",
    actions: &["rds:DescribeDBClusters", "rds:RestoreDBClusterToPointInTime"],
    on: On::RestoredClusters,
    uses: &[Use::Restore],
};

pub const PERMISSIONS: &[Grant] = &[RESTORE_INSTANCES, RESTORE_CLUSTERS];

/// What the source's backups can restore, as RDS reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub retention_days: i32,
    pub latest_restorable: Option<SystemTime>,
}

fn to_system(t: &aws_sdk_rds::primitives::DateTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t.as_secs_f64().max(0.0))
}

fn to_aws(t: SystemTime) -> aws_sdk_rds::primitives::DateTime {
    aws_sdk_rds::primitives::DateTime::from(t)
}

/// `BackupRetentionPeriod` and `LatestRestorableTime` of an instance.
pub async fn instance_window(rds: &Rds, id: &str) -> Result<Window> {
    let out = rds
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .map_err(|e| api_error(format!("describing RDS instance {id}"), &e))?;
    let i = out.db_instances().first().ok_or_else(|| Error::Config(format!("RDS instance {id} not found")))?;
    Ok(Window {
        retention_days: i.backup_retention_period().unwrap_or(0),
        latest_restorable: i.latest_restorable_time().map(to_system),
    })
}

/// The address and port a (restored) instance answers on, once RDS gives one.
pub async fn instance_endpoint(rds: &Rds, id: &str) -> Result<Option<(String, i32)>> {
    let out = rds
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .map_err(|e| api_error(format!("describing RDS instance {id}"), &e))?;
    Ok(out.db_instances().first().and_then(|i| i.endpoint()).and_then(|e| Some((e.address()?.to_string(), e.port()?))))
}

/// The writer endpoint of a (restored) cluster, once RDS gives one.
pub async fn cluster_endpoint(rds: &Rds, id: &str) -> Result<Option<(String, i32)>> {
    let out = rds
        .rds
        .describe_db_clusters()
        .db_cluster_identifier(id)
        .send()
        .await
        .map_err(|e| api_error(format!("describing RDS cluster {id}"), &e))?;
    Ok(out.db_clusters().first().and_then(|c| Some((c.endpoint()?.to_string(), c.port()?))))
}

async fn instance_status(rds: &Rds, id: &str) -> Result<Option<String>> {
    match rds.rds.describe_db_instances().db_instance_identifier(id).send().await {
        Ok(out) => Ok(out.db_instances().first().map(|i| i.db_instance_status().unwrap_or("unknown").to_string())),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_db_instance_not_found_fault()) => Ok(None),
        Err(e) => Err(api_error(format!("describing RDS instance {id}"), &e)),
    }
}

async fn cluster_status(rds: &Rds, id: &str) -> Result<Option<String>> {
    match rds.rds.describe_db_clusters().db_cluster_identifier(id).send().await {
        Ok(out) => Ok(out.db_clusters().first().map(|c| c.status().unwrap_or("unknown").to_string())),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_db_cluster_not_found_fault()) => Ok(None),
        Err(e) => Err(api_error(format!("describing RDS cluster {id}"), &e)),
    }
}

/// What a restore call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The restore was started now.
    Started,
    /// The target existed already (a resumed restore): nothing was created.
    Existed,
}

/// Restores instance `source` to `at` (`None`: its latest restorable time)
/// as a new instance `target`, and waits until it is available.
pub async fn restore_instance(
    rds: &Rds,
    source: &str,
    target: &str,
    at: Option<SystemTime>,
    wait: Duration,
) -> Result<Outcome> {
    let outcome = match instance_status(rds, target).await? {
        Some(_) => Outcome::Existed,
        None => {
            let window = instance_window(rds, source).await?;
            if window.retention_days == 0 {
                return Err(Error::Config(format!(
                    "RDS instance {source} keeps no automated backups (BackupRetentionPeriod 0): set a retention of 1 to 35 days"
                )));
            }
            let mut call = rds
                .rds
                .restore_db_instance_to_point_in_time()
                .source_db_instance_identifier(source)
                .target_db_instance_identifier(target);
            call = match at {
                Some(t) => call.restore_time(to_aws(t)),
                None => call.use_latest_restorable_time(true),
            };
            call.send().await.map_err(|e| api_error(format!("restoring {source} into {target}"), &e))?;
            Outcome::Started
        }
    };
    wait_available(|| instance_status(rds, target), target, wait).await?;
    Ok(outcome)
}

/// Restores Aurora cluster `source` to `at` (`None`: latest) as a new
/// cluster `target`, and waits until it is available. (The new cluster has
/// no instance yet: add one to serve from it.)
pub async fn restore_cluster(
    rds: &Rds,
    source: &str,
    target: &str,
    at: Option<SystemTime>,
    wait: Duration,
) -> Result<Outcome> {
    let outcome = match cluster_status(rds, target).await? {
        Some(_) => Outcome::Existed,
        None => {
            let mut call = rds
                .rds
                .restore_db_cluster_to_point_in_time()
                .source_db_cluster_identifier(source)
                .db_cluster_identifier(target);
            call = match at {
                Some(t) => call.restore_to_time(to_aws(t)),
                None => call.use_latest_restorable_time(true),
            };
            call.send().await.map_err(|e| api_error(format!("restoring cluster {source} into {target}"), &e))?;
            Outcome::Started
        }
    };
    wait_available(|| cluster_status(rds, target), target, wait).await?;
    Ok(outcome)
}

async fn wait_available<F, Fut>(status: F, target: &str, wait: Duration) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let s = status().await?;
        if s.as_deref() == Some("available") {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Api {
                what: format!("restoring {target}"),
                why: format!("still {} after {}s", s.unwrap_or_else(|| "absent".into()), wait.as_secs()),
                transient: true,
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
