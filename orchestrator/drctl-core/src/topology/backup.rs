//! Backups and restore objectives in the topology: a datastore's `backup:`
//! section and a tier's `restore: { rpo, rto }`.
//!
//! Replication copies a mistake everywhere within a second; only a backup
//! taken somewhere else brings data back from before it. The rules checked
//! here are the ones that make a backup useful when it is needed: the
//! repository sits in another zone than the primary (a zone lost with its
//! backups is no backup), the schedules parse, and retention fits what
//! the tool can keep. Kept apart from the rest of the topology so that the
//! failover code never has to know about it.

use super::{Objective, ZoneId};
use crate::decode::{Decoder, Field, Of, Spanned, What};
use crate::diag::{Code, Diagnostics, Pos};
use crate::yaml::Node;
use std::time::Duration;

type S = Spanned<String>;

/// `backup:` as written.
#[derive(Debug)]
pub struct RawBackup {
    pub pos: Pos,
    pub tool: Option<S>,
    pub repo: Option<RawRepo>,
    pub full: Option<S>,
    pub diff: Option<S>,
    pub incr: Option<S>,
    pub retention: Option<Spanned<Duration>>,
    pub versions: Option<Spanned<Duration>>,
}

/// `repo:` as written: a folder or an S3 bucket, in a zone.
#[derive(Debug)]
pub struct RawRepo {
    pub pos: Pos,
    pub zone: Option<S>,
    pub path: Option<S>,
    pub bucket: Option<S>,
    pub endpoint: Option<S>,
    pub region: Option<S>,
}

/// A tier's `restore: { rpo, rto }` as written.
#[derive(Debug)]
pub struct RawRestoreObjective {
    pub pos: Pos,
    pub rpo: Option<Spanned<Duration>>,
    pub rto: Option<Spanned<Duration>>,
}

/// The keys `backup:` may have for a datastore of this kind (as written).
fn keys_for(kind: Option<&str>) -> &'static [&'static str] {
    match kind {
        Some("postgres") => &["tool", "repo", "full", "diff", "incr", "retention"],
        Some("rds-instance" | "rds-cluster") => &["retention"],
        Some("s3") => &["versions"],
        _ => &["tool", "repo", "full", "diff", "incr", "retention", "versions"],
    }
}

/// Decodes a datastore's `backup:`.
pub fn decode(d: &mut Decoder, node: &Node, kind: Option<&str>, owner: What) -> Option<RawBackup> {
    let what = Of("the backup", owner);
    let f = d.fields(node, &what, keys_for(kind))?;
    let repo = f.get("repo").and_then(|n| {
        let rw = Of("the backup repository", owner);
        let rf = d.fields(n, &rw, &["zone", "path", "bucket", "endpoint", "region"])?;
        Some(RawRepo {
            pos: n.pos,
            zone: d.req_string(&rf, "zone", &rw),
            path: d.opt_string(&rf, "path", &rw),
            bucket: d.opt_string(&rf, "bucket", &rw),
            endpoint: d.opt_string(&rf, "endpoint", &rw),
            region: d.opt_string(&rf, "region", &rw),
        })
    });
    Some(RawBackup {
        pos: node.pos,
        tool: d.opt_string(&f, "tool", &what),
        repo,
        full: d.opt_string(&f, "full", &what),
        diff: d.opt_string(&f, "diff", &what),
        incr: d.opt_string(&f, "incr", &what),
        retention: d.opt_duration(&f, "retention", &what),
        versions: d.opt_duration(&f, "versions", &what),
    })
}

/// Decodes a tier's `restore:`.
pub fn decode_restore_objective(d: &mut Decoder, node: &Node, owner: What) -> Option<RawRestoreObjective> {
    let what = Field("restore", owner);
    let f = d.fields(node, &what, &["rpo", "rto"])?;
    Some(RawRestoreObjective {
        pos: node.pos,
        rpo: d.opt_duration(&f, "rpo", &what),
        rto: d.opt_duration(&f, "rto", &what),
    })
}

impl RawRestoreObjective {
    pub fn objective(&self) -> Objective {
        Objective { rpo: self.rpo.as_ref().map(|d| d.value), rto: self.rto.as_ref().map(|d| d.value) }
    }
}

