//! `drctl discover` (docs/guide/aws.md): read an AWS account's estate and write a
//! topology skeleton that `drctl validate` accepts.
//!
//! What is found: RDS instances and their read replicas (`rds-instance`),
//! Aurora clusters (`rds-cluster`), S3 buckets that replicate
//! (`s3` with `replication: { by: s3 }`: the source and its
//! destinations), and Route53 records answered per zone (failover or
//! weighted pairs, a service's route). Zones are the availability zones
//! found, named as AWS names them. What a person must decide (tiers,
//! objectives, dependencies, which zone a regional bucket stands for) is
//! left as a comment where it goes.

use crate::iam::{Grant, On, Use};
use crate::{api_error, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Reading an account needs to list what is in it: no resource can be named before it is found.
pub const READ_ESTATE: Grant = Grant {
    sid: "DiscoverEstate",
    actions: &[
        "rds:DescribeDBInstances",
        "rds:DescribeDBClusters",
        "s3:ListAllMyBuckets",
        "s3:GetBucketLocation",
        "s3:GetReplicationConfiguration",
        "route53:ListHostedZones",
        "route53:ListResourceRecordSets",
    ],
    on: On::Account,
    uses: &[Use::Discover],
};

/// Every permission this module's calls need.
pub const PERMISSIONS: &[Grant] = &[READ_ESTATE];

/// An RDS instance as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundInstance {
    pub id: String,
    pub region: String,
    pub az: String,
    pub engine: String,
    pub replica_of: Option<String>,
    pub cluster: Option<String>,
}

/// An Aurora cluster and its members' zones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCluster {
    pub id: String,
    pub region: String,
    pub engine: String,
    /// (instance, availability zone, writer).
    pub members: Vec<(String, String, bool)>,
}

/// A bucket that replicates, and where to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundBucket {
    pub name: String,
    pub region: String,
    /// Destination bucket names of its enabled rules.
    pub replicates_to: Vec<String>,
}

/// A record answered differently per zone (failover or weighted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRecord {
    pub zone_id: String,
    pub name: String,
    pub rtype: String,
    /// `failover` or `weighted`.
    pub policy: String,
    /// (set identifier, value, PRIMARY/SECONDARY or weight).
    pub answers: Vec<(String, String, String)>,
}

/// What an account holds, as far as drctl cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Estate {
    pub instances: Vec<FoundInstance>,
    pub clusters: Vec<FoundCluster>,
    pub buckets: Vec<FoundBucket>,
    /// Buckets found that do not replicate (listed as a comment).
    pub lone_buckets: Vec<String>,
    pub records: Vec<FoundRecord>,
}

