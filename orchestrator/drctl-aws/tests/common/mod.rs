//! Shared setup: SDK configuration for moto with fixed test credentials.
//! (Each test binary uses a different part of it.)
#![allow(dead_code)]

use aws_config::SdkConfig;
use drctl_aws::s3::{client_for, Bucket};

pub async fn sdk() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "drctl-tests"))
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await
}

pub async fn bucket(sdk: &SdkConfig, endpoint: &str, zone: &str, name: &str) -> Bucket {
    let b = Bucket {
        zone: zone.into(),
        name: name.into(),
        endpoint: Some(endpoint.into()),
        client: client_for(sdk, Some(endpoint), None),
    };
    b.client.create_bucket().bucket(name).send().await.expect("create bucket");
    b
}

/// A bucket handle without creating it (another endpoint to the same server, a missing bucket).
pub fn handle(sdk: &SdkConfig, endpoint: &str, zone: &str, name: &str) -> Bucket {
    Bucket {
        zone: zone.into(),
        name: name.into(),
        endpoint: Some(endpoint.into()),
        client: client_for(sdk, Some(endpoint), None),
    }
}
