//! Where a person's data lives, for erasure: the topology's `erasure:`
//! section.
//!
//! drctl is the one system that knows every copy of the data (each
//! primary, its replicas, the replica buckets with their old versions, the
//! backups), so it is the one place an erasure can be proven to reach all
//! of them. The section says, per datastore, how to find a subject's data:
//! a `DELETE` and a `check` query for PostgreSQL (the subject is always the
//! bound parameter `$1`, never text pasted into SQL), a key prefix for S3.
//! Kept apart from the rest of the topology: failover code never needs it.

use super::{Datastore, DatastoreKind, EntityId};
use crate::decode::{Decoder, Spanned, What};
use crate::diag::{Code, Diagnostics, Pos};
use crate::yaml::Node;
use std::collections::HashMap;
use std::time::Duration;

type S = Spanned<String>;

/// What `{subject}` in an S3 prefix is replaced with.
pub const SUBJECT_PLACEHOLDER: &str = "{subject}";

/// The deadline when none is written: 30 days, the usual contractual one.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30 * 86_400);

/// `erasure:` as written.
#[derive(Debug)]
pub struct RawErasure {
    pub pos: Pos,
    pub deadline: Option<Spanned<Duration>>,
    pub locate: Vec<RawLocate>,
}

/// One `locate:` entry as written.
#[derive(Debug)]
pub struct RawLocate {
    pub pos: Pos,
    pub datastore: Option<S>,
    pub sql: Option<S>,
    pub check: Option<S>,
    pub prefix: Option<S>,
    pub url: Option<S>,
}

/// Decodes the top-level `erasure:`.
pub fn decode(d: &mut Decoder, node: &Node) -> Option<RawErasure> {
    let what: What = &"`erasure`";
    let f = d.fields(node, what, &["deadline", "locate"])?;
    let mut locate = Vec::new();
    for n in d.list(f.get("locate"), &"`locate` of `erasure`") {
        let w: What = &"a `locate` entry of `erasure`";
        let Some(lf) = d.fields(n, w, &["datastore", "sql", "check", "prefix", "url"]) else {
            continue;
        };
        locate.push(RawLocate {
            pos: n.pos,
            datastore: d.req_string(&lf, "datastore", w),
            sql: d.opt_string(&lf, "sql", w),
            check: d.opt_string(&lf, "check", w),
            prefix: d.opt_string(&lf, "prefix", w),
            url: d.opt_string(&lf, "url", w),
        });
    }
    Some(RawErasure { pos: node.pos, deadline: d.opt_duration(&f, "deadline", what), locate })
}

/// The `erasure:` section, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// How long after a request every copy must be clean.
    pub deadline: Duration,
    /// In file order.
    pub locate: Vec<Locate>,
}

impl Erasure {
    /// The entries of one datastore, in file order.
    pub fn of(&self, datastore: EntityId) -> impl Iterator<Item = &Locate> {
        self.locate.iter().filter(move |l| l.datastore == datastore)
    }
}

/// Where a subject's data is in one datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locate {
    pub datastore: EntityId,
    pub how: Find,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Find {
    /// PostgreSQL (or RDS): `sql` erases, `check` counts what is left;
    /// both take the subject as `$1`. `url`: where an `rds-*` datastore is
    /// reached (PostgreSQL datastores use their members' URLs).
    Sql { sql: String, check: String, url: Option<String> },
    /// S3: every version of every key under this prefix (`{subject}` replaced).
    Prefix(String),
}

impl Find {
    /// The prefix for one subject.
    pub fn prefix_for(prefix: &str, subject: &str) -> String {
        prefix.replace(SUBJECT_PLACEHOLDER, subject)
    }
}