/// Reads the account in `regions` (RDS per region; S3 and Route53 are global, buckets kept when in a region asked).
pub async fn estate(shared: &aws_config::SdkConfig, regions: &[String]) -> Result<Estate> {
    let mut e = Estate::default();
    for region in regions {
        let rds = crate::rds::Rds::new(shared, Some(region)).rds;
        let mut pages = rds.describe_db_instances().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| api_error(format!("listing RDS instances in {region}"), &err))?;
            for i in page.db_instances() {
                e.instances.push(FoundInstance {
                    id: i.db_instance_identifier().unwrap_or_default().to_string(),
                    region: region.clone(),
                    az: i.availability_zone().unwrap_or_default().to_string(),
                    engine: i.engine().unwrap_or_default().to_string(),
                    replica_of: i.read_replica_source_db_instance_identifier().map(str::to_string),
                    cluster: i.db_cluster_identifier().map(str::to_string),
                });
            }
        }
        let mut pages = rds.describe_db_clusters().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| api_error(format!("listing RDS clusters in {region}"), &err))?;
            for c in page.db_clusters() {
                let id = c.db_cluster_identifier().unwrap_or_default().to_string();
                let members = c
                    .db_cluster_members()
                    .iter()
                    .filter_map(|m| {
                        let inst = m.db_instance_identifier()?;
                        let az = e.instances.iter().find(|i| i.id == inst).map(|i| i.az.clone()).unwrap_or_default();
                        Some((inst.to_string(), az, m.is_cluster_writer().unwrap_or(false)))
                    })
                    .collect();
                e.clusters.push(FoundCluster {
                    id,
                    region: region.clone(),
                    engine: c.engine().unwrap_or_default().to_string(),
                    members,
                });
            }
        }
    }
    let s3 = crate::s3::client_for(shared, None, None);
    let listed = s3.list_buckets().send().await.map_err(|err| api_error("listing S3 buckets", &err))?;
    for b in listed.buckets() {
        let Some(name) = b.name() else { continue };
        let region = match s3.get_bucket_location().bucket(name).send().await {
            Ok(l) => l
                .location_constraint()
                .map(|c| c.as_str().to_string())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "us-east-1".into()),
            Err(err) => return Err(api_error(format!("locating bucket {name}"), &err)),
        };
        if !regions.contains(&region) {
            continue;
        }
        let targets: Vec<String> = match s3.get_bucket_replication().bucket(name).send().await {
            Ok(out) => out
                .replication_configuration()
                .map(|c| {
                    c.rules()
                        .iter()
                        .filter(|r| r.status().as_str() == "Enabled")
                        .filter_map(|r| r.destination())
                        .map(|d| d.bucket().trim_start_matches("arn:aws:s3:::").to_string())
                        .collect()
                })
                .unwrap_or_default(),
            // No configuration is an error answer (ReplicationConfigurationNotFoundError).
            Err(_) => Vec::new(),
        };
        if targets.is_empty() {
            e.lone_buckets.push(name.to_string());
        } else {
            e.buckets.push(FoundBucket { name: name.to_string(), region, replicates_to: targets });
        }
    }
    // A destination is not a datastore of its own.
    let destinations: BTreeSet<String> = e.buckets.iter().flat_map(|b| b.replicates_to.clone()).collect();
    e.lone_buckets.retain(|b| !destinations.contains(b));
    let r53 = aws_sdk_route53::Client::new(shared);
    let zones = r53.list_hosted_zones().send().await.map_err(|err| api_error("listing Route53 hosted zones", &err))?;
    for z in zones.hosted_zones() {
        let zone_id = z.id().trim_start_matches("/hostedzone/").to_string();
        let mut by_name: BTreeMap<(String, String), FoundRecord> = BTreeMap::new();
        let mut start: Option<(String, aws_sdk_route53::types::RrType, Option<String>)> = None;
        loop {
            let mut req = r53.list_resource_record_sets().hosted_zone_id(&zone_id);
            if let Some((n, t, id)) = start.take() {
                req = req.start_record_name(n).start_record_type(t).set_start_record_identifier(id);
            }
            let out = req.send().await.map_err(|err| api_error(format!("listing records of {zone_id}"), &err))?;
            for r in out.resource_record_sets() {
                let Some(set) = r.set_identifier() else { continue };
                let policy = if r.failover().is_some() {
                    "failover"
                } else if r.weight().is_some() {
                    "weighted"
                } else {
                    continue;
                };
                let value = r.resource_records().first().map(|v| v.value().to_string()).unwrap_or_default();
                let how = r
                    .failover()
                    .map(|f| f.as_str().to_string())
                    .or(r.weight().map(|w| w.to_string()))
                    .unwrap_or_default();
                let key = (r.name().to_string(), r.r#type().as_str().to_string());
                by_name
                    .entry(key.clone())
                    .or_insert_with(|| FoundRecord {
                        zone_id: zone_id.clone(),
                        name: key.0.clone(),
                        rtype: key.1.clone(),
                        policy: policy.into(),
                        answers: Vec::new(),
                    })
                    .answers
                    .push((set.to_string(), value, how));
            }
            if out.is_truncated() {
                if let (Some(n), Some(t)) = (out.next_record_name(), out.next_record_type()) {
                    start = Some((n.to_string(), t.clone(), out.next_record_identifier().map(str::to_string)));
                    continue;
                }
            }
            break;
        }
        e.records.extend(by_name.into_values().filter(|r| r.answers.len() > 1));
    }
    Ok(e)
}

