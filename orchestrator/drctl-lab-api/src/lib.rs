//! The lab's control API as its clients see it.
//!
//! A lab (`drctl lab up`, crate `drctl-lab`) runs real servers: PostgreSQL,
//! S3 endpoints, a DNS server, fault proxies. Drills and the controller only
//! need to *drive* one: find it (`lab.json`), inject and heal faults, count
//! what a failover lost. That is this crate, and nothing more, so that
//! `drctl serve` can run drills on a lab without linking the lab's servers.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The lab's S3 credentials. Its endpoints check SigV4 signatures like S3
/// does, so clients of a lab sign with these (never the caller's own keys).
pub const ACCESS_KEY: &str = "drctl-lab";
pub const SECRET_KEY: &str = "drctl-lab-secret";

/// Why a call to the lab's control API failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing answers at the lab's control address.
    #[error("the lab's control API does not answer: {0} (is the lab running? `drctl lab status`)")]
    Unreachable(String),
    /// The lab refused the request as given (an unknown target, a bad fault).
    #[error("{0}")]
    Refused(String),
    /// The lab failed to do what was asked.
    #[error("the lab answered {status}: {body}")]
    Failed { status: u16, body: String },
    /// The answer was not what this drctl expects (a different version's lab).
    #[error("the lab's answer: {0}")]
    Answer(String),
}

/// What `lab.json` records, so other drctl commands find a running lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub pid: u32,
    pub base_port: u16,
    pub control: String,
    pub dns: String,
    pub topology: PathBuf,
    pub started_at: String,
    pub scratch: PathBuf,
    /// The lab's state store when it is not its own SQLite file: the etcd
    /// cluster its controllers share (`lab up --controllers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The base URLs of its highly available controllers, one per zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controllers: Vec<String>,
}

/// The topology file `drctl lab up` writes into the lab's folder.
pub const TOPOLOGY_FILE: &str = "drctl.yaml";

/// The first line of the topology `drctl lab up` writes: it marks the file
/// as a lab's even after the lab stopped (and removed its `lab.json`), so
/// the lab's executions stay in the lab's store for `show` and `audit`.
pub const TOPOLOGY_MARK: &str = "# Written by `drctl lab up`";

/// Whether `topology` is a lab's: a running lab's manifest beside it, or
/// the mark `lab up` writes on its first line.
pub fn is_lab_topology(topology: &Path) -> bool {
    let dir = topology.parent().unwrap_or(Path::new("."));
    if Manifest::path(dir).exists() {
        return true;
    }
    use std::io::Read;
    let mut head = [0u8; TOPOLOGY_MARK.len()];
    std::fs::File::open(topology).and_then(|mut f| f.read_exact(&mut head)).is_ok() && head == TOPOLOGY_MARK.as_bytes()
}

impl Manifest {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    pub fn read(dir: &Path) -> Option<Manifest> {
        serde_json::from_str(&std::fs::read_to_string(Self::path(dir)).ok()?).ok()
    }

    /// Whether the process that wrote it still runs.
    pub fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// One fault as the control API takes it (a chaos experiment's fault, resolved).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FaultRequest {
    ZoneOutage {
        zones: Vec<String>,
    },
    ZonePartition {
        zones: Vec<String>,
        /// Only the controller loses sight of the zones; they still reach each other.
        #[serde(default)]
        one_way: bool,
    },
    /// A member powered off out of band (a `fence` command's doing).
    PowerOff {
        datastore: String,
        zone: String,
    },
    ProcessKill {
        target: String,
    },
    Latency {
        target: String,
        delay_ms: u64,
    },
    PacketLoss {
        target: String,
        rate: f64,
    },
    Reset {
        target: String,
    },
    ReplicationPause {
        datastore: String,
    },
    S3Errors {
        datastore: Option<String>,
        rate: f64,
    },
    /// SQL run on a datastore's primary (a logical disaster).
    DataLoss {
        datastore: String,
        sql: String,
    },
    /// A share of an S3 datastore's objects overwritten in its primary bucket.
    ObjectOverwrite {
        datastore: String,
        share: f64,
    },
}

impl From<&drctl_core::chaos::Fault> for FaultRequest {
    fn from(f: &drctl_core::chaos::Fault) -> Self {
        use drctl_core::chaos::Fault as F;
        match f.clone() {
            F::ZoneOutage { zones } => FaultRequest::ZoneOutage { zones },
            F::ZonePartition { zones, one_way } => FaultRequest::ZonePartition { zones, one_way },
            F::ProcessKill { target } => FaultRequest::ProcessKill { target },
            F::Latency { target, delay } => FaultRequest::Latency { target, delay_ms: delay.as_millis() as u64 },
            F::PacketLoss { target, rate } => FaultRequest::PacketLoss { target, rate },
            F::Reset { target } => FaultRequest::Reset { target },
            F::ReplicationPause { datastore } => FaultRequest::ReplicationPause { datastore },
            F::S3Errors { datastore, rate } => FaultRequest::S3Errors { datastore, rate },
            F::DataLoss { datastore, sql } => FaultRequest::DataLoss { datastore, sql },
            F::ObjectOverwrite { datastore, share } => FaultRequest::ObjectOverwrite { datastore, share },
        }
    }
}

/// The answer to an injection: what was (or, in a dry run, would be) hit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Injected {
    pub id: u64,
    pub hits: Vec<String>,
}

