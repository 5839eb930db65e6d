//! RDS: which member is the writer, in which zone, and how far replicas lag.
//!
//! Instances: the replica lag AWS reports (CloudWatch `ReplicaLag`, the
//! latest datapoint of the last five minutes). Aurora clusters: members and
//! their availability zones are discovered from the cluster and mapped to
//! the topology's zones through each zone's `aws_zone`; within one region
//! the storage is shared, so a healthy reader's lag is 0.

use crate::iam::{Grant, On, Use};
use crate::{api_error, Error, Result};
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use drctl_core::status::{Measurement, ReplicaStatus};
use std::time::{Duration, SystemTime};

/// RDS and CloudWatch clients.
#[derive(Debug, Clone)]
pub struct Rds {
    pub rds: aws_sdk_rds::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
}

impl Rds {
    pub fn new(shared: &aws_config::SdkConfig, region: Option<&str>) -> Rds {
        let mut rds = aws_sdk_rds::config::Builder::from(shared);
        let mut cw = aws_sdk_cloudwatch::config::Builder::from(shared);
        if let Some(r) = region {
            rds = rds.region(aws_sdk_rds::config::Region::new(r.to_string()));
            cw = cw.region(aws_sdk_cloudwatch::config::Region::new(r.to_string()));
        }
        Rds {
            rds: aws_sdk_rds::Client::from_conf(rds.build()),
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(cw.build()),
        }
    }
}

/// The topology's zone for an AWS availability zone (`aws_zone` → `name`).
pub type ZoneMap = Vec<(String, String)>;

fn zone_of(map: &ZoneMap, az: &str) -> String {
    map.iter().find(|(_, aws)| aws == az).map_or_else(|| az.to_string(), |(name, _)| name.clone())
}

/// An instance as RDS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub status: String,
    pub availability_zone: String,
    pub replica_of: Option<String>,
}

/// `DescribeDBInstances`: the instances named, and a cluster's members.
pub const DESCRIBE_INSTANCES: Grant = Grant {
    sid: "RdsDescribeInstances",
    actions: &["rds:DescribeDBInstances"],
    on: On::DbInstances,
    uses: &[Use::Status, Use::Declare],
};

pub async fn describe_instance(rds: &Rds, id: &str) -> Result<Instance> {
    let out = rds
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .map_err(|e| api_error(format!("describing RDS instance {id}"), &e))?;
    let i = out.db_instances().first().ok_or_else(|| Error::Api {
        what: format!("describing RDS instance {id}"),
        why: "not found".into(),
        transient: false,
    })?;
    Ok(Instance {
        id: id.to_string(),
        status: i.db_instance_status().unwrap_or("unknown").to_string(),
        availability_zone: i.availability_zone().unwrap_or_default().to_string(),
        replica_of: i.read_replica_source_db_instance_identifier().map(str::to_string),
    })
}

/// The latest `ReplicaLag` CloudWatch has for an instance in the last five minutes.
/// CloudWatch's `ReplicaLag` (`GetMetricStatistics` has no resource-level permission).
pub const REPLICA_LAG: Grant = Grant {
    sid: "CloudWatchReplicaLag",
    actions: &["cloudwatch:GetMetricStatistics"],
    on: On::Metrics,
    uses: &[Use::Status, Use::Declare],
};

pub async fn replica_lag(rds: &Rds, id: &str) -> Result<Option<f64>> {
    // The window ends a minute ahead: the last period then always holds the
    // newest datapoint (some implementations drop a partial final period).
    // The machine's clock, not the controller's: the window is a question
    // to CloudWatch about its own datapoints, and the lag it answers is a
    // duration AWS measured, not an age drctl computes.
    let now = SystemTime::now();
    let (start, end) = (now - Duration::from_secs(300), now + Duration::from_secs(60));
    let out = rds
        .cloudwatch
        .get_metric_statistics()
        .namespace("AWS/RDS")
        .metric_name("ReplicaLag")
        .dimensions(Dimension::builder().name("DBInstanceIdentifier").value(id).build())
        .start_time(start.into())
        .end_time(end.into())
        .period(60)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .map_err(|e| api_error(format!("reading ReplicaLag of {id}"), &e))?;
    Ok(out
        .datapoints()
        .iter()
        .filter_map(|d| Some((d.timestamp()?.secs(), d.maximum()?)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, v)| v))
}

