//! Helpers the binary's AWS tests share (against moto's server): the SDK
//! configuration, `drctl` signing with given keys, and the RDS estates
//! the tests build. Kept apart from `common/`, which every test binary
//! compiles, so that only the AWS tests build against the AWS SDK here.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// The SDK's configuration for moto at `endpoint`, signing with `keys`.
pub async fn sdk(endpoint: &str, keys: (&str, &str)) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_credential_types::Credentials::new(keys.0, keys.1, None, None, "tests"))
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// `drctl` in `dir` against moto at `endpoint`, signing with `keys`, with
/// no state store or keys of the caller's.
pub fn drctl(dir: &Path, endpoint: &str, keys: (&str, &str)) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drctl"));
    c.current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", keys.0)
        .env("AWS_SECRET_ACCESS_KEY", keys.1)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env_remove("DRCTL_STATE");
    c
}

/// Runs a command to its end: (exit code, stdout, stderr).
pub fn outcome(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A standalone RDS PostgreSQL instance in `az`.
pub async fn rds_instance(rds: &aws_sdk_rds::Client, id: &str, az: &str) {
    rds.create_db_instance()
        .db_instance_identifier(id)
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("not-a-secret-1")
        .availability_zone(az)
        .send()
        .await
        .unwrap();
}

/// `primary` in us-east-1a with its read replica `replica` in us-east-1b.
pub async fn rds_pair(rds: &aws_sdk_rds::Client, primary: &str, replica: &str) {
    rds_instance(rds, primary, "us-east-1a").await;
    rds.create_db_instance_read_replica()
        .db_instance_identifier(replica)
        .source_db_instance_identifier(primary)
        .availability_zone("us-east-1b")
        .send()
        .await
        .unwrap();
}

/// An Aurora PostgreSQL cluster with one member per `(id, az)`.
pub async fn aurora_cluster(rds: &aws_sdk_rds::Client, cluster: &str, members: &[(&str, &str)]) {
    rds.create_db_cluster()
        .db_cluster_identifier(cluster)
        .engine("aurora-postgresql")
        .master_username("admin")
        .master_user_password("not-a-secret-1")
        .send()
        .await
        .unwrap();
    for (id, az) in members {
        rds.create_db_instance()
            .db_instance_identifier(*id)
            .db_instance_class("db.r6g.large")
            .engine("aurora-postgresql")
            .db_cluster_identifier(cluster)
            .availability_zone(*az)
            .send()
            .await
            .unwrap();
    }
}
