//! `drctl iam-policy` (docs/guide/aws.md): the IAM policy that allows exactly the
//! AWS calls drctl makes for a topology and a use, on the resources the
//! topology names.
//!
//! The statements come from the permissions each AWS module declares next
//! to its calls ([`drctl_aws::iam`]); this module only names the
//! resources. Where AWS has no resource-level permission
//! (`cloudwatch:GetMetricStatistics`) or drctl cannot know the resource
//! (an Aurora cluster's member instances, the account id unless given,
//! the replication role S3 already uses), the statement says so with a
//! wildcard as narrow as AWS allows, and docs/guide/aws.md lists each.

use drctl_aws::iam::{Grant, On, Use};
use drctl_core::action::Action;
use drctl_core::topology::backup::{Backup, RepoStore};
use drctl_core::topology::erasure::{Find, SUBJECT_PLACEHOLDER};
use drctl_core::topology::{DatastoreKind, Location, ReplicationBy, RouteKind, Topology};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Every permission drctl's AWS calls need, from the modules that make them.
pub fn all_permissions() -> Vec<Grant> {
    let mut all = Vec::new();
    all.extend_from_slice(drctl_aws::s3::PERMISSIONS);
    all.extend_from_slice(drctl_aws::rds::PERMISSIONS);
    all.extend_from_slice(drctl_aws::route53::PERMISSIONS);
    all.extend_from_slice(drctl_aws::discover::PERMISSIONS);
    all.extend_from_slice(drctl_aws::rds_restore::PERMISSIONS);
    all.extend_from_slice(drctl_aws::rds_replace::PERMISSIONS);
    all.extend_from_slice(drctl_aws::s3_restore::PERMISSIONS);
    all.extend_from_slice(drctl_aws::s3_erasure::PERMISSIONS);
    all.extend_from_slice(drctl_aws::iam::BACKUP_PERMISSIONS);
    all
}

/// What the policy is for.
#[derive(Debug, Clone)]
pub struct Target {
    pub uses: Vec<Use>,
    /// The account id in RDS and IAM ARNs (`*` when not given).
    pub account: Option<String>,
}

/// The names `--for` takes, in the order help lists them.
pub const USE_NAMES: &[&str] =
    &["plan", "status", "replicate", "declare", "backup", "restore", "erase", "readiness", "serve", "discover"];

/// The uses `--for` names: `plan` makes no AWS call; `serve` does all but
/// discovery (it takes backups, runs restore tests and erasures).
pub fn uses_for(name: &str) -> Option<Vec<Use>> {
    Some(match name {
        "plan" => vec![],
        "status" => vec![Use::Status],
        "replicate" => vec![Use::Replicate],
        "declare" => vec![Use::Status, Use::Declare],
        "backup" => vec![Use::Backup],
        "restore" => vec![Use::Restore],
        "erase" => vec![Use::Erase],
        // Readiness preflights a failover without making it: what status and declare read.
        "readiness" => vec![Use::Status, Use::Declare],
        "serve" => vec![Use::Status, Use::Replicate, Use::Declare, Use::Backup, Use::Restore, Use::Erase],
        "discover" => vec![Use::Discover],
        _ => return None,
    })
}

/// The resources the topology names, by kind.
#[derive(Default)]
struct Resources {
    buckets: BTreeSet<String>,
    copied_objects: BTreeSet<String>,
    native_buckets: BTreeSet<String>,
    db_instances: BTreeSet<String>,
    db_replicas: BTreeSet<String>,
    db_clusters: BTreeSet<String>,
    lagging_replicas: bool,
    hosted_zones: BTreeSet<String>,
    record_names: BTreeSet<String>,
    record_types: BTreeSet<String>,
    restored_instances: BTreeSet<String>,
    replaced_instances: BTreeSet<String>,
    replaced_clusters: BTreeSet<String>,
    restored_clusters: BTreeSet<String>,
    restore_sources: BTreeSet<String>,
    restore_dest_buckets: BTreeSet<String>,
    restore_dest_objects: BTreeSet<String>,
    erased_prefixes: BTreeSet<String>,
    backup_repositories: BTreeSet<String>,
    backup_repository_files: BTreeSet<String>,
}