/// Measures an `rds-instance` datastore: primary and read replicas.
pub async fn measure_instance(rds: &Rds, primary: &str, replicas: &[(String, String)], zones: &ZoneMap) -> Measurement {
    let primary_zone = match describe_instance(rds, primary).await {
        Ok(p) => zone_of(zones, &p.availability_zone),
        Err(e) => return Measurement { primary_zone: None, replicas: Vec::new(), error: Some(e.to_string()) },
    };
    let mut out = Vec::new();
    for (zone, id) in replicas {
        let status = match describe_instance(rds, id).await {
            Err(e) => ReplicaStatus {
                zone: zone.clone(),
                healthy: false,
                lag_s: None,
                error: Some(e.to_string()),
                detail: None,
                ..Default::default()
            },
            Ok(i) => {
                let replicating = i
                    .replica_of
                    .as_deref()
                    .is_some_and(|src| src == primary || src.ends_with(&format!(":db:{primary}")));
                let available = i.status == "available";
                let (lag, lag_error) = match replica_lag(rds, id).await {
                    Ok(Some(l)) => (Some(l), None),
                    Ok(None) => (None, Some("no ReplicaLag datapoint in the last 5 minutes".to_string())),
                    Err(e) => (None, Some(e.to_string())),
                };
                let error = if !available {
                    Some(format!("instance {id} is {}", i.status))
                } else if !replicating {
                    Some(format!("instance {id} is not a read replica of {primary}"))
                } else {
                    lag_error
                };
                ReplicaStatus {
                    zone: zone.clone(),
                    healthy: available && replicating,
                    lag_s: lag,
                    error,
                    detail: Some(format!("{id} {} in {}", i.status, i.availability_zone)),
                    ..Default::default()
                }
            }
        };
        out.push(status);
    }
    Measurement { primary_zone: Some(primary_zone), replicas: out, error: None }
}

/// Discovered members of an Aurora/RDS cluster: (instance, is writer, zone).
/// `DescribeDBClusters`.
pub const DESCRIBE_CLUSTERS: Grant = Grant {
    sid: "RdsDescribeClusters",
    actions: &["rds:DescribeDBClusters"],
    on: On::DbClusters,
    uses: &[Use::Status, Use::Declare],
};

pub async fn cluster_members(rds: &Rds, cluster: &str, zones: &ZoneMap) -> Result<Vec<(Instance, bool, String)>> {
    let out = rds
        .rds
        .describe_db_clusters()
        .db_cluster_identifier(cluster)
        .send()
        .await
        .map_err(|e| api_error(format!("describing RDS cluster {cluster}"), &e))?;
    let c = out.db_clusters().first().ok_or_else(|| Error::Api {
        what: format!("describing RDS cluster {cluster}"),
        why: "not found".into(),
        transient: false,
    })?;
    let mut members = Vec::new();
    for m in c.db_cluster_members() {
        let Some(id) = m.db_instance_identifier() else { continue };
        let inst = describe_instance(rds, id).await?;
        let zone = zone_of(zones, &inst.availability_zone);
        members.push((inst, m.is_cluster_writer().unwrap_or(false), zone));
    }
    Ok(members)
}