/// A datastore's backups, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backup {
    /// PostgreSQL through pgBackRest (boxed: the topology's entities stay small).
    PgBackRest(Box<PgBackRest>),
    /// RDS automated backups, kept `retention` (1 to 35 days).
    Rds { retention: Duration },
    /// A versioned bucket: its object versions, kept `versions`, are its backups.
    S3Versions { versions: Duration },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBackRest {
    pub repo: Repo,
    /// Cron schedules (6/7-field form, as [`super::cron_schedule`] returns them).
    pub full: Option<String>,
    pub diff: Option<String>,
    pub incr: Option<String>,
    /// How long full backups (and the WAL they need) are kept; whole days.
    pub retention: Option<Duration>,
}

impl PgBackRest {
    /// The schedules, each with the backup kind it takes.
    pub fn schedules(&self) -> Vec<(&'static str, &str)> {
        [("full", &self.full), ("diff", &self.diff), ("incr", &self.incr)]
            .into_iter()
            .filter_map(|(k, c)| c.as_deref().map(|c| (k, c)))
            .collect()
    }

    /// Retention in whole days, as pgBackRest counts it.
    pub fn retention_days(&self) -> Option<u64> {
        self.retention.map(|r| r.as_secs().div_ceil(86_400).max(1))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub zone: ZoneId,
    pub store: RepoStore,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoStore {
    /// A folder on the host that runs pgBackRest (a mount from the repo's zone).
    Posix { path: String },
    /// An S3 bucket, reached over TLS (pgBackRest speaks S3 only over HTTPS).
    S3 { bucket: String, endpoint: Option<String>, region: Option<String> },
}

const DAY: Duration = Duration::from_secs(86_400);
/// RDS keeps automated backups for 1 to 35 days.
const RDS_MAX_RETENTION: Duration = Duration::from_secs(35 * 86_400);

/// Checks a decoded `backup:` against its datastore: `kind` as parsed,
/// `primary_zone` when it has one, `zones` every zone's name and
/// `zone_index` each one's index by name.
pub fn check(
    diags: &mut Diagnostics,
    raw: &RawBackup,
    kind: super::DatastoreKind,
    primary_zone: Option<ZoneId>,
    zones: &[&str],
    zone_index: &std::collections::HashMap<&str, ZoneId>,
    owner: &dyn std::fmt::Display,
) -> Option<Backup> {
    use super::DatastoreKind as K;
    match kind {
        K::Postgres => {
            match &raw.tool {
                None => {
                    diags
                        .error(Code::MissingKey, raw.pos, format!("the backup of {owner} has no `tool`"))
                        .with_hint("add `tool: pgbackrest` (drctl drives pgBackRest)");
                }
                Some(t) if t.value != "pgbackrest" => {
                    diags
                        .error(Code::BadValue, t.pos, format!("backup tool `{}` is not known", t.value))
                        .with_hint("`tool: pgbackrest` is the one drctl drives");
                }
                Some(_) => {}
            }
            let Some(repo) = &raw.repo else {
                diags.error(Code::MissingKey, raw.pos, format!("the backup of {owner} has no `repo`")).with_hint(
                    "add `repo: { zone: ZONE, path: /var/lib/pgbackrest }` in another zone than the primary",
                );
                return None;
            };
            let repo = check_repo(diags, repo, primary_zone, (zones, zone_index), owner);
            let mut cron = |c: &Option<S>| -> Option<String> {
                let c = c.as_ref()?;
                match super::cron_schedule(&c.value) {
                    Ok((full, _)) => Some(full),
                    Err(why) => {
                        diags
                            .error(Code::BadValue, c.pos, format!("cron `{}`: {why}", c.value))
                            .with_hint("for example `0 3 * * 0` runs at 03:00 every Sunday");
                        None
                    }
                }
            };
            let (full, diff, incr) = (cron(&raw.full), cron(&raw.diff), cron(&raw.incr));
            if let Some(r) = &raw.retention {
                if r.value < DAY {
                    diags
                        .error(
                            Code::BadValue,
                            r.pos,
                            format!(
                                "retention {} is shorter than a day",
                                crate::duration::format_secs(r.value.as_secs_f64())
                            ),
                        )
                        .with_hint("pgBackRest keeps backups by whole days: write `retention: 7d` or more");
                }
            }
            if raw.full.is_none() && (raw.diff.is_some() || raw.incr.is_some()) {
                diags
                    .warning(Code::Suspicious, raw.pos, format!("the backup of {owner} has no `full` schedule"))
                    .with_hint("differential and incremental backups need a full one; pgBackRest takes a full backup when none exists");
            }
            Some(Backup::PgBackRest(Box::new(PgBackRest {
                repo: repo?,
                full,
                diff,
                incr,
                retention: raw.retention.as_ref().map(|r| r.value),
            })))
        }
        K::RdsInstance | K::RdsCluster => {
            let Some(r) = &raw.retention else {
                diags
                    .error(Code::MissingKey, raw.pos, format!("the backup of {owner} has no `retention`"))
                    .with_hint("add `retention: 7d` (RDS keeps automated backups 1 to 35 days)");
                return None;
            };
            if r.value < DAY || r.value > RDS_MAX_RETENTION {
                diags
                    .error(Code::BadValue, r.pos, "RDS keeps automated backups between 1 and 35 days")
                    .with_hint("write `retention: 7d`, or any whole number of days from 1d to 35d");
                return None;
            }
            Some(Backup::Rds { retention: r.value })
        }
        K::S3 => {
            let Some(v) = &raw.versions else {
                diags
                    .error(Code::MissingKey, raw.pos, format!("the backup of {owner} has no `versions`"))
                    .with_hint("add `versions: 35d`: a versioned bucket's object versions are its backups");
                return None;
            };
            if v.value.is_zero() {
                diags
                    .error(Code::BadValue, v.pos, "`versions` must be longer than zero")
                    .with_hint("for example `versions: 35d`");
                return None;
            }
            Some(Backup::S3Versions { versions: v.value })
        }
    }
}

fn check_repo(
    diags: &mut Diagnostics,
    repo: &RawRepo,
    primary_zone: Option<ZoneId>,
    (zones, zone_index): (&[&str], &std::collections::HashMap<&str, ZoneId>),
    owner: &dyn std::fmt::Display,
) -> Option<Repo> {
    let zone = repo.zone.as_ref().and_then(|z| {
        // Looked up, not scanned: linear in the number of zones.
        let found = zone_index.get(z.value.as_str()).copied();
        if found.is_none() {
            let hint = match diags.suggest(&z.value, zones.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("declared: {}", crate::diag::abbreviated(zones)),
            };
            diags.error(Code::UnknownReference, z.pos, format!("zone `{}` is not declared", z.value)).with_hint(hint);
        }
        if found.is_some() && found == primary_zone {
            diags
                .error(
                    Code::BadValue,
                    z.pos,
                    format!("the backup repository of {owner} is in its primary's zone `{}`", z.value),
                )
                .with_hint("put the repository in another zone: losing the primary's zone must not lose its backups");
        }
        found
    });
    let store = match (&repo.path, &repo.bucket) {
        (Some(p), None) => {
            if repo.endpoint.is_some() || repo.region.is_some() {
                diags
                    .error(Code::BadValue, repo.pos, "`endpoint` and `region` belong to an S3 repository, not a folder")
                    .with_hint("remove them, or give `bucket` instead of `path`");
            }
            if !p.value.starts_with('/') {
                diags
                    .error(Code::BadValue, p.pos, format!("repository path `{}` is not absolute", p.value))
                    .with_hint("write the full path, e.g. `/var/lib/pgbackrest`");
                return None;
            }
            RepoStore::Posix { path: p.value.clone() }
        }
        (None, Some(b)) => {
            if let Some(e) = &repo.endpoint {
                if !e.value.starts_with("https://") {
                    diags
                        .error(Code::BadValue, e.pos, format!("S3 endpoint `{}` is not HTTPS", e.value))
                        .with_hint("pgBackRest reaches S3 only over TLS: give an `https://` endpoint");
                }
            }
            RepoStore::S3 {
                bucket: b.value.clone(),
                endpoint: repo.endpoint.as_ref().map(|e| e.value.clone()),
                region: repo.region.as_ref().map(|r| r.value.clone()),
            }
        }
        (Some(p), Some(_)) => {
            diags
                .error(Code::BadValue, p.pos, "give either `path` (a folder) or `bucket` (S3), not both")
                .with_hint("remove one of them");
            return None;
        }
        (None, None) => {
            diags
                .error(
                    Code::MissingKey,
                    repo.pos,
                    format!("the backup repository of {owner} has neither `path` nor `bucket`"),
                )
                .with_hint("add `path: /var/lib/pgbackrest` (a folder) or `bucket: NAME` (S3)");
            return None;
        }
    };
    Some(Repo { zone: zone?, store })
}
