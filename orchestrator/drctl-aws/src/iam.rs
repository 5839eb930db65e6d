//! The IAM permissions drctl's AWS calls need (docs/guide/aws.md), declared next to
//! the code that makes each call, so the list cannot drift from the calls:
//! each module that calls AWS lists its [`Grant`]s in a
//! `PERMISSIONS` slice, and `drctl iam-policy` turns them into a policy on
//! the topology's own resources (in `drctl-control`).
//!
//! A permission is one statement: the actions one kind of call needs, on
//! one kind of resource, for the uses that make it. Statements are kept
//! apart by purpose so that each is necessary: the tests remove each in
//! turn and see a call refused.

/// What drctl is run for (`drctl iam-policy --for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Use {
    /// `drctl status`: measuring RPO and health.
    Status,
    /// `drctl replicate`: copying S3 objects (`by: drctl`).
    Replicate,
    /// `drctl declare`: preflight and failover actions.
    Declare,
    /// `drctl discover`: reading what an account holds.
    Discover,
    /// `drctl backup` and scheduled backups: pgBackRest writing to an S3 repository.
    Backup,
    /// `drctl restore` and restore tests: RDS point-in-time restores, S3
    /// restores from versions, scratch copies made and removed.
    Restore,
    /// `drctl erase`: every version under a subject's prefix destroyed and
    /// verified gone.
    Erase,
}

/// The resources a statement is on, named by the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum On {
    /// Every bucket of every S3 datastore (`arn:aws:s3:::BUCKET`).
    Buckets,
    /// The objects in the buckets drctl copies (`arn:aws:s3:::BUCKET/*`).
    CopiedObjects,
    /// The buckets of S3 datastores replicated by S3 itself.
    NativeBuckets,
    /// The IAM role S3's replication runs as (read from the buckets).
    ReplicationRole,
    /// The RDS instances the topology names, and the members of its clusters.
    DbInstances,
    /// The read replicas the topology names (what may be promoted).
    DbReplicas,
    /// The Aurora clusters the topology names.
    DbClusters,
    /// Instances with replicas: CloudWatch's `ReplicaLag` (no resource-level permission exists).
    Metrics,
    /// The hosted zones of the topology's Route53 records.
    HostedZones,
    /// The hosted zones, limited to the topology's record names, types and UPSERT.
    RecordChanges,
    /// Route53 change ids (`arn:aws:route53:::change/*`).
    Changes,
    /// Everything in the account (`*`): only discovery, which lists what
    /// no topology names yet.
    Account,
    /// The RDS instances restores read from (the primaries of `rds-instance`
    /// datastores) and the instances they make (`<source>-restored-*`).
    RestoredInstances,
    /// The Aurora clusters restores read from and the clusters they make
    /// (`<cluster>-restored-*`).
    RestoredClusters,
    /// What `restore --replace` of an `rds-instance` renames, stops and
    /// makes: the primary, its `-restored-*` copies and `-replaced-*`
    /// names, and each read replica the topology lists with its
    /// `-replaced-*` names.
    ReplacedInstances,
    /// What `restore --replace` of an `rds-cluster` renames and adds to:
    /// the cluster, its `-restored-*` copies and `-replaced-*` names, and
    /// the region's instances (the old members, read to match their class,
    /// are found at run time; the new ones are made in the copy).
    ReplacedClusters,
    /// The primary buckets of S3 datastores and their objects: what an S3
    /// restore reads the versions of.
    RestoreSources,
    /// Where an S3 restore may write: a prefix of the primary bucket, the
    /// bucket itself (in place), or a bucket named `drctl-restore-*`.
    RestoreDestBuckets,
    /// The objects of [`On::RestoreDestBuckets`].
    RestoreDestObjects,
    /// The scratch buckets of restore tests (`drctl-restore-*`) and their
    /// objects: made, read, and removed with every version.
    ScratchCopies,
    /// Every bucket of the S3 datastores `erasure:` locates subjects in,
    /// and their objects under the literal part of each prefix.
    ErasedPrefixes,
    /// The buckets of pgBackRest's S3 repositories.
    BackupRepositories,
    /// The files of pgBackRest's S3 repositories (under `pgbackrest/`).
    BackupRepositoryFiles,
}

