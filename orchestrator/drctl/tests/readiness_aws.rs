//! Readiness judges the AWS permissions a failover needs (docs/readiness.md),
//! on the AWS API emulator (moto) with its IAM enforcement on. moto offers
//! no `iam:SimulatePrincipalPolicy`, so what is judged is the comparison of
//! the user's own policies with what `drctl iam-policy` prints: with the
//! whole policy the scope is ready; with the promote statement removed,
//! `drctl readiness` names the missing action before anyone declares.

use drctl_testkit::Moto;
use serde_json::{json, Value};
mod aws;

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_missing_a_permission_the_failover_needs_is_a_finding() {
    let moto = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "5")]);
    let admin_sdk = aws::sdk(&moto.endpoint(), ("testing", "testing")).await;
    let iam = aws_sdk_iam::Client::new(&admin_sdk);
    iam.create_user().user_name("admin").send().await.unwrap();
    iam.put_user_policy()
        .user_name("admin")
        .policy_name("everything")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    let a = iam.create_access_key().user_name("admin").send().await.unwrap();
    let admin =
        (a.access_key().unwrap().access_key_id().to_string(), a.access_key().unwrap().secret_access_key().to_string());
    let iam = aws_sdk_iam::Client::new(&aws::sdk(&moto.endpoint(), (&admin.0, &admin.1)).await);
    iam.create_user().user_name("drctl").send().await.unwrap();
    let u = iam.create_access_key().user_name("drctl").send().await.unwrap();
    let user =
        (u.access_key().unwrap().access_key_id().to_string(), u.access_key().unwrap().secret_access_key().to_string());
    let rds = aws_sdk_rds::Client::new(&aws::sdk(&moto.endpoint(), (&admin.0, &admin.1)).await);
    aws::rds_pair(&rds, "ledger-a", "ledger-b").await;

    let dir = std::env::temp_dir().join(format!("drctl-readiness-aws-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("drctl.yaml"),
        "version: 1
zones:
  - { name: az1, region: us-east-1, aws_zone: us-east-1a }
  - { name: az2, region: us-east-1, aws_zone: us-east-1b }
objectives: { tier-0: { rpo: 1h, rto: 1h } }
datastores:
  - name: ledger
    kind: rds-instance
    tier: tier-0
    primary:  { zone: az1, instance: ledger-a }
    replicas: [ { zone: az2, instance: ledger-b } ]
",
    )
    .unwrap();
    let (code, printed, err) =
        aws::outcome(aws::drctl(&dir, &moto.endpoint(), (&admin.0, &admin.1)).args(["iam-policy", "--for", "declare"]));
    assert_eq!(code, 0, "{err}");
    let policy: Value = serde_json::from_str(printed.trim()).unwrap();

    // The user's policy: what drctl printed (resources widened where moto
    // cannot judge them), plus reading its own identity and policies.
    let grant = |statements: Vec<Value>| {
        let mut all: Vec<Value> = statements
            .into_iter()
            .map(|mut s| {
                s["Resource"] = json!("*");
                s.as_object_mut().unwrap().remove("Condition");
                let extra: Vec<Value> = s["Action"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|a| {
                        a.as_str().and_then(|x| x.strip_prefix("cloudwatch:")).map(|r| json!(format!("monitoring:{r}")))
                    })
                    .collect();
                s["Action"].as_array_mut().unwrap().extend(extra);
                s
            })
            .collect();
        all.push(json!({"Effect": "Allow", "Action": ["sts:GetCallerIdentity", "iam:Get*", "iam:List*", "iam:SimulatePrincipalPolicy"], "Resource": "*"}));
        json!({"Version": "2012-10-17", "Statement": all})
    };
    let put = |doc: Value| {
        let iam = iam.clone();
        async move {
            iam.put_user_policy()
                .user_name("drctl")
                .policy_name("drctl")
                .policy_document(doc.to_string())
                .send()
                .await
                .unwrap();
        }
    };
    let statements = policy["Statement"].as_array().unwrap().clone();
    put(grant(statements.clone())).await;
    let readiness = || {
        let (code, out, err) = aws::outcome(aws::drctl(&dir, &moto.endpoint(), (&user.0, &user.1)).args([
            "readiness",
            "--output",
            "json",
        ]));
        (code, serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}")))
    };
    let aws_findings = |r: &Value| -> Vec<Value> {
        r["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["findings"].as_array().unwrap().clone())
            .filter(|f| f["check"] == "aws")
            .collect()
    };
    let (_, whole) = readiness();
    assert!(aws_findings(&whole).is_empty(), "the whole policy: no permission finding\n{whole:#}");

    // Without the statement that lets drctl promote a replica.
    let without: Vec<Value> = statements
        .into_iter()
        .filter(|s| !s["Action"].as_array().unwrap().iter().any(|a| a == "rds:PromoteReadReplica"))
        .collect();
    put(grant(without)).await;
    let (code, r) = readiness();
    assert_eq!(code, 3, "{r:#}");
    let found = aws_findings(&r);
    assert!(!found.is_empty(), "{r:#}");
    assert!(found.iter().all(|f| f["severity"] == "error"), "{found:#?}");
    assert!(found[0]["message"].as_str().unwrap().contains("rds:PromoteReadReplica"), "{found:#?}");
    assert!(r["scopes"].as_array().unwrap().iter().all(|s| s["ready"] == false), "every scope needs it: {r:#}");
}
