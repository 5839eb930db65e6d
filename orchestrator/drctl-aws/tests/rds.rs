//! RDS instances and clusters against moto's server through the real
//! aws-sdk-rds and aws-sdk-cloudwatch.

mod common;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use drctl_aws::rds::{measure_cluster, measure_instance, Rds, ZoneMap};
use drctl_testkit::Moto;

fn zones() -> ZoneMap {
    vec![
        ("use1-az1".into(), "us-east-1a".into()),
        ("use1-az2".into(), "us-east-1b".into()),
        ("use1-az3".into(), "us-east-1c".into()),
    ]
}

async fn rds(moto: &Moto) -> Rds {
    let sdk = common::sdk().await;
    let mut conf = aws_sdk_rds::config::Builder::from(&sdk);
    conf = conf.endpoint_url(moto.endpoint());
    let mut cw = aws_sdk_cloudwatch::config::Builder::from(&sdk);
    cw = cw.endpoint_url(moto.endpoint());
    Rds {
        rds: aws_sdk_rds::Client::from_conf(conf.build()),
        cloudwatch: aws_sdk_cloudwatch::Client::from_conf(cw.build()),
    }
}

/// An Aurora cluster `billing` with one instance per (id, availability zone); the first writes.
async fn aurora(rds: &Rds, members: &[(&str, &str)]) {
    rds.rds
        .create_db_cluster()
        .db_cluster_identifier("billing")
        .engine("aurora-postgresql")
        .master_username("admin")
        .master_user_password("not-a-secret-1")
        .send()
        .await
        .unwrap();
    for (id, az) in members {
        rds.rds
            .create_db_instance()
            .db_instance_identifier(*id)
            .db_instance_class("db.r6g.large")
            .engine("aurora-postgresql")
            .db_cluster_identifier("billing")
            .availability_zone(*az)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_replica_is_found_in_its_zone_with_the_lag_cloudwatch_reports() {
    let moto = Moto::start();
    let rds = rds(&moto).await;
    rds.rds
        .create_db_instance()
        .db_instance_identifier("ledger-a")
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("not-a-secret-1")
        .availability_zone("us-east-1a")
        .send()
        .await
        .unwrap();
    rds.rds
        .create_db_instance_read_replica()
        .db_instance_identifier("ledger-b")
        .source_db_instance_identifier("ledger-a")
        .availability_zone("us-east-1b")
        .send()
        .await
        .unwrap();
    let replicas = vec![("use1-az2".to_string(), "ledger-b".to_string())];

    let m = measure_instance(&rds, "ledger-a", &replicas, &zones()).await;
    assert_eq!(m.error, None, "{m:?}");
    assert_eq!(m.primary_zone.as_deref(), Some("use1-az1"), "us-east-1a maps to use1-az1");
    let r = &m.replicas[0];
    assert!(r.healthy, "{r:?}");
    assert_eq!(r.lag_s, None, "no metric yet");
    assert_eq!(r.error.as_deref(), Some("no ReplicaLag datapoint in the last 5 minutes"));

    rds.cloudwatch
        .put_metric_data()
        .namespace("AWS/RDS")
        .metric_data(
            MetricDatum::builder()
                .metric_name("ReplicaLag")
                .dimensions(Dimension::builder().name("DBInstanceIdentifier").value("ledger-b").build())
                .value(2.5)
                .timestamp(std::time::SystemTime::now().into())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let m = measure_instance(&rds, "ledger-a", &replicas, &zones()).await;
    assert_eq!(m.replicas[0].lag_s, Some(2.5), "{:?}", m.replicas[0]);
    assert_eq!(m.replicas[0].error, None);

    let m = measure_instance(&rds, "ledger-x", &replicas, &zones()).await;
    let why = m.error.unwrap();
    assert!(why.contains("DBInstanceNotFound") && why.contains("fix `instance:`"), "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_members_are_discovered_and_mapped_to_zones() {
    let moto = Moto::start();
    let rds = rds(&moto).await;
    aurora(&rds, &[("billing-1", "us-east-1a"), ("billing-2", "us-east-1c")]).await;
    let m = measure_cluster(&rds, "billing", &zones()).await;
    assert_eq!(m.error, None, "{m:?}");
    assert_eq!(m.primary_zone.as_deref(), Some("use1-az1"));
    assert_eq!(m.replicas.len(), 1);
    assert_eq!((m.replicas[0].zone.as_str(), m.replicas[0].lag_s), ("use1-az3", Some(0.0)));

    let m = measure_cluster(&rds, "nope", &zones()).await;
    assert!(m.error.unwrap().contains("fix `cluster:`"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_failover_moves_the_writer_and_is_idempotent() {
    let moto = Moto::start();
    let rds = rds(&moto).await;
    aurora(&rds, &[("billing-1", "us-east-1a"), ("billing-2", "us-east-1b")]).await;
    let wait = std::time::Duration::from_secs(30);
    let did = drctl_aws::rds::failover_cluster(&rds, "billing", "billing-2", &zones(), wait).await.unwrap();
    assert_eq!(did, "billing-2 now writes for billing");
    let m = measure_cluster(&rds, "billing", &zones()).await;
    assert_eq!(m.primary_zone.as_deref(), Some("use1-az2"), "the writer moved to us-east-1b");
    let again = drctl_aws::rds::failover_cluster(&rds, "billing", "billing-2", &zones(), wait).await.unwrap();
    assert_eq!(again, "billing-2 already writes for billing");
}