/// The bucket-name prefix of the copies restores make in new buckets:
/// `iam-policy` grants creating only buckets named so.
pub const SCRATCH_BUCKET_PREFIX: &str = "drctl-restore-";

/// pgBackRest's own calls on an S3 repository (it runs with drctl's
/// credentials, passed through the environment): listing the repository,
/// and reading, writing and expiring its files under `pgbackrest/`
/// (drctl's `repo1-path`).
pub const BACKUP_PERMISSIONS: &[Grant] = &[
    Grant {
        sid: "PgBackRestListRepository",
        actions: &["s3:ListBucket"],
        on: On::BackupRepositories,
        uses: &[Use::Backup, Use::Restore],
    },
    Grant {
        sid: "PgBackRestReadRepository",
        actions: &["s3:GetObject"],
        on: On::BackupRepositoryFiles,
        uses: &[Use::Backup, Use::Restore],
    },
    // A restore only reads: a copy never archives into the production repository.
    Grant {
        sid: "PgBackRestWriteRepository",
        actions: &["s3:PutObject", "s3:DeleteObject"],
        on: On::BackupRepositoryFiles,
        uses: &[Use::Backup],
    },
];

/// One statement drctl's calls need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The statement's `Sid`.
    pub sid: &'static str,
    pub actions: &'static [&'static str],
    pub on: On,
    pub uses: &'static [Use],
}

/// What the credentials at hand may call, as far as AWS lets it be told.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every action is allowed; `how` says how that was judged.
    Allowed { how: String },
    /// These actions are not allowed.
    Missing { actions: Vec<String>, how: String },
    /// It could not be told (no credentials, no permission to ask).
    Unknown(String),
}

/// Whether the credentials in `sdk` may call `actions`: simulated with
/// `iam:SimulatePrincipalPolicy` where AWS offers it; where it does not
/// (an emulator), the identity's attached and inline policies are read and
/// their `Allow` statements matched against the actions (by action only:
/// resources and conditions are left to the simulation).
pub async fn permitted(sdk: &aws_config::SdkConfig, actions: &[String]) -> Verdict {
    let sts = aws_sdk_sts::Client::new(sdk);
    let arn = match sts.get_caller_identity().send().await {
        Ok(me) => me.arn().unwrap_or_default().to_string(),
        Err(e) => {
            return Verdict::Unknown(format!(
                "who the credentials are cannot be told (sts:GetCallerIdentity: {})",
                crate::explain(&e)
            ))
        }
    };
    let iam = aws_sdk_iam::Client::new(sdk);
    let simulated =
        iam.simulate_principal_policy().policy_source_arn(&arn).set_action_names(Some(actions.to_vec())).send().await;
    let why_not = match simulated {
        Ok(out) => {
            let missing: Vec<String> = out
                .evaluation_results()
                .iter()
                .filter(|r| r.eval_decision() != &aws_sdk_iam::types::PolicyEvaluationDecisionType::Allowed)
                .map(|r| r.eval_action_name().to_string())
                .collect();
            let how = format!("simulated for {arn} (iam:SimulatePrincipalPolicy)");
            return if missing.is_empty() {
                Verdict::Allowed { how }
            } else {
                Verdict::Missing { actions: missing, how }
            };
        }
        Err(e) => crate::explain(&e),
    };
    let Some(user) = arn.split_once(":user/").map(|(_, u)| u.rsplit('/').next().unwrap_or(u).to_string()) else {
        return Verdict::Unknown(format!(
            "cannot simulate the policies of {arn} ({why_not}), and only a user's policies can be read instead"
        ));
    };
    let documents = match user_policies(&iam, &user).await {
        Ok(d) => d,
        Err(e) => return Verdict::Unknown(format!("cannot simulate ({why_not}) nor read the policies of {arn} ({e})")),
    };
    let allowed: Vec<String> = documents.iter().flat_map(allowed_actions).collect();
    let missing: Vec<String> =
        actions.iter().filter(|a| !allowed.iter().any(|p| action_matches(p, a))).cloned().collect();
    let how = format!(
        "the {} policies of user {user} read, actions compared (simulation not offered here: {why_not})",
        documents.len()
    );
    if missing.is_empty() {
        Verdict::Allowed { how }
    } else {
        Verdict::Missing { actions: missing, how }
    }
}