/// Measures an `rds-cluster` datastore.
pub async fn measure_cluster(rds: &Rds, cluster: &str, zones: &ZoneMap) -> Measurement {
    let members = match cluster_members(rds, cluster, zones).await {
        Ok(m) => m,
        Err(e) => return Measurement { primary_zone: None, replicas: Vec::new(), error: Some(e.to_string()) },
    };
    let writer = members.iter().find(|(_, w, _)| *w).map(|(_, _, z)| z.clone());
    if writer.is_none() {
        return Measurement {
            primary_zone: None,
            replicas: Vec::new(),
            error: Some(format!("cluster {cluster} has no writer")),
        };
    }
    let replicas = members
        .iter()
        .filter(|(_, w, _)| !w)
        .map(|(i, _, zone)| {
            let ok = i.status == "available";
            ReplicaStatus {
                zone: zone.clone(),
                healthy: ok,
                lag_s: ok.then_some(0.0),
                error: (!ok).then(|| format!("reader {} is {}", i.id, i.status)),
                detail: Some(format!("reader {} (shared storage)", i.id)),
                ..Default::default()
            }
        })
        .collect();
    Measurement { primary_zone: writer, replicas, error: None }
}

/// Promotes a read replica to a standalone instance and waits until it is
/// available. Idempotent: an instance that is no longer a replica is left alone.
/// `PromoteReadReplica`, on the replicas the topology names.
pub const PROMOTE: Grant = Grant {
    sid: "RdsPromoteReplicas",
    actions: &["rds:PromoteReadReplica"],
    on: On::DbReplicas,
    uses: &[Use::Declare],
};

pub async fn promote_read_replica(rds: &Rds, id: &str, wait: Duration) -> Result<String> {
    let before = describe_instance(rds, id).await?;
    if before.replica_of.is_none() {
        return Ok(format!("{id} is already standalone"));
    }
    rds.rds
        .promote_read_replica()
        .db_instance_identifier(id)
        .send()
        .await
        .map_err(|e| api_error(format!("promoting read replica {id}"), &e))?;
    // Done when the instance no longer names a source and is available; or
    // when it went through another status (modifying, backing-up) and is
    // available again; or, when no change shows at all, after it stayed
    // available for three polls since the accepted call (the AWS API
    // emulator flips an internal flag that no field exposes).
    let deadline = tokio::time::Instant::now() + wait;
    let (mut saw_change, mut calm) = (false, 0);
    loop {
        let now = describe_instance(rds, id).await?;
        let available = now.status == "available";
        saw_change |= !available;
        calm = if available { calm + 1 } else { 0 };
        if available && (now.replica_of.is_none() || saw_change || calm >= 3) {
            return Ok(format!("{id} promoted (was a replica of {})", before.replica_of.unwrap_or_default()));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Api {
                what: format!("promoting {id}"),
                why: format!("still {} after {}s", now.status, wait.as_secs()),
                transient: true,
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Moves a cluster's writer to `target` and waits until it has moved.
/// Idempotent: nothing is done when `target` already writes.
/// `FailoverDBCluster`.
pub const FAILOVER_CLUSTER: Grant = Grant {
    sid: "RdsFailoverClusters",
    actions: &["rds:FailoverDBCluster"],
    on: On::DbClusters,
    uses: &[Use::Declare],
};

pub async fn failover_cluster(
    rds: &Rds,
    cluster: &str,
    target: &str,
    zones: &ZoneMap,
    wait: Duration,
) -> Result<String> {
    let writer = |m: &[(Instance, bool, String)]| m.iter().find(|(_, w, _)| *w).map(|(i, _, _)| i.id.clone());
    if writer(&cluster_members(rds, cluster, zones).await?).as_deref() == Some(target) {
        return Ok(format!("{target} already writes for {cluster}"));
    }
    rds.rds
        .failover_db_cluster()
        .db_cluster_identifier(cluster)
        .target_db_instance_identifier(target)
        .send()
        .await
        .map_err(|e| api_error(format!("failing over cluster {cluster} to {target}"), &e))?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if writer(&cluster_members(rds, cluster, zones).await?).as_deref() == Some(target) {
            return Ok(format!("{target} now writes for {cluster}"));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Api {
                what: format!("failing over {cluster}"),
                why: format!("the writer did not move within {}s", wait.as_secs()),
                transient: true,
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Every permission this module's calls need.
pub const PERMISSIONS: &[Grant] = &[DESCRIBE_INSTANCES, REPLICA_LAG, DESCRIBE_CLUSTERS, PROMOTE, FAILOVER_CLUSTER];
