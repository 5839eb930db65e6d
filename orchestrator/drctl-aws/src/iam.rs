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
}

/// One statement drctl's calls need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The statement's `Sid`.
    pub sid: &'static str,
    pub actions: &'static [&'static str],
    pub on: On,
    pub uses: &'static [Use],
}
