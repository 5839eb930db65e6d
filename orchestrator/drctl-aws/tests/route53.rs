//! Route53 switches against moto's server through the real aws-sdk-route53.

mod common;

use drctl_aws::route53::{current, upsert};
use drctl_testkit::Moto;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_record_is_switched_to_the_surviving_zone_and_insync() {
    let moto = Moto::start();
    let sdk = common::sdk().await;
    let conf = aws_sdk_route53::config::Builder::from(&sdk).endpoint_url(moto.endpoint()).build();
    let client = aws_sdk_route53::Client::from_conf(conf);
    let zone = client.create_hosted_zone().name("shop.example.").caller_reference("drctl-test").send().await.unwrap();
    let zone_id = zone.hosted_zone().unwrap().id().trim_start_matches("/hostedzone/").to_string();
    let both = vec!["10.0.1.10".to_string(), "10.0.2.10".to_string()];
    upsert(&client, &zone_id, "pay.shop.example.", "A", 30, &both, Duration::from_secs(30)).await.unwrap();
    assert_eq!(current(&client, &zone_id, "pay.shop.example.", "A").await.unwrap(), Some(both));

    let survivor = vec!["10.0.2.10".to_string()];
    let did = upsert(&client, &zone_id, "pay.shop.example", "A", 30, &survivor, Duration::from_secs(30)).await.unwrap();
    assert!(did.ends_with("(INSYNC)"), "{did}");
    assert_eq!(current(&client, &zone_id, "pay.shop.example.", "A").await.unwrap(), Some(survivor.clone()));
    let again =
        upsert(&client, &zone_id, "pay.shop.example.", "A", 30, &survivor, Duration::from_secs(30)).await.unwrap();
    assert!(again.contains("already answers"), "running it twice does no harm: {again}");

    let err =
        upsert(&client, "ZNOPE", "x.shop.example.", "A", 30, &survivor, Duration::from_secs(5)).await.unwrap_err();
    assert!(err.to_string().contains("hosted zone ZNOPE"), "{err}");
}