/// Checks `erasure:` against the datastores (`by_name` resolves them).
pub fn check(
    diags: &mut Diagnostics,
    raw: &RawErasure,
    by_name: &HashMap<String, EntityId>,
    datastores: &dyn Fn(EntityId) -> Option<(String, Datastore)>,
) -> Option<Erasure> {
    let deadline = raw.deadline.as_ref().map(|d| d.value).unwrap_or(DEFAULT_DEADLINE);
    if let Some(d) = &raw.deadline {
        if d.value < Duration::from_secs(60) {
            diags
                .error(Code::BadValue, d.pos, "an erasure deadline shorter than a minute cannot be met")
                .with_hint("write the contractual deadline, e.g. `deadline: 30d`");
        }
    }
    if raw.locate.is_empty() {
        diags
            .warning(Code::Suspicious, raw.pos, "`erasure` has no `locate` entry: an erasure would touch nothing")
            .with_hint("add `locate: [ { datastore: NAME, sql: \"DELETE ... WHERE id = $1\", check: \"SELECT count(*) ... WHERE id = $1\" } ]`");
    }
    let mut out = Vec::new();
    let mut ok = true;
    for l in &raw.locate {
        let Some(name) = &l.datastore else {
            ok = false;
            continue;
        };
        let Some(&id) = by_name.get(&name.value) else {
            let hint = match crate::diag::did_you_mean(&name.value, by_name.keys().map(String::as_str)) {
                Some(near) => format!("did you mean `{near}`?"),
                None => "name a datastore declared under `datastores:`".to_string(),
            };
            diags
                .error(Code::UnknownReference, name.pos, format!("datastore `{}` is not declared", name.value))
                .with_hint(hint);
            ok = false;
            continue;
        };
        let Some((_, ds)) = datastores(id) else {
            diags
                .error(Code::BadValue, name.pos, format!("`{}` is a service, not a datastore", name.value))
                .with_hint("erasure reaches the datastores that hold the data");
            ok = false;
            continue;
        };
        match find(diags, l, ds.kind, &name.value) {
            Some(how) => out.push(Locate { datastore: id, how }),
            None => ok = false,
        }
    }
    ok.then_some(Erasure { deadline, locate: out })
}

fn find(diags: &mut Diagnostics, l: &RawLocate, kind: DatastoreKind, name: &str) -> Option<Find> {
    let misplaced = |diags: &mut Diagnostics, field: &Option<S>, why: &str| {
        if let Some(f) = field {
            diags.error(Code::BadValue, f.pos, why.to_string()).with_hint("remove it");
        }
    };
    match kind {
        DatastoreKind::S3 => {
            misplaced(diags, &l.sql, &format!("`sql` does not apply to the S3 datastore `{name}`"));
            misplaced(diags, &l.check, &format!("`check` does not apply to the S3 datastore `{name}`"));
            misplaced(diags, &l.url, &format!("`url` does not apply to the S3 datastore `{name}`"));
            let Some(p) = &l.prefix else {
                diags
                    .error(Code::MissingKey, l.pos, format!("the `locate` entry of `{name}` has no `prefix`"))
                    .with_hint("add `prefix: \"users/{subject}/\"`: every key under it is the subject's");
                return None;
            };
            if !p.value.contains(SUBJECT_PLACEHOLDER) {
                diags
                    .error(Code::BadValue, p.pos, format!("prefix `{}` does not contain `{{subject}}`", p.value))
                    .with_hint("without it every erasure would delete the same keys: write e.g. `users/{subject}/`");
                return None;
            }
            Some(Find::Prefix(p.value.clone()))
        }
        DatastoreKind::Postgres | DatastoreKind::RdsInstance | DatastoreKind::RdsCluster => {
            misplaced(diags, &l.prefix, &format!("`prefix` applies to S3 datastores; `{name}` is {}", kind.as_str()));
            let rds = kind != DatastoreKind::Postgres;
            if rds && l.url.is_none() {
                diags
                    .error(
                        Code::MissingKey,
                        l.pos,
                        format!("the `locate` entry of the {} `{name}` has no `url`", kind.as_str()),
                    )
                    .with_hint(
                        "add `url: \"postgres://USER@ENDPOINT:5432/DB\"`: drctl reaches RDS databases through it",
                    );
            }
            if !rds {
                misplaced(diags, &l.url, &format!("`url` is for rds-* datastores; `{name}`'s members give theirs"));
            }
            let mut sql_of = |field: &Option<S>, key: &str, example: &str| -> Option<String> {
                match field {
                    None => {
                        diags
                            .error(Code::MissingKey, l.pos, format!("the `locate` entry of `{name}` has no `{key}`"))
                            .with_hint(format!("add `{key}: \"{example}\"` ($1 is the subject)"));
                        None
                    }
                    Some(s) if !s.value.contains("$1") => {
                        diags
                            .error(Code::BadValue, s.pos, format!("`{key}` of `{name}` does not use `$1`"))
                            .with_hint("the subject is passed as the bound parameter $1, e.g. `WHERE id = $1`");
                        None
                    }
                    Some(s) => Some(s.value.clone()),
                }
            };
            let sql = sql_of(&l.sql, "sql", "DELETE FROM customers WHERE id = $1");
            let check = sql_of(&l.check, "check", "SELECT count(*) FROM customers WHERE id = $1");
            if (rds && l.url.is_none()) || sql.is_none() || check.is_none() {
                return None;
            }
            Some(Find::Sql { sql: sql?, check: check?, url: l.url.as_ref().map(|u| u.value.clone()) })
        }
    }
}

