//! `drctl discover` against an estate the test builds on moto through the
//! real AWS SDK: what it writes validates and plans, names what it found,
//! and says what a person must decide.

use drctl_testkit::Moto;
mod aws;

fn drctl(dir: &std::path::Path, moto: &Moto, args: &[&str]) -> (i32, String, String) {
    aws::outcome(aws::drctl(dir, &moto.endpoint(), ("testing", "testing")).args(args))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_estate_becomes_a_topology_that_validates_and_plans() {
    use aws_sdk_route53::types::{
        Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, ResourceRecordSetFailover, RrType,
    };
    use aws_sdk_s3::types::{
        BucketVersioningStatus, Destination, ReplicationConfiguration, ReplicationRule, ReplicationRuleFilter,
        ReplicationRuleStatus, VersioningConfiguration,
    };
    let moto = Moto::start();
    let sdk = aws::sdk(&moto.endpoint(), ("testing", "testing")).await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    for (id, az) in [("ledger-a", "us-east-1a"), ("reports", "us-east-1c")] {
        aws::rds_instance(&rds, id, az).await;
    }
    rds.create_db_instance_read_replica()
        .db_instance_identifier("ledger-b")
        .source_db_instance_identifier("ledger-a")
        .availability_zone("us-east-1b")
        .send()
        .await
        .unwrap();
    aws::aurora_cluster(&rds, "orders", &[("orders-1", "us-east-1a"), ("orders-2", "us-east-1b")]).await;
    let s3 = drctl_aws::s3::client_for(&sdk, Some(&moto.endpoint()), None);
    for b in ["media-src", "media-dst", "scratch"] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    for b in ["media-src", "media-dst"] {
        s3.put_bucket_versioning()
            .bucket(b)
            .versioning_configuration(
                VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await
            .unwrap();
    }
    let rule = ReplicationRule::builder()
        .id("to-dst")
        .priority(1)
        .status(ReplicationRuleStatus::Enabled)
        .filter(ReplicationRuleFilter::builder().prefix("").build())
        .destination(Destination::builder().bucket("arn:aws:s3:::media-dst").build().unwrap())
        .build()
        .unwrap();
    s3.put_bucket_replication()
        .bucket("media-src")
        .replication_configuration(
            ReplicationConfiguration::builder()
                .role("arn:aws:iam::123456789012:role/replication")
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let r53 = aws_sdk_route53::Client::new(&sdk);
    let zone = r53.create_hosted_zone().name("shop.example.").caller_reference("d").send().await.unwrap();
    let zone_id = zone.hosted_zone().unwrap().id().trim_start_matches("/hostedzone/").to_string();
    let record = |set: &str, value: &str, failover: ResourceRecordSetFailover| {
        Change::builder()
            .action(ChangeAction::Create)
            .resource_record_set(
                ResourceRecordSet::builder()
                    .name("pay.shop.example.")
                    .r#type(RrType::A)
                    .ttl(30)
                    .set_identifier(set)
                    .failover(failover)
                    .resource_records(ResourceRecord::builder().value(value).build().unwrap())
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    r53.change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(
            ChangeBatch::builder()
                .changes(record("us-east-1a", "10.0.1.10", ResourceRecordSetFailover::Primary))
                .changes(record("us-east-1b", "10.0.2.10", ResourceRecordSetFailover::Secondary))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let dir = std::env::temp_dir().join(format!("drctl-discover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (code, yaml, err) = drctl(&dir, &moto, &["discover", "--region", "us-east-1"]);
    assert_eq!(code, 0, "{yaml}\n{err}");
    assert!(
        err.contains("found 3 RDS instances, 1 Aurora clusters, 1 replicating buckets, 1 per-zone records"),
        "{err}"
    );
    std::fs::write(dir.join("drctl.yaml"), &yaml).unwrap();
    let (code, out, err) = drctl(&dir, &moto, &["validate", "-f", "drctl.yaml"]);
    assert_eq!(code, 0, "the skeleton validates:\n{yaml}\n{out}\n{err}");

    // What it found, where.
    for found in [
        "  - { name: us-east-1a, region: us-east-1, aws_zone: us-east-1a }",
        "    primary: { zone: us-east-1a, instance: ledger-a }",
        "      - { zone: us-east-1b, instance: ledger-b }",
        "  - { name: orders, kind: rds-cluster, cluster: orders, region: us-east-1 }",
        "    primary: { zone: us-east-1a, bucket: media-src }",
        "      - { zone: us-east-1b, bucket: media-dst }",
        "    replication: { by: s3 }",
        &format!("route: {{ kind: route53, zone_id: {zone_id}, name: pay.shop.example., type: A, records: {{ us-east-1a: \"10.0.1.10\", us-east-1b: \"10.0.2.10\" }} }}"),
    ] {
        assert!(yaml.contains(found), "{found:?} in:\n{yaml}");
    }
    // What a person must decide, said where it goes.
    assert!(yaml.contains("# RDS postgres instance reports in us-east-1c: no read replica"), "{yaml}");
    assert!(yaml.contains("# decide: your tiers and their contractual targets"));
    assert!(yaml.contains("# decide: buckets are regional"));
    assert!(yaml.contains("# Also found, not replicated") && yaml.contains("scratch"), "{yaml}");
    assert!(!yaml.contains("instance: orders-1"), "cluster members are the cluster's, not instances of their own");
    // It plans: losing us-east-1a promotes ledger-b, moves the writer, turns S3 around, switches the record.
    let (code, out, err) =
        drctl(&dir, &moto, &["plan", "-f", "drctl.yaml", "--zone", "us-east-1a", "--output", "json"]);
    assert!(code == 0 || code == 3, "{out}\n{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let actions: Vec<&str> = plan["steps"].as_array().unwrap().iter().map(|s| s["action"].as_str().unwrap()).collect();
    for a in ["rds.promote_read_replica", "s3.promote_replica"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    // JSON too: the same topology, no comments.
    let (code, json, err) = drctl(&dir, &moto, &["discover", "--region", "us-east-1", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(dir.join("drctl.json"), &json).unwrap();
    let (code, out, err) = drctl(&dir, &moto, &["validate", "-f", "drctl.json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // The policy for discovery is read-only.
    let (code, out, _) = drctl(&dir, &moto, &["iam-policy", "-f", "drctl.yaml", "--for", "discover"]);
    assert_eq!(code, 0);
    let p: serde_json::Value = serde_json::from_str(&out).unwrap();
    let actions = p["Statement"][0]["Action"].as_array().unwrap();
    assert!(
        actions.iter().all(|a| {
            let a = a.as_str().unwrap();
            a.contains(":Describe") || a.contains(":List") || a.contains(":Get")
        }),
        "{p}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