/// A name as the topology accepts it (letters, digits, `-`).
fn ident(s: &str) -> String {
    let mut out: String = s
        .trim_end_matches('.')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').to_string()
}

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The topology skeleton, as YAML with a comment at each decision.
pub fn skeleton(e: &Estate, regions: &[String]) -> String {
    let azs = discovered_zones(e, regions);
    let mut y = String::new();
    y.push_str("# Written by `drctl discover` from what the account holds. Check every\n");
    y.push_str("# `# decide:` comment, then `drctl validate` and `drctl plan --zone ZONE`.\n");
    y.push_str("version: 1\nname: discovered\n");
    y.push_str("# Zones: the availability zones found. Their order is the failover\n# preference (decide: put the one you fail over to first).\nzones:\n");
    for (az, region) in &azs {
        y.push_str(&format!("  - {{ name: {az}, region: {region}, aws_zone: {az} }}\n"));
    }
    y.push_str("# decide: your tiers and their contractual targets (these are placeholders).\n");
    y.push_str("objectives:\n  tier-0: { rpo: 1m, rto: 15m }\n  tier-1: { rpo: 15m, rto: 1h }\n");
    let names = datastores_yaml(&mut y, e, &azs);
    services_yaml(&mut y, e, &azs, &names);
    y
}

/// Zones: every availability zone found, in name order; a region with
/// buckets but no AZ found gets its `a` and `b` zones. (Zone name to region.)
fn discovered_zones(e: &Estate, regions: &[String]) -> BTreeMap<String, String> {
    let mut azs: BTreeMap<String, String> = BTreeMap::new();
    for i in &e.instances {
        if !i.az.is_empty() {
            azs.insert(i.az.clone(), i.region.clone());
        }
    }
    for c in &e.clusters {
        for (_, az, _) in &c.members {
            if !az.is_empty() {
                azs.insert(az.clone(), c.region.clone());
            }
        }
    }
    for b in &e.buckets {
        if zones_in(&azs, &b.region).len() < 2 {
            for s in ["a", "b"] {
                azs.insert(format!("{}{s}", b.region), b.region.clone());
            }
        }
    }
    for r in regions {
        if zones_in(&azs, r).is_empty() && !e.records.is_empty() {
            for s in ["a", "b"] {
                azs.insert(format!("{r}{s}"), r.clone());
            }
        }
    }
    azs
}

/// The zones of `region`, in name order.
fn zones_in(azs: &BTreeMap<String, String>, region: &str) -> Vec<String> {
    azs.iter().filter(|(_, r)| *r == region).map(|(a, _)| a.clone()).collect()
}

/// `datastores:` (RDS instances with their replicas, Aurora clusters,
/// replicated buckets) and the buckets left out; returns the datastores' names.
fn datastores_yaml(y: &mut String, e: &Estate, azs: &BTreeMap<String, String>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    y.push_str("datastores:\n");
    let mut any = false;
    for i in e.instances.iter().filter(|i| i.replica_of.is_none() && i.cluster.is_none()) {
        any = true;
        names.push(rds_instance_yaml(y, e, i));
    }
    for c in &e.clusters {
        any = true;
        let name = ident(&c.id);
        names.push(name.clone());
        let members: Vec<String> =
            c.members.iter().map(|(m, az, w)| format!("{m} ({az}{})", if *w { ", writer" } else { "" })).collect();
        y.push_str(&format!("  # Aurora {} cluster {}: {}\n", c.engine, c.id, members.join(", ")));
        y.push_str(&format!("  - {{ name: {name}, kind: rds-cluster, cluster: {}, region: {} }}\n", c.id, c.region));
    }
    for b in &e.buckets {
        any = true;
        names.push(bucket_yaml(y, b, azs));
    }
    if !any {
        y.push_str("  []\n");
    }
    if !e.lone_buckets.is_empty() {
        y.push_str(&format!(
            "# Also found, not replicated (decide: add a replica bucket and `replication: {{ by: drctl }}`): {}\n",
            e.lone_buckets.join(", ")
        ));
    }
    names
}

/// An RDS instance and its read replicas (one in another region is
/// pointed out); returns its name.
fn rds_instance_yaml(y: &mut String, e: &Estate, i: &FoundInstance) -> String {
    let replicas: Vec<&FoundInstance> = e.instances.iter().filter(|r| r.replica_of.as_deref() == Some(&i.id)).collect();
    let name = ident(&i.id);
    y.push_str(&format!("  # RDS {} instance {} in {}", i.engine, i.id, i.az));
    if replicas.is_empty() {
        y.push_str(": no read replica, so nothing to fail over to (decide: add one, or drop this entry)");
    }
    y.push('\n');
    y.push_str(&format!("  - name: {name}\n    kind: rds-instance\n    region: {}\n", i.region));
    y.push_str(&format!("    primary: {{ zone: {}, instance: {} }}\n", i.az, i.id));
    y.push_str("    replicas:");
    if replicas.is_empty() {
        y.push_str(" []\n");
    } else {
        y.push('\n');
        for r in &replicas {
            if r.region != i.region {
                y.push_str(&format!("      # {} is in another region ({})\n", r.id, r.region));
            }
            y.push_str(&format!("      - {{ zone: {}, instance: {} }}\n", r.az, r.id));
        }
    }
    y.push_str("    # decide: failover: { max_lag: ... } refuses to promote a replica further behind\n");
    name
}