/// The documents of a user's attached (managed) and inline policies.
async fn user_policies(iam: &aws_sdk_iam::Client, user: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut docs = Vec::new();
    let attached = iam.list_attached_user_policies().user_name(user).send().await.map_err(|e| crate::explain(&e))?;
    for p in attached.attached_policies() {
        let Some(arn) = p.policy_arn() else { continue };
        let policy = iam.get_policy().policy_arn(arn).send().await.map_err(|e| crate::explain(&e))?;
        let Some(version) = policy.policy().and_then(|p| p.default_version_id()) else { continue };
        let v = iam
            .get_policy_version()
            .policy_arn(arn)
            .version_id(version)
            .send()
            .await
            .map_err(|e| crate::explain(&e))?;
        if let Some(doc) = v.policy_version().and_then(|v| v.document()) {
            docs.push(document(doc)?);
        }
    }
    let inline = iam.list_user_policies().user_name(user).send().await.map_err(|e| crate::explain(&e))?;
    for name in inline.policy_names() {
        let p = iam.get_user_policy().user_name(user).policy_name(name).send().await.map_err(|e| crate::explain(&e))?;
        docs.push(document(p.policy_document())?);
    }
    Ok(docs)
}

/// A policy document as IAM answers it: URL-encoded JSON (AWS), or plain JSON.
fn document(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text)
        .or_else(|_| serde_json::from_str(&percent_decode(text)))
        .map_err(|e| format!("a policy document does not parse: {e}"))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()),
        ) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The actions a document's `Allow` statements name (`Deny` and
/// `NotAction` are not understood here: they count for nothing).
fn allowed_actions(doc: &serde_json::Value) -> Vec<String> {
    let statements = match &doc["Statement"] {
        serde_json::Value::Array(a) => a.clone(),
        one @ serde_json::Value::Object(_) => vec![one.clone()],
        _ => Vec::new(),
    };
    statements
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| match &s["Action"] {
            serde_json::Value::String(a) => vec![a.clone()],
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// Whether an IAM action pattern (`s3:Get*`, `*`) covers `action`; case-insensitive as IAM is.
fn action_matches(pattern: &str, action: &str) -> bool {
    fn glob(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], a) || (!a.is_empty() && glob(p, &a[1..])),
            (Some(b'?'), Some(_)) => glob(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => glob(&p[1..], &a[1..]),
            _ => false,
        }
    }
    glob(pattern.as_bytes(), action.as_bytes())
}

#[cfg(test)]
mod permission_tests {
    use super::*;

    #[test]
    fn action_patterns_match_as_iam_does() {
        assert!(action_matches("s3:GetObject", "s3:getobject"));
        assert!(action_matches("s3:Get*", "s3:GetObjectVersion"));
        assert!(action_matches("*", "rds:PromoteReadReplica"));
        assert!(!action_matches("s3:Get*", "s3:PutObject"));
        assert!(!action_matches("rds:Describe*", "rds:PromoteReadReplica"));
    }

    #[test]
    fn allow_statements_are_read_from_encoded_documents() {
        let doc = document("%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%5B%22s3%3AGetObject%22%5D%2C%22Resource%22%3A%22%2A%22%7D%2C%7B%22Effect%22%3A%22Deny%22%2C%22Action%22%3A%22s3%3APutObject%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D").unwrap();
        assert_eq!(allowed_actions(&doc), ["s3:GetObject"]);
    }
}