/// Route53's normalized record name: lower case, no trailing dot.
fn normalized(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn resources(topo: &Topology, account: &str) -> Resources {
    let mut r = Resources::default();
    let region_of = |ds: &drctl_core::topology::Datastore, zone: Option<usize>| -> String {
        ds.region
            .clone()
            .or_else(|| zone.map(|z| topo.zones[z].region.clone()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "*".into())
    };
    let scratch = drctl_aws::iam::SCRATCH_BUCKET_PREFIX;
    for (id, _, ds) in topo.datastores() {
        let members: Vec<_> = ds.primary.iter().chain(&ds.replicas).collect();
        if let Some(Backup::PgBackRest(b)) = &ds.backup {
            if let RepoStore::S3 { bucket, .. } = &b.repo.store {
                r.backup_repositories.insert(format!("arn:aws:s3:::{bucket}"));
                r.backup_repository_files.insert(format!("arn:aws:s3:::{bucket}/pgbackrest/*"));
            }
        }
        match ds.kind {
            DatastoreKind::S3 => {
                // Restores read the primary's versions and write into it, or
                // into a bucket of their own named `drctl-restore-*`.
                if let Some(Location::S3 { bucket, .. }) = ds.primary.as_ref().map(|m| &m.location) {
                    r.restore_sources.insert(format!("arn:aws:s3:::{bucket}"));
                    r.restore_sources.insert(format!("arn:aws:s3:::{bucket}/*"));
                    r.restore_dest_buckets.insert(format!("arn:aws:s3:::{bucket}"));
                    r.restore_dest_buckets.insert(format!("arn:aws:s3:::{scratch}*"));
                    r.restore_dest_objects.insert(format!("arn:aws:s3:::{bucket}/*"));
                    r.restore_dest_objects.insert(format!("arn:aws:s3:::{scratch}*/*"));
                }
                // Erasure: every bucket, objects under each prefix's literal part.
                let prefixes: Vec<String> = topo
                    .erasure
                    .iter()
                    .flat_map(|e| e.of(id))
                    .filter_map(|l| match &l.how {
                        Find::Prefix(p) => Some(p.split(SUBJECT_PLACEHOLDER).next().unwrap_or_default().to_string()),
                        Find::Sql { .. } => None,
                    })
                    .collect();
                for m in members.iter().filter(|_| !prefixes.is_empty()) {
                    if let Location::S3 { bucket, .. } = &m.location {
                        r.erased_prefixes.insert(format!("arn:aws:s3:::{bucket}"));
                        for p in &prefixes {
                            r.erased_prefixes.insert(format!("arn:aws:s3:::{bucket}/{p}*"));
                        }
                    }
                }
                let by = ds.replication.as_ref().map(|x| &x.by);
                for m in &members {
                    if let Location::S3 { bucket, .. } = &m.location {
                        r.buckets.insert(format!("arn:aws:s3:::{bucket}"));
                        match by {
                            Some(ReplicationBy::Drctl) => {
                                r.copied_objects.insert(format!("arn:aws:s3:::{bucket}/*"));
                            }
                            Some(ReplicationBy::S3) => {
                                r.native_buckets.insert(format!("arn:aws:s3:::{bucket}"));
                            }
                            None => {}
                        }
                    }
                }
            }
            DatastoreKind::RdsInstance => {
                for m in &members {
                    if let Location::RdsInstance { instance } = &m.location {
                        let arn = format!("arn:aws:rds:{}:{account}:db:{instance}", region_of(ds, Some(m.zone)));
                        r.db_instances.insert(arn.clone());
                        if ds.primary.as_ref() == Some(*m) {
                            // A restore reads the primary and makes `<primary>-restored-*`.
                            r.restored_instances.insert(arn.clone());
                            r.restored_instances.insert(format!("{arn}-restored-*"));
                            // `--replace` renames it aside and the copy into its name.
                            r.replaced_instances.insert(arn.clone());
                            r.replaced_instances.insert(format!("{arn}-restored-*"));
                            r.replaced_instances.insert(format!("{arn}-replaced-*"));
                        } else {
                            // A read replica is renamed aside and made again under its name.
                            r.replaced_instances.insert(arn.clone());
                            r.replaced_instances.insert(format!("{arn}-replaced-*"));
                        }
                        if ds.replicas.iter().any(|x| x == *m) {
                            r.db_replicas.insert(arn);
                            r.lagging_replicas = true;
                        }
                    }
                }
            }
            DatastoreKind::RdsCluster => {
                let region = region_of(ds, (!topo.zones.is_empty()).then_some(0));
                if let Some(c) = &ds.cluster {
                    let arn = format!("arn:aws:rds:{region}:{account}:cluster:{c}");
                    r.db_clusters.insert(arn.clone());
                    r.restored_clusters.insert(arn.clone());
                    r.restored_clusters.insert(format!("{arn}-restored-*"));
                    // `--replace` renames it aside and the copy into its name.
                    r.replaced_clusters.insert(arn.clone());
                    r.replaced_clusters.insert(format!("{arn}-restored-*"));
                    r.replaced_clusters.insert(format!("{arn}-replaced-*"));
                    r.replaced_clusters.insert(format!("arn:aws:rds:{region}:{account}:db:*"));
                }
                // The members are found at run time: any instance of the region.
                r.db_instances.insert(format!("arn:aws:rds:{region}:{account}:db:*"));
            }
            DatastoreKind::Postgres => {}
        }
    }
    let mut add_record = |zone_id: &str, name: &str, rtype: &str| {
        r.hosted_zones.insert(format!("arn:aws:route53:::hostedzone/{}", zone_id.trim_start_matches("/hostedzone/")));
        r.record_names.insert(normalized(name));
        r.record_types.insert(rtype.to_ascii_uppercase());
    };
    for (_, _, svc) in topo.services() {
        if let Some(route) = svc.route.as_ref().filter(|x| x.kind == RouteKind::Route53) {
            if let Some(zone) = &route.zone_id {
                add_record(zone, &route.name, &route.record_type);
            }
        }
    }
    // Runbook steps that upsert a record of their own.
    for e in &topo.entities {
        let Some(rb) = &e.failover.runbook else { continue };
        for step in &rb.steps {
            if Action::parse(step.action.name()) != Some(Action::Route53Upsert) {
                continue;
            }
            let p = |k: &str| step.with.get(k).and_then(|v| v.as_str());
            if let (Some(zone), Some(name)) = (p("zone_id"), p("name")) {
                add_record(zone, name, p("type").unwrap_or("A"));
            }
        }
    }
    r
}

/// The policy document for `topo` and `target`.
pub fn policy(topo: &Topology, target: &Target) -> Value {
    let account = target.account.clone().unwrap_or_else(|| "*".into());
    let r = resources(topo, &account);
    let scratch = drctl_aws::iam::SCRATCH_BUCKET_PREFIX;
    let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
    let mut statements: Vec<Value> = Vec::new();
    // One grant, one statement (their ids are unique: a test says so).
    for p in all_permissions().into_iter().filter(|p| p.uses.iter().any(|u| target.uses.contains(u))) {
        let actions: BTreeSet<&str> = p.actions.iter().copied().collect();
        let mut condition = None;
        let resources: Vec<String> = match p.on {
            On::Buckets => list(&r.buckets),
            On::CopiedObjects => list(&r.copied_objects),
            On::NativeBuckets => list(&r.native_buckets),
            On::ReplicationRole => {
                if r.native_buckets.is_empty() {
                    vec![]
                } else {
                    condition = Some(json!({ "StringEquals": { "iam:PassedToService": "s3.amazonaws.com" } }));
                    vec![format!("arn:aws:iam::{account}:role/*")]
                }
            }
            On::DbInstances => list(&r.db_instances),
            On::DbReplicas => list(&r.db_replicas),
            On::DbClusters => list(&r.db_clusters),
            On::Metrics => {
                if r.lagging_replicas {
                    vec!["*".into()]
                } else {
                    vec![]
                }
            }
            On::HostedZones => list(&r.hosted_zones),
            On::RecordChanges => {
                if !r.hosted_zones.is_empty() {
                    condition = Some(json!({ "ForAllValues:StringEquals": {
                        "route53:ChangeResourceRecordSetsNormalizedRecordNames": list(&r.record_names),
                        "route53:ChangeResourceRecordSetsRecordTypes": list(&r.record_types),
                        "route53:ChangeResourceRecordSetsActions": ["UPSERT"],
                    } }));
                }
                list(&r.hosted_zones)
            }
            On::Account => vec!["*".into()],
            On::RestoredInstances => list(&r.restored_instances),
            On::RestoredClusters => list(&r.restored_clusters),
            On::ReplacedInstances => list(&r.replaced_instances),
            On::ReplacedClusters => list(&r.replaced_clusters),
            On::RestoreSources => list(&r.restore_sources),
            On::RestoreDestBuckets => list(&r.restore_dest_buckets),
            On::RestoreDestObjects => list(&r.restore_dest_objects),
            On::ScratchCopies => {
                if r.restore_sources.is_empty() {
                    vec![]
                } else {
                    vec![format!("arn:aws:s3:::{scratch}*"), format!("arn:aws:s3:::{scratch}*/*")]
                }
            }
            On::ErasedPrefixes => list(&r.erased_prefixes),
            On::BackupRepositories => list(&r.backup_repositories),
            On::BackupRepositoryFiles => list(&r.backup_repository_files),
            On::Changes => {
                if r.hosted_zones.is_empty() {
                    vec![]
                } else {
                    vec!["arn:aws:route53:::change/*".into()]
                }
            }
        };
        if resources.is_empty() {
            continue;
        }
        let mut st = json!({
            "Sid": p.sid,
            "Effect": "Allow",
            "Action": actions.into_iter().collect::<Vec<_>>(),
            "Resource": resources,
        });
        if let Some(c) = condition {
            st["Condition"] = c;
        }
        statements.push(st);
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each SDK operation drctl's sources call, and the IAM action AWS
    /// authorizes it as (the Service Authorization Reference).
    const OPERATIONS: &[(&str, &str)] = &[
        ("list_objects_v2", "s3:ListBucket"),
        ("head_bucket", "s3:ListBucket"),
        ("get_object", "s3:GetObject"),
        ("head_object", "s3:GetObject"),
        ("copy_object", "s3:PutObject"),
        ("put_object", "s3:PutObject"),
        ("create_multipart_upload", "s3:PutObject"),
        ("upload_part", "s3:PutObject"),
        ("upload_part_copy", "s3:PutObject"),
        ("complete_multipart_upload", "s3:PutObject"),
        ("abort_multipart_upload", "s3:AbortMultipartUpload"),
        ("delete_object", "s3:DeleteObject"),
        ("get_bucket_replication", "s3:GetReplicationConfiguration"),
        ("put_bucket_replication", "s3:PutReplicationConfiguration"),
        ("delete_bucket_replication", "s3:PutReplicationConfiguration"),
        ("get_bucket_versioning", "s3:GetBucketVersioning"),
        ("describe_db_instances", "rds:DescribeDBInstances"),
        ("describe_db_clusters", "rds:DescribeDBClusters"),
        ("promote_read_replica", "rds:PromoteReadReplica"),
        ("failover_db_cluster", "rds:FailoverDBCluster"),
        ("get_metric_statistics", "cloudwatch:GetMetricStatistics"),
        ("list_resource_record_sets", "route53:ListResourceRecordSets"),
        ("change_resource_record_sets", "route53:ChangeResourceRecordSets"),
        ("get_change", "route53:GetChange"),
        ("get_hosted_zone", "route53:GetHostedZone"),
        ("list_buckets", "s3:ListAllMyBuckets"),
        ("get_bucket_location", "s3:GetBucketLocation"),
        ("list_hosted_zones", "route53:ListHostedZones"),
        ("list_object_versions", "s3:ListBucketVersions"),
        ("restore_db_instance_to_point_in_time", "rds:RestoreDBInstanceToPointInTime"),
        ("restore_db_cluster_to_point_in_time", "rds:RestoreDBClusterToPointInTime"),
        ("modify_db_instance", "rds:ModifyDBInstance"),
        ("stop_db_instance", "rds:StopDBInstance"),
        ("create_db_instance_read_replica", "rds:CreateDBInstanceReadReplica"),
        ("create_bucket", "s3:CreateBucket"),
    ];

    /// Every AWS call in drctl's sources has its action declared: a new
    /// call without a permission fails here, not in someone's account.
    #[test]
    fn every_aws_call_in_the_sources_has_a_declared_permission() {
        let declared: BTreeSet<&str> = all_permissions().iter().flat_map(|p| p.actions.iter().copied()).collect();
        let sources = [
            ("drctl-aws/src/s3.rs", include_str!("../../drctl-aws/src/s3.rs")),
            ("drctl-aws/src/rds.rs", include_str!("../../drctl-aws/src/rds.rs")),
            ("drctl-aws/src/route53.rs", include_str!("../../drctl-aws/src/route53.rs")),
            ("drctl-control/src/preflight.rs", include_str!("preflight.rs")),
            ("drctl-control/src/replicate.rs", include_str!("replicate.rs")),
            ("drctl-control/src/actions/mod.rs", include_str!("actions/mod.rs")),
            ("drctl-control/src/actions/aws.rs", include_str!("actions/aws.rs")),
            ("drctl-control/src/actions/routes.rs", include_str!("actions/routes.rs")),
            ("drctl-control/src/live.rs", include_str!("live.rs")),
            ("drctl-aws/src/discover.rs", include_str!("../../drctl-aws/src/discover.rs")),
            ("drctl-aws/src/s3_versions.rs", include_str!("../../drctl-aws/src/s3_versions.rs")),
            ("drctl-aws/src/s3_restore.rs", include_str!("../../drctl-aws/src/s3_restore.rs")),
            ("drctl-aws/src/s3_erasure.rs", include_str!("../../drctl-aws/src/s3_erasure.rs")),
            ("drctl-aws/src/rds_restore.rs", include_str!("../../drctl-aws/src/rds_restore.rs")),
            ("drctl-aws/src/rds_replace.rs", include_str!("../../drctl-aws/src/rds_replace.rs")),
            ("drctl/src/restore.rs", include_str!("../../drctl/src/restore.rs")),
        ];
        let mut calls = 0;
        for (file, text) in sources {
            // Only production code: the unit tests below a file's `mod tests` may call anything.
            let code = text.split("#[cfg(test)]").next().unwrap_or(text);
            for (op, action) in OPERATIONS {
                if code.contains(&format!(".{op}()")) {
                    calls += 1;
                    assert!(declared.contains(action), "{file} calls {op} ({action}) and no permission declares it");
                }
            }
        }
        assert!(calls >= 20, "the scan found the calls ({calls})");
    }

    #[test]
    fn each_grant_is_its_own_statement() {
        let all = all_permissions();
        let sids: BTreeSet<&str> = all.iter().map(|p| p.sid).collect();
        assert_eq!(sids.len(), all.len(), "two grants share a statement id");
    }

    fn topo(yaml: &str) -> Topology {
        let loaded = drctl_core::load_str(yaml, std::path::Path::new("t.yaml"));
        loaded.topology.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics))
    }

    const ESTATE: &str = "version: 1
zones:
  - { name: az1, region: eu-west-1, aws_zone: eu-west-1a }
  - { name: az2, region: eu-west-1, aws_zone: eu-west-1b }
datastores:
  - name: ledger
    kind: rds-instance
    primary: { zone: az1, instance: ledger-a }
    replicas: [ { zone: az2, instance: ledger-b } ]
  - name: orders
    kind: rds-cluster
    cluster: orders-aurora
  - name: assets
    kind: s3
    primary: { zone: az1, bucket: assets-a }
    replicas: [ { zone: az2, bucket: assets-b } ]
    replication: { by: drctl, every: 1m }
  - name: media
    kind: s3
    primary: { zone: az1, bucket: media-a }
    replicas: [ { zone: az2, bucket: media-b } ]
    replication: { by: s3 }
services:
  - name: pay
    zones: [az1, az2]
    depends_on: [ledger, orders, assets, media]
    route: { kind: route53, zone_id: Z123, name: Pay.Example.com., ttl: 30, records: { az1: 10.0.1.10, az2: 10.0.2.10 } }
";

    fn statement<'a>(p: &'a Value, sid: &str) -> Option<&'a Value> {
        p["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == sid)
    }

    #[test]
    fn the_policy_names_the_topologys_own_resources() {
        let t = topo(ESTATE);
        let p = policy(&t, &Target { uses: uses_for("serve").unwrap(), account: Some("111122223333".into()) });
        assert_eq!(
            statement(&p, "S3ListBuckets").unwrap()["Resource"],
            json!(["arn:aws:s3:::assets-a", "arn:aws:s3:::assets-b", "arn:aws:s3:::media-a", "arn:aws:s3:::media-b"])
        );
        assert_eq!(
            statement(&p, "S3CopyObjects").unwrap()["Resource"],
            json!(["arn:aws:s3:::assets-a/*", "arn:aws:s3:::assets-b/*"])
        );
        assert_eq!(
            statement(&p, "S3TurnReplicationAround").unwrap()["Resource"],
            json!(["arn:aws:s3:::media-a", "arn:aws:s3:::media-b"])
        );
        assert_eq!(
            statement(&p, "RdsPromoteReplicas").unwrap()["Resource"],
            json!(["arn:aws:rds:eu-west-1:111122223333:db:ledger-b"])
        );
        assert_eq!(
            statement(&p, "RdsFailoverClusters").unwrap()["Resource"],
            json!(["arn:aws:rds:eu-west-1:111122223333:cluster:orders-aurora"])
        );
        let change = statement(&p, "Route53ChangeRecords").unwrap();
        assert_eq!(change["Resource"], json!(["arn:aws:route53:::hostedzone/Z123"]));
        assert_eq!(
            change["Condition"]["ForAllValues:StringEquals"],
            json!({
                "route53:ChangeResourceRecordSetsNormalizedRecordNames": ["pay.example.com"],
                "route53:ChangeResourceRecordSetsRecordTypes": ["A"],
                "route53:ChangeResourceRecordSetsActions": ["UPSERT"],
            })
        );
        assert_eq!(
            statement(&p, "IamPassReplicationRole").unwrap()["Condition"]["StringEquals"]["iam:PassedToService"],
            "s3.amazonaws.com"
        );
        // Nothing broader than the topology: no action on *, but the one AWS allows only on *.
        for s in p["Statement"].as_array().unwrap() {
            if s["Resource"] == json!(["*"]) {
                assert_eq!(s["Action"], json!(["cloudwatch:GetMetricStatistics"]));
            }
            assert!(s["Action"].as_array().unwrap().iter().all(|a| !a.as_str().unwrap().contains('*')), "{s}");
        }
    }

    #[test]
    fn each_use_gets_only_what_it_calls() {
        let t = topo(ESTATE);
        let sids = |name: &str| -> Vec<String> {
            let p = policy(&t, &Target { uses: uses_for(name).unwrap(), account: None });
            p["Statement"].as_array().unwrap().iter().map(|s| s["Sid"].as_str().unwrap().to_string()).collect()
        };
        assert!(sids("plan").is_empty());
        assert_eq!(
            sids("status"),
            ["S3ListBuckets", "RdsDescribeInstances", "CloudWatchReplicaLag", "RdsDescribeClusters"]
        );
        assert_eq!(sids("replicate"), ["S3ListBuckets", "S3CopyObjects"]);
        let declare = sids("declare");
        assert!(
            declare.contains(&"Route53ChangeRecords".to_string()) && !declare.contains(&"S3CopyObjects".to_string()),
            "{declare:?}"
        );
        let p = policy(&t, &Target { uses: uses_for("status").unwrap(), account: None });
        assert_eq!(statement(&p, "RdsDescribeInstances").unwrap()["Resource"][0], "arn:aws:rds:eu-west-1:*:db:*");
    }

    #[test]
    fn backup_restore_and_erase_name_their_own_resources() {
        let books = "  - name: books
    kind: postgres
    primary: { zone: az1, url: \"postgres://u@db1/books\" }
    backup: { tool: pgbackrest, repo: { zone: az2, bucket: books-backups, region: eu-west-1 }, retention: 14d }
services:
";
        let erasure = "erasure:\n  locate: [ { datastore: assets, prefix: \"users/{subject}/\" } ]\n";
        let t = topo(&format!("{}{erasure}", ESTATE.replace("services:\n", books)));
        let p =
            |name: &str| policy(&t, &Target { uses: uses_for(name).unwrap(), account: Some("111122223333".into()) });
        let backup = p("backup");
        assert_eq!(
            statement(&backup, "PgBackRestListRepository").unwrap()["Resource"],
            json!(["arn:aws:s3:::books-backups"])
        );
        assert_eq!(
            statement(&backup, "PgBackRestWriteRepository").unwrap()["Resource"],
            json!(["arn:aws:s3:::books-backups/pgbackrest/*"])
        );
        let restore = p("restore");
        assert!(statement(&restore, "PgBackRestWriteRepository").is_none(), "a restore never writes the repository");
        assert!(statement(&restore, "PgBackRestReadRepository").is_some());
        assert_eq!(
            statement(&restore, "RdsRestoreInstances").unwrap()["Resource"],
            json!([
                "arn:aws:rds:eu-west-1:111122223333:db:ledger-a",
                "arn:aws:rds:eu-west-1:111122223333:db:ledger-a-restored-*"
            ])
        );
        assert_eq!(
            statement(&restore, "RdsReplaceInstances").unwrap()["Resource"],
            json!([
                "arn:aws:rds:eu-west-1:111122223333:db:ledger-a",
                "arn:aws:rds:eu-west-1:111122223333:db:ledger-a-replaced-*",
                "arn:aws:rds:eu-west-1:111122223333:db:ledger-a-restored-*",
                "arn:aws:rds:eu-west-1:111122223333:db:ledger-b",
                "arn:aws:rds:eu-west-1:111122223333:db:ledger-b-replaced-*"
            ])
        );
        assert_eq!(
            statement(&restore, "RdsRestoreClusters").unwrap()["Resource"],
            json!([
                "arn:aws:rds:eu-west-1:111122223333:cluster:orders-aurora",
                "arn:aws:rds:eu-west-1:111122223333:cluster:orders-aurora-restored-*"
            ])
        );
        assert_eq!(
            statement(&restore, "RdsReplaceClusters").unwrap()["Resource"],
            json!([
                "arn:aws:rds:eu-west-1:111122223333:cluster:orders-aurora",
                "arn:aws:rds:eu-west-1:111122223333:cluster:orders-aurora-replaced-*",
                "arn:aws:rds:eu-west-1:111122223333:cluster:orders-aurora-restored-*",
                "arn:aws:rds:eu-west-1:111122223333:db:*"
            ])
        );
        assert_eq!(
            statement(&restore, "S3RestoreDestinations").unwrap()["Resource"],
            json!(["arn:aws:s3:::assets-a", "arn:aws:s3:::drctl-restore-*", "arn:aws:s3:::media-a"])
        );
        let erase = p("erase");
        assert_eq!(
            statement(&erase, "S3EraseVersions").unwrap()["Resource"],
            json!([
                "arn:aws:s3:::assets-a",
                "arn:aws:s3:::assets-a/users/*",
                "arn:aws:s3:::assets-b",
                "arn:aws:s3:::assets-b/users/*"
            ])
        );
        assert_eq!(erase["Statement"].as_array().unwrap().len(), 1, "{erase}");
        // serve does all of them.
        let serve = p("serve");
        for sid in ["PgBackRestWriteRepository", "RdsRestoreInstances", "S3EraseVersions", "S3ListBuckets"] {
            assert!(statement(&serve, sid).is_some(), "{sid}");
        }
    }
}