/// A bucket that S3 replicates, its destinations spread over its region's
/// zones; returns its name.
fn bucket_yaml(y: &mut String, b: &FoundBucket, azs: &BTreeMap<String, String>) -> String {
    let name = ident(&b.name);
    let zones = zones_in(azs, &b.region);
    let first = zones.first().cloned().unwrap_or_default();
    y.push_str(&format!(
        "  # S3 bucket {} replicates to {} (S3's own replication: drctl measures it and turns it around on failover)\n",
        b.name,
        b.replicates_to.join(", ")
    ));
    y.push_str("  # decide: buckets are regional: which zone each one stands for\n");
    y.push_str(&format!(
        "  - name: {name}\n    kind: s3\n    primary: {{ zone: {first}, bucket: {} }}\n    replicas:\n",
        b.name
    ));
    for (n, dest) in b.replicates_to.iter().enumerate() {
        let zone = zones.get(n + 1).or(zones.last()).cloned().unwrap_or_default();
        y.push_str(&format!("      - {{ zone: {zone}, bucket: {dest} }}\n"));
    }
    y.push_str("    replication: { by: s3 }\n");
    name
}

/// `services:`, one per Route53 record answered per zone, depending on
/// every datastore found (`names`) until someone decides otherwise.
fn services_yaml(y: &mut String, e: &Estate, azs: &BTreeMap<String, String>, names: &[String]) {
    y.push_str("services:\n");
    if e.records.is_empty() {
        y.push_str("  []\n");
    }
    let zone_names: Vec<&String> = azs.keys().collect();
    for r in &e.records {
        record_service_yaml(y, r, &zone_names, names);
    }
}

/// One service from a Route53 record: its answers mapped onto the zones.
fn record_service_yaml(y: &mut String, r: &FoundRecord, zone_names: &[&String], names: &[String]) {
    let name = ident(r.name.split('.').next().unwrap_or(&r.name));
    let answers: Vec<String> = r.answers.iter().map(|(set, v, how)| format!("{set}={v} ({how})")).collect();
    y.push_str(&format!(
        "  # Route53 {} record {} {} in {}: {}\n",
        r.policy,
        r.name,
        r.rtype,
        r.zone_id,
        answers.join(", ")
    ));
    y.push_str("  # decide: the service's tier, zones and depends_on; drctl writes a simple record (UPSERT) per\n");
    y.push_str("  # failover: delete the failover/weighted pair first, or drop `route:` and let Route53's health checks switch it\n");
    // Answers in order: PRIMARY (or the heaviest) first, mapped onto the zones in order.
    let mut answers = r.answers.clone();
    answers.sort_by_key(|(_, _, how)| match how.as_str() {
        "PRIMARY" => 0,
        "SECONDARY" => 1,
        w => 2 + (1_000_000 - w.parse::<i64>().unwrap_or(0)),
    });
    let records: Vec<String> = answers
        .iter()
        .zip(zone_names.iter())
        .map(|((set, v, _), z)| {
            let zone = zone_names.iter().find(|z| z.as_str() == set.as_str()).unwrap_or(z);
            format!("{zone}: {}", q(v))
        })
        .collect();
    let zones_used: Vec<String> = records.iter().map(|r| r.split(':').next().unwrap_or_default().to_string()).collect();
    y.push_str(&format!(
        "  - name: {name}\n    tier: tier-0\n    zones: [{}]\n    depends_on: [{}]\n    route: {{ kind: route53, zone_id: {}, name: {}, type: {}, records: {{ {} }} }}\n",
        zones_used.join(", "),
        names.join(", "),
        r.zone_id,
        r.name,
        r.rtype,
        records.join(", ")
    ));
}