/// What `GET /status` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabStatus {
    pub started_at: String,
    pub dns: String,
    pub members: Vec<MemberStatus>,
    pub faults: Vec<FaultStatus>,
    pub workload: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberStatus {
    pub what: String,
    pub zone: String,
    pub address: String,
    pub up: bool,
    pub faults: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultStatus {
    pub id: u64,
    pub fault: FaultRequest,
    pub hits: Vec<String>,
}

/// What a failover lost, counted from the workload's acknowledgements.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Loss {
    /// Writes acknowledged by other zones than the new primary's.
    pub acknowledged_elsewhere: u64,
    /// Of those, the ones the new primary does not have.
    pub lost_writes: u64,
    /// The span of time the lost writes cover (0 when none were lost).
    pub rpo_s: f64,
    pub first_lost_seq: Option<u64>,
    pub last_lost_seq: Option<u64>,
}

/// What a restore to a point gave back, counted from the workload's
/// acknowledgements against what the datastore holds now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Restored {
    /// Writes acknowledged before the point.
    pub before_point: u64,
    /// Of those, the ones the datastore holds now, intact.
    pub came_back: u64,
    /// Writes acknowledged after the point, up to now.
    pub after_point: u64,
    /// Of those, the ones the datastore no longer holds: the restore gave them up.
    pub lost_writes: u64,
    /// When the newest write acknowledged before the point that came back
    /// was acknowledged (ms since the epoch): the point really recovered.
    pub newest_back_ms: Option<u64>,
    /// The zone of the primary the counts were read from.
    pub read_from: String,
}

/// Whether there were ever two writable primaries, from probes inside each
/// member's own zone and the workload's acknowledgements.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Safety {
    /// The most members that accepted a write in one probe round (1 on a safe run).
    pub writable_primaries_max: u64,
    /// Writes acknowledged by a member after another member was promoted.
    pub split_brain_writes: u64,
    /// Members that became writable in the period, with when (ms since the epoch).
    pub promoted: Vec<(String, u64)>,
    /// Probe rounds in the period.
    pub probe_rounds: u64,
}

/// The lab's control API, as the drill and `drctl lab` use it from another process.
#[derive(Clone)]
pub struct LabClient {
    base: String,
    http: reqwest::Client,
}

impl LabClient {
    pub fn new(control: &str) -> LabClient {
        LabClient {
            base: format!("http://{control}"),
            // Building a client fails only without a TLS backend, which a
            // plain-HTTP client on loopback does not need.
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_else(|_| reqwest::Client::new()),
        }
    }

    async fn answer<T: serde::de::DeserializeOwned>(r: reqwest::Result<reqwest::Response>) -> Result<T, Error> {
        let r = r.map_err(|e| Error::Unreachable(e.to_string()))?;
        let status = r.status();
        if status.is_success() {
            r.json().await.map_err(|e| Error::Answer(e.to_string()))
        } else {
            let body = r.text().await.unwrap_or_default();
            if status == reqwest::StatusCode::BAD_REQUEST {
                Err(Error::Refused(body))
            } else {
                Err(Error::Failed { status: status.as_u16(), body })
            }
        }
    }

    pub async fn status(&self) -> Result<LabStatus, Error> {
        Self::answer(self.http.get(format!("{}/status", self.base)).send().await).await
    }

    pub async fn inject(&self, f: &FaultRequest, dry_run: bool) -> Result<Injected, Error> {
        Self::answer(self.http.post(format!("{}/faults?dry_run={dry_run}", self.base)).json(f).send().await).await
    }

    pub async fn heal(&self, id: u64) -> Result<Vec<String>, Error> {
        Self::answer(self.http.delete(format!("{}/faults/{id}", self.base)).send().await).await
    }

    pub async fn heal_all(&self) -> Result<Vec<String>, Error> {
        Self::answer(self.http.delete(format!("{}/faults", self.base)).send().await).await
    }

    pub async fn loss(&self, datastore: &str, zone: &str) -> Result<Loss, Error> {
        Self::answer(
            self.http
                .get(format!("{}/workload/loss", self.base))
                .query(&[("datastore", datastore), ("zone", zone)])
                .send()
                .await,
        )
        .await
    }

    /// Counts what a restore of `datastore` to `point_ms` (milliseconds
    /// since the Unix epoch) gave back and gave up.
    pub async fn restored(&self, datastore: &str, point_ms: u64) -> Result<Restored, Error> {
        Self::answer(
            self.http
                .get(format!("{}/workload/restored", self.base))
                .query(&[("datastore", datastore.to_string()), ("point_ms", point_ms.to_string())])
                .send()
                .await,
        )
        .await
    }

    /// Powers a member off out of band, as a `fence` command does (idempotent).
    pub async fn power_off(&self, datastore: &str, zone: &str) -> Result<Injected, Error> {
        Self::answer(self.http.post(format!("{}/members/{datastore}/{zone}/power-off", self.base)).send().await).await
    }

    /// What the lab's split-brain probes and workload saw since `since_ms`
    /// (milliseconds since the Unix epoch).
    pub async fn safety(&self, datastore: &str, since_ms: u64) -> Result<Safety, Error> {
        Self::answer(
            self.http
                .get(format!("{}/workload/safety", self.base))
                .query(&[("datastore", datastore.to_string()), ("since_ms", since_ms.to_string())])
                .send()
                .await,
        )
        .await
    }

    pub async fn shutdown(&self) -> Result<(), Error> {
        self.http
            .post(format!("{}/shutdown", self.base))
            .send()
            .await
            .map_err(|e| Error::Unreachable(e.to_string()))?;
        Ok(())
    }
}