/// Warns where a backup outlives the deadline: a restore from it needs the
/// ledger to replay the erasure, and the backup itself holds the data
/// until it expires.
pub fn warn_retention(
    diags: &mut Diagnostics,
    raw: &RawErasure,
    erasure: &Erasure,
    entity: &dyn Fn(EntityId) -> Option<(String, Datastore)>,
) {
    let mut seen = std::collections::HashSet::new();
    for l in &erasure.locate {
        if !seen.insert(l.datastore) {
            continue;
        }
        let Some((name, ds)) = entity(l.datastore) else { continue };
        let kept = match &ds.backup {
            Some(super::backup::Backup::PgBackRest(p)) => p.retention,
            Some(super::backup::Backup::Rds { retention }) => Some(*retention),
            Some(super::backup::Backup::S3Versions { versions }) => Some(*versions),
            None => None,
        };
        if let Some(kept) = kept.filter(|k| *k > erasure.deadline) {
            let pos = raw.deadline.as_ref().map(|d| d.pos).unwrap_or(raw.pos);
            diags
                .warning(
                    Code::Suspicious,
                    pos,
                    format!(
                        "the backups of `{name}` are kept {}, longer than the erasure deadline {}: an erased subject stays in them until they expire",
                        crate::duration::format_secs(kept.as_secs_f64()),
                        crate::duration::format_secs(erasure.deadline.as_secs_f64())
                    ),
                )
                .with_hint("shorten the backup retention to the deadline, or make sure the contract allows backups to expire later (restores replay the erasures either way)");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::diag::Severity;
    use std::path::Path;

    const HEAD: &str = "version: 1\nzones:\n  - { name: az1, region: r1 }\n  - { name: az2, region: r1 }\n  - { name: az3, region: r1 }\n\
        datastores:\n  - name: orders-db\n    kind: postgres\n    primary: { zone: az1, url: \"postgres://u@h:1/d\" }\n    replicas: [ { zone: az2, url: \"postgres://u@h:2/d\" } ]\n\
        \x20   backup: { tool: pgbackrest, repo: { zone: az3, path: /r }, retention: 35d }\n\
        \x20 - name: assets\n    kind: s3\n    primary: { zone: az1, bucket: assets-1 }\n    replicas: [ { zone: az2, bucket: assets-2 } ]\n";

    fn load(erasure: &str) -> crate::topology::Loaded {
        crate::topology::load_str(&format!("{HEAD}{erasure}"), Path::new("drctl.yaml"))
    }

    fn messages(l: &crate::topology::Loaded, sev: Severity) -> Vec<String> {
        l.diagnostics
            .iter()
            .filter(|d| d.severity == sev)
            .map(|d| format!("{}:{} {}", d.pos.line, d.pos.col, d.message))
            .collect()
    }

    #[test]
    fn locate_entries_resolve_and_a_long_retention_is_a_warning() {
        let l = load(
            "erasure:\n  deadline: 30d\n  locate:\n    - { datastore: orders-db, sql: \"DELETE FROM c WHERE id = $1\", check: \"SELECT count(*) FROM c WHERE id = $1\" }\n    - { datastore: assets, prefix: \"users/{subject}/\" }\n",
        );
        let t = l.topology.as_ref().unwrap_or_else(|| panic!("{:?}", messages(&l, Severity::Error)));
        let e = t.erasure.as_ref().unwrap();
        assert_eq!(e.deadline.as_secs(), 30 * 86_400);
        assert_eq!(e.locate.len(), 2);
        assert_eq!(e.locate[1].how, super::Find::Prefix("users/{subject}/".into()));
        let w = messages(&l, Severity::Warning);
        assert!(w.iter().any(|m| m.starts_with("17:13") && m.contains("35d") && m.contains("orders-db")), "{w:?}");
    }

    #[test]
    fn mistakes_are_reported_with_their_positions() {
        let l = load(
            "erasure:\n  locate:\n    - { datastore: orders-dbb, sql: \"x\" }\n    - { datastore: orders-db, sql: \"DELETE FROM c WHERE id = 'x'\", check: \"SELECT 1 WHERE $1 = $1\", colour: red }\n    - { datastore: assets, prefix: \"users/\" }\n",
        );
        assert!(l.topology.is_none());
        let e = messages(&l, Severity::Error);
        assert!(e.iter().any(|m| m.starts_with("18:20") && m.contains("orders-dbb")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("unknown key `colour`")), "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("19:") && m.contains("does not use `$1`")), "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("20:") && m.contains("{subject}")), "{e:?}");
    }
}
