//! The checked topology: what `drctl.yaml` means once every reference is
//! resolved and every rule of docs/reference/topology.md holds.
//!
//! Code past [`load`] never re-checks anything: names are resolved to ids,
//! durations are parsed, defaults are filled in, derived targets are
//! computed, and the dependency graph is known to be acyclic.

pub mod backup;
pub mod erasure;
pub mod raw;
mod validate;

use crate::diag::{Diagnostic, Pos};
use crate::runbook::Runbook;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use validate::{cron_schedule, load, load_str};

/// Index into [`Topology::entities`].
pub type EntityId = usize;
/// Index into [`Topology::zones`]; lower is preferred for failover.
pub type ZoneId = usize;
/// Index into [`Topology::tiers`]; lower is more important (file order).
pub type TierId = usize;

#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    /// The file it was loaded from; runbook paths are relative to its folder.
    pub file: PathBuf,
    pub zones: Vec<Zone>,
    pub tiers: Vec<Tier>,
    pub contracts: Vec<Contract>,
    /// Datastores first, then services, each in file order.
    pub entities: Vec<Entity>,
    pub drills: Vec<Drill>,
    /// `erasure:`: where a subject's data lives, and the deadline.
    pub erasure: Option<erasure::Erasure>,
    /// Every entity, each after all it depends on; ties in file order.
    pub order: Vec<EntityId>,
    by_name: HashMap<String, EntityId>,
}

impl Topology {
    pub fn entity_id(&self, name: &str) -> Option<EntityId> {
        self.by_name.get(name).copied()
    }

    pub fn zone_id(&self, name: &str) -> Option<ZoneId> {
        self.zones.iter().position(|z| z.name == name)
    }

    pub fn entity(&self, id: EntityId) -> &Entity {
        &self.entities[id]
    }

    pub fn folder(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    pub fn datastores(&self) -> impl Iterator<Item = (EntityId, &Entity, &Datastore)> {
        self.entities.iter().enumerate().filter_map(|(i, e)| match &e.spec {
            EntitySpec::Datastore(d) => Some((i, e, d)),
            EntitySpec::Service(_) => None,
        })
    }

    /// What a restore of an entity must meet: its effective tier's `restore` objective.
    pub fn restore_targets(&self, id: EntityId) -> Objective {
        self.entities[id].effective_tier.map(|t| self.tiers[t].restore).unwrap_or_default()
    }

    /// How old the last drill of an entity may be: its own `drills:`, else
    /// its (effective) tier's; `None`: not checked.
    pub fn drills_every(&self, id: EntityId) -> Option<Duration> {
        let e = &self.entities[id];
        e.drills_every.or_else(|| e.effective_tier.and_then(|t| self.tiers[t].drills_every))
    }

    pub fn services(&self) -> impl Iterator<Item = (EntityId, &Entity, &Service)> {
        self.entities.iter().enumerate().filter_map(|(i, e)| match &e.spec {
            EntitySpec::Service(s) => Some((i, e, s)),
            EntitySpec::Datastore(_) => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub region: String,
    /// The AWS availability zone that discovered resources in this zone report.
    pub aws_zone: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Objective {
    pub rpo: Option<Duration>,
    pub rto: Option<Duration>,
}

impl Objective {
    /// The stricter of two objectives, field by field.
    pub fn tighten(self, other: Objective) -> Objective {
        fn min(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        Objective { rpo: min(self.rpo, other.rpo), rto: min(self.rto, other.rto) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub name: String,
    pub objective: Objective,
    /// `restore: { rpo, rto }`: what a restore from backups must meet.
    pub restore: Objective,
    /// `drills: { every }`: how old the last drill of its entities may be.
    pub drills_every: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    pub customer: String,
    pub entities: Vec<EntityId>,
    pub objective: Objective,
}

#[derive(Debug, Clone)]
pub struct Entity {
    pub name: String,
    pub pos: Pos,
    /// The tier written on the entity.
    pub tier: Option<TierId>,
    /// Its own tier, else (datastores) the most important tier among the
    /// services that depend on it.
    pub effective_tier: Option<TierId>,
    /// Contractual targets, derived as docs/reference/topology.md says.
    pub targets: Objective,
    /// Entities this one needs before it can be failed over; sorted, unique.
    pub depends_on: Vec<EntityId>,
    pub failover: Failover,
    /// `drills: { every }` written on the entity (see [`Topology::drills_every`]).
    pub drills_every: Option<Duration>,
    pub spec: EntitySpec,
}

impl Entity {
    pub fn is_service(&self) -> bool {
        matches!(self.spec, EntitySpec::Service(_))
    }

    /// `service`, or the datastore's kind as written (`postgres`, ...).
    pub fn kind_name(&self) -> &'static str {
        match &self.spec {
            EntitySpec::Service(_) => "service",
            EntitySpec::Datastore(d) => d.kind.as_str(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Failover {
    pub estimate: Duration,
    pub max_lag: Option<Duration>,
    /// How long a promote waits for the standby to replay the fenced old
    /// primary's last writes (docs/guide/safety.md); `None` is the default, 30s.
    pub catch_up: Option<Duration>,
    pub runbook: Option<Arc<Runbook>>,
    /// `on_failure:` of the entity (its runbook's own wins when it says one).
    pub on_failure: Option<crate::runbook::OnFailure>,
}

// A topology holds each entity once, in one Vec: the size of the larger
// variant costs a few hundred bytes per entity, not worth a box per access.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum EntitySpec {
    Datastore(Datastore),
    Service(Service),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatastoreKind {
    Postgres,
    RdsInstance,
    RdsCluster,
    S3,
}

impl DatastoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DatastoreKind::Postgres => "postgres",
            DatastoreKind::RdsInstance => "rds-instance",
            DatastoreKind::RdsCluster => "rds-cluster",
            DatastoreKind::S3 => "s3",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "postgres" => DatastoreKind::Postgres,
            "rds-instance" => DatastoreKind::RdsInstance,
            "rds-cluster" => DatastoreKind::RdsCluster,
            "s3" => DatastoreKind::S3,
            _ => return None,
        })
    }

    /// docs/reference/topology.md default failover estimate.
    pub fn default_estimate(self) -> Duration {
        Duration::from_secs(match self {
            DatastoreKind::Postgres => 30,
            DatastoreKind::RdsInstance => 120,
            DatastoreKind::RdsCluster => 35,
            DatastoreKind::S3 => 5,
        })
    }

    /// The action that promotes a replica of this kind.
    pub fn promote_action(self) -> crate::action::Action {
        use crate::action::Action;
        match self {
            DatastoreKind::Postgres => Action::PostgresPromote,
            DatastoreKind::RdsInstance => Action::RdsPromoteReadReplica,
            DatastoreKind::RdsCluster => Action::RdsFailoverDbCluster,
            DatastoreKind::S3 => Action::S3PromoteReplica,
        }
    }
}

/// docs/reference/topology.md default failover estimate of a service.
pub const SERVICE_DEFAULT_ESTIMATE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Datastore {
    pub kind: DatastoreKind,
    /// Absent only for `rds-cluster`, whose members are discovered.
    pub primary: Option<Member>,
    pub replicas: Vec<Member>,
    /// For `rds-cluster`: the cluster identifier.
    pub cluster: Option<String>,
    /// For AWS kinds: the region the resource lives in.
    pub region: Option<String>,
    pub replication: Option<Replication>,
    /// `backup:`: how its backups are taken and kept.
    pub backup: Option<backup::Backup>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub zone: ZoneId,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `fence`: the member's out-of-band fence (power, a security group,
    /// an agent), run without a shell when the member does not answer.
    /// `fence_check`: says, without acting, whether `fence` would work
    /// (readiness runs it). `reprotect`: rebuilds the member as a standby
    /// of the current primary after a failover.
    Postgres {
        url: String,
        fence: Option<Vec<String>>,
        fence_check: Option<Vec<String>>,
        reprotect: Option<Vec<String>>,
    },
    S3 {
        bucket: String,
        endpoint: Option<String>,
        region: Option<String>,
    },
    RdsInstance {
        instance: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationBy {
    /// drctl copies the objects itself.
    Drctl,
    /// S3's own replication; drctl only measures it.
    S3,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Every(Duration),
    /// A cron expression, already checked; 5-field expressions get a leading `0` seconds field.
    Cron(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    pub by: ReplicationBy,
    pub schedule: Option<Schedule>,
    pub concurrency: usize,
    pub sse: Option<String>,
    pub kms_key_id: Option<String>,
    /// `deletes: replicate` (the default): a delete on the primary reaches
    /// every replica on the next pass; `keep` leaves replicas' copies.
    pub deletes_replicate: bool,
}

#[derive(Debug, Clone)]
pub struct Service {
    /// Zones it runs in, in the topology's preference order. Empty: regional.
    pub zones: Vec<ZoneId>,
    pub health: Option<Health>,
    pub route: Option<Route>,
}

/// A service's health check: one URL for the whole service (a front door
/// answering from whichever zone serves), or one per zone (`zones:`), so
/// that "is it alive in this zone?" has an answer of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The URL that speaks for the service wherever it runs.
    pub url: Option<String>,
    /// The URL that speaks for it in one zone, per zone (sorted by zone).
    pub zones: Vec<(ZoneId, String)>,
    pub timeout: Duration,
}

impl Health {
    /// The URL that speaks for the service in `zone` alone, when it has one.
    pub fn zone_url(&self, zone: ZoneId) -> Option<&str> {
        self.zones.iter().find(|(z, _)| *z == zone).map(|(_, u)| u.as_str())
    }

    /// The URL to check for the service as a whole: the shared one, else
    /// the one of the zone serving it (`serving`, else its first zone).
    pub fn serving_url(&self, serving: Option<ZoneId>) -> Option<&str> {
        self.url
            .as_deref()
            .or_else(|| serving.and_then(|z| self.zone_url(z)))
            .or_else(|| self.zones.first().map(|(_, u)| u.as_str()))
    }

    /// The URLs that must pass once the service is served from every zone
    /// but the lost ones: each remaining zone's own URL, else the shared one.
    pub fn urls_outside(&self, lost: impl Fn(ZoneId) -> bool) -> Vec<&str> {
        if self.zones.is_empty() {
            return self.url.iter().map(String::as_str).collect();
        }
        self.zones.iter().filter(|(z, _)| !lost(*z)).map(|(_, u)| u.as_str()).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Route53,
    LabDns,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub kind: RouteKind,
    pub zone_id: Option<String>,
    pub name: String,
    pub record_type: String,
    pub ttl: u64,
    /// For `lab-dns`: the DNS server's control address.
    pub server: Option<String>,
    /// The record's answer per zone.
    pub records: Vec<(ZoneId, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drill {
    pub experiment: PathBuf,
    pub cron: String,
    /// The file is a restore test (`restore:`), run by the controller's
    /// restore-test scheduler rather than as a chaos drill.
    pub restore_test: bool,
}

/// The result of loading a topology: the checked value when there were no
/// errors, and every diagnostic (warnings too) either way.
#[derive(Debug)]
pub struct Loaded {
    pub topology: Option<Topology>,
    pub diagnostics: Vec<Diagnostic>,
}
