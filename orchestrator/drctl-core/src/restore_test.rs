//! Restore tests: an experiment with a `restore:` section instead of
//! faults, and the checks its restored copy must pass.
//!
//! ```yaml
//! name: orders-restore-test
//! restore: { datastore: orders-db, to: latest }     # latest | random | -15m | RFC 3339
//! verify:
//!   - { sql: "SELECT count(*) > 0 FROM orders", expect: true }
//!   - { sql: "SELECT max(created_at) FROM orders", fresher_than: 10m }
//! schedule: "0 4 * * *"
//! ```
//!
//! An S3 datastore's copy is checked by what a bucket can tell without a
//! query language: how many keys it holds under a prefix
//! (`{ objects: "img/", at_least: 100 }` or `expect: 120`) and whether a
//! chosen key holds exactly the bytes it should (`{ key: "img/logo.png",
//! sha256: "…" }`). Which checks fit which datastore is known only with
//! the topology: [`check_against`] says, at each check's position.
//!
//! Kept apart from the chaos experiments' decoder: a restore test injects
//! nothing, and its file is told apart by its top-level `restore:` key.

use crate::decode::{to_json, Decoder, Field, Named, Spanned};
use crate::diag::{Code, Diagnostic, Diagnostics, Pos};
use crate::topology::{DatastoreKind, EntitySpec, Topology};
use crate::yaml;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The point a restore test asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Point {
    Latest,
    /// A random moment within what the backups can restore.
    Random,
    /// This long ago.
    Ago(Duration),
    /// An RFC 3339 time, as written.
    At(String),
}

/// One check on the restored copy.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// PostgreSQL: a query, and its answer (`expect`) or the age of the
    /// time it answers (`fresher_than`); exactly one of them.
    Sql { sql: String, expect: Option<serde_json::Value>, fresher_than: Option<Duration> },
    /// S3: how many keys the copy holds under `prefix` (exactly `expect`,
    /// or `at_least`; exactly one of them).
    Objects { prefix: String, expect: Option<u64>, at_least: Option<u64> },
    /// S3: the SHA-256 (lower-case hex) of a key's content in the copy.
    Checksum { key: String, sha256: String },
}

impl Check {
    /// Whether the check reads an S3 copy (rather than a database).
    pub fn is_s3(&self) -> bool {
        !matches!(self, Check::Sql { .. })
    }

    /// How a report names the check: its query, or what it counts or hashes.
    pub fn label(&self) -> String {
        match self {
            Check::Sql { sql, .. } => sql.clone(),
            Check::Objects { prefix, .. } => format!("objects under `{prefix}`"),
            Check::Checksum { key, .. } => format!("sha256 of `{key}`"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestoreTest {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub datastore: String,
    /// Where `datastore:` is written.
    pub datastore_pos: Pos,
    pub to: Point,
    /// Each check, where it is written.
    pub verify: Vec<Spanned<Check>>,
    /// A cron expression (checked; 6/7-field form).
    pub schedule: Option<String>,
}

/// Whether an experiment's text is a restore test (it has `restore:` at the top).
pub fn is_restore_test(src: &str) -> bool {
    yaml::parse(src).is_ok_and(|root| match &root.value {
        yaml::Value::Map(entries) => entries.iter().any(|(k, _)| k.as_scalar() == Some("restore")),
        _ => false,
    })
}

pub fn load(path: &Path) -> Result<RestoreTest, Vec<Diagnostic>> {
    crate::decode::load_file(path, "the restore test", decode)
}

pub fn load_str(src: &str, path: &Path) -> Result<RestoreTest, Vec<Diagnostic>> {
    crate::decode::load_source(src, path, decode)
}

fn point(d: &mut Decoder, s: &Spanned<String>) -> Option<Point> {
    match s.value.as_str() {
        "latest" => Some(Point::Latest),
        "random" => Some(Point::Random),
        v if v.starts_with('-') => match crate::duration::parse_duration(&v[1..]) {
            Ok(ago) => Some(Point::Ago(ago)),
            Err(why) => {
                d.diags.error(Code::BadValue, s.pos, format!("`to: {v}`: {why}")).with_hint("for example `to: -15m`");
                None
            }
        },
        // Read fully when the test runs; here, only its shape.
        v if v.len() >= 20 && v.starts_with(|c: char| c.is_ascii_digit()) && v.contains('T') => {
            Some(Point::At(v.to_string()))
        }
        v => {
            d.diags
                .error(Code::BadValue, s.pos, format!("`to: {v}` is not a point in time"))
                .with_hint("`latest`, `random` (within retention), a duration ago such as `-15m`, or an RFC 3339 time");
            None
        }
    }
}

fn decode(d: &mut Decoder, root: &yaml::Node, path: &Path) -> Option<RestoreTest> {
    let what = &"the restore test";
    let top = d.fields(root, what, &["name", "description", "restore", "verify", "schedule"])?;
    let name = d.req_string(&top, "name", what);
    let description = d.opt_string(&top, "description", what).map(|s| s.value);
    let restore = d.required(&top, "restore", what).and_then(|n| {
        let rw = &"`restore`";
        let f = d.fields(n, rw, &["datastore", "to"])?;
        let ds = d.req_string(&f, "datastore", rw);
        let to = match d.opt_string(&f, "to", rw) {
            Some(s) => point(d, &s),
            None => Some(Point::Latest),
        };
        let ds = ds?;
        Some(((ds.value, ds.pos), to?))
    });
    let mut verify = Vec::new();
    let listed = d.list(top.get("verify"), &"`verify`");
    for n in listed {
        let label = n.peek("sql").or_else(|| n.peek("objects")).or_else(|| n.peek("key"));
        let cw = Named("check", label);
        let Some(f) = d.fields(n, &cw, &["sql", "expect", "fresher_than", "objects", "at_least", "key", "sha256"])
        else {
            continue;
        };
        if let Some(c) = check(d, &f, &cw, n.pos) {
            verify.push(Spanned::new(c, n.pos));
        }
    }
    if listed.is_empty() {
        d.diags.error(Code::MissingKey, top.pos, "the restore test checks nothing").with_hint(
            "add `verify:` with at least one `{ sql: \"...\", expect: ... }`: a restore is tested by what it holds",
        );
    }
    let schedule = d.opt_string(&top, "schedule", what).and_then(|s| match crate::topology::cron_schedule(&s.value) {
        Ok((full, _)) => Some(full),
        Err(why) => {
            d.diags
                .error(Code::BadValue, s.pos, format!("cron `{}`: {why}", s.value))
                .with_hint("for example `0 4 * * *`");
            None
        }
    });
    let ((datastore, datastore_pos), to) = restore?;
    Some(RestoreTest {
        name: name?.value,
        description,
        file: path.to_path_buf(),
        datastore,
        datastore_pos,
        to,
        verify,
        schedule,
    })
}

/// One check: what it reads is told by its first key (`sql`, `objects`,
/// `key`); the keys of another kind of check are refused where written.
fn check(d: &mut Decoder, f: &crate::decode::Fields, cw: &Named, pos: Pos) -> Option<Check> {
    let kinds: Vec<&str> = ["sql", "objects", "key"].into_iter().filter(|k| f.has(k)).collect();
    let kind = match kinds.as_slice() {
        [one] => *one,
        [] => {
            d.diags.error(Code::MissingKey, pos, "a check needs `sql` (PostgreSQL), or `objects` or `key` (S3)").with_hint(
                "`{ sql: \"SELECT ...\", expect: ... }`, `{ objects: \"img/\", at_least: 100 }` or `{ key: \"img/logo.png\", sha256: \"...\" }`",
            );
            return None;
        }
        many => {
            d.diags
                .error(
                    Code::BadValue,
                    pos,
                    format!("a check is one of `sql`, `objects` and `key`; this one has {}", many.join(" and ")),
                )
                .with_hint("write each check as its own list item");
            return None;
        }
    };
    let allowed: &[&str] = match kind {
        "sql" => &["sql", "expect", "fresher_than"],
        "objects" => &["objects", "expect", "at_least"],
        _ => &["key", "sha256"],
    };
    let mut ok = true;
    for (k, kpos, _) in f.entries_at() {
        if !allowed.contains(&k) {
            d.diags.error(Code::BadValue, kpos, format!("`{k}` does not go with `{kind}`")).with_hint(format!(
                "a `{kind}` check takes {}",
                allowed.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
            ));
            ok = false;
        }
    }
    match kind {
        "sql" => {
            let sql = d.req_string(f, "sql", cw);
            let expect = f.get("expect").map(to_json);
            let fresher_than = d.opt_duration(f, "fresher_than", &Field("fresher_than", cw)).map(|s| s.value);
            if expect.is_some() == fresher_than.is_some() {
                d.diags
                    .error(Code::BadValue, pos, "a check needs exactly one of `expect` and `fresher_than`")
                    .with_hint(
                        "`expect: true` compares the answer; `fresher_than: 10m` bounds the age of the time it answers",
                    );
                return None;
            }
            (ok).then_some(Check::Sql { sql: sql?.value, expect, fresher_than })
        }
        "objects" => {
            let prefix = d.req_string(f, "objects", cw);
            let expect = f.get("expect").and_then(|n| d.unsigned(n, &Field("expect", cw))).map(|s| s.value);
            let at_least = f.get("at_least").and_then(|n| d.unsigned(n, &Field("at_least", cw))).map(|s| s.value);
            if expect.is_some() == at_least.is_some() {
                d.diags
                    .error(Code::BadValue, pos, "an `objects` check needs exactly one of `expect` and `at_least`")
                    .with_hint(
                    "`expect: 120` wants exactly that many keys under the prefix; `at_least: 100` that many or more",
                );
                return None;
            }
            (ok).then_some(Check::Objects { prefix: prefix?.value, expect, at_least })
        }
        _ => {
            let key = d.req_string(f, "key", cw);
            let sha = d.req_string(f, "sha256", cw)?;
            let hex = sha.value.to_ascii_lowercase();
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                d.diags
                    .error(Code::BadValue, sha.pos, "`sha256` is 64 hexadecimal digits")
                    .with_hint("take it from a known-good copy: `sha256sum FILE` or `openssl dgst -sha256 FILE`");
                return None;
            }
            (ok).then_some(Check::Checksum { key: key?.value, sha256: hex })
        }
    }
}

/// The restore test against the topology it runs on: its datastore
/// exists and can be restored by a test, and each check reads what that
/// datastore is (SQL on PostgreSQL, objects and checksums on S3).
pub fn check_against(test: &RestoreTest, topo: &Topology) -> Result<(), Vec<Diagnostic>> {
    let mut diags = Diagnostics::new(&test.file);
    let kind = topo.entity_id(&test.datastore).and_then(|id| match &topo.entity(id).spec {
        EntitySpec::Datastore(ds) => Some(ds.kind),
        EntitySpec::Service(_) => None,
    });
    match kind {
        None => {
            let names: Vec<&str> = topo.datastores().map(|(_, e, _)| e.name.as_str()).collect();
            let hint = match diags.suggest(&test.datastore, names.iter().copied()) {
                Some(m) => format!("did you mean `{m}`?"),
                None => format!("the datastores of {}: {}", topo.file.display(), names.join(", ")),
            };
            diags
                .error(
                    Code::UnknownReference,
                    test.datastore_pos,
                    format!("no datastore `{}` in {}", test.datastore, topo.file.display()),
                )
                .with_hint(hint);
        }
        Some(DatastoreKind::Postgres) | Some(DatastoreKind::S3) => {
            let s3 = kind == Some(DatastoreKind::S3);
            for c in &test.verify {
                if c.value.is_s3() != s3 {
                    let (what, fix) = if s3 {
                        ("an SQL check", "check an S3 copy with `{ objects: \"PREFIX\", at_least: N }` or `{ key: \"KEY\", sha256: \"...\" }`")
                    } else {
                        ("an S3 check", "check a PostgreSQL copy with `{ sql: \"SELECT ...\", expect: ... }`")
                    };
                    diags
                        .error(
                            Code::BadValue,
                            c.pos,
                            format!(
                                "{what} on `{}`, {}",
                                test.datastore,
                                if s3 { "an S3 datastore" } else { "a PostgreSQL datastore" }
                            ),
                        )
                        .with_hint(fix);
                }
            }
        }
        Some(other) => {
            diags
                .error(Code::BadValue, test.datastore_pos, format!("`{}` is an {} datastore: restore tests run on postgres and s3 datastores", test.datastore, other.as_str()))
                .with_hint(format!("restore it with `drctl restore {} --to latest --reason TEXT`, then check the new instance yourself", test.datastore));
        }
    }
    if diags.has_errors() {
        Err(diags.into_sorted())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_loads_and_is_told_apart_from_a_chaos_experiment() {
        let src = "name: t\nrestore: { datastore: db, to: -15m }\nverify:\n  - { sql: \"SELECT 1\", expect: 1 }\n  - { sql: \"SELECT now()\", fresher_than: 10m }\nschedule: \"0 4 * * *\"\n";
        assert!(is_restore_test(src));
        assert!(!is_restore_test("name: x\nfaults: []\nduration: 1m\n"));
        let t = load_str(src, Path::new("t.yaml")).unwrap();
        assert_eq!(t.to, Point::Ago(Duration::from_secs(900)));
        assert_eq!(
            t.verify[0].value,
            Check::Sql { sql: "SELECT 1".into(), expect: Some(serde_json::json!(1)), fresher_than: None }
        );
        assert_eq!(
            t.verify[1].value,
            Check::Sql { sql: "SELECT now()".into(), expect: None, fresher_than: Some(Duration::from_secs(600)) }
        );
    }

    #[test]
    fn mistakes_are_reported_with_positions() {
        let src = "name: t\nrestore: { datastore: db, to: yesterday }\nverify:\n  - { sql: \"SELECT 1\", expect: 1, fresher_than: 1m }\n  - { sqll: x }\n";
        let errs = load_str(src, Path::new("t.yaml")).unwrap_err();
        let lines: Vec<u32> = errs.iter().map(|e| e.pos.line).collect();
        assert_eq!(lines, [2, 4, 5, 5], "{errs:#?}");
    }

    #[test]
    fn s3_checks_load_and_their_mistakes_are_placed() {
        let sha = "a".repeat(64);
        let src = format!("name: t\nrestore: {{ datastore: assets }}\nverify:\n  - {{ objects: \"img/\", at_least: 2 }}\n  - {{ key: img/a, sha256: \"{sha}\" }}\n");
        let t = load_str(&src, Path::new("t.yaml")).unwrap();
        assert_eq!(t.verify[0].value, Check::Objects { prefix: "img/".into(), expect: None, at_least: Some(2) });
        assert_eq!(t.verify[1].value, Check::Checksum { key: "img/a".into(), sha256: sha });
        let bad = "name: t\nrestore: { datastore: assets }\nverify:\n  - { objects: \"img/\" }\n  - { key: img/a, sha256: xyz }\n  - { objects: a, sql: \"SELECT 1\", expect: 1 }\n  - { objects: a, expect: 1, fresher_than: 1m }\n";
        let errs = load_str(bad, Path::new("t.yaml")).unwrap_err();
        let at: Vec<(u32, u32)> = errs.iter().map(|e| (e.pos.line, e.pos.col)).collect();
        assert_eq!(at, [(4, 5), (5, 27), (6, 5), (7, 30)], "{errs:#?}");
    }

    #[test]
    fn checks_that_do_not_fit_the_datastore_are_refused_where_written() {
        let topo = crate::load_str(
            "version: 1\nzones: [ { name: az1, region: r } ]\ndatastores:\n  - { name: assets, kind: s3, primary: { zone: az1, bucket: bucket-b } }\n  - { name: db, kind: postgres, primary: { zone: az1, url: \"postgres://u@h/d\" } }\n",
            Path::new("drctl.yaml"),
        );
        let topo = topo.topology.unwrap_or_else(|| panic!("{:#?}", topo.diagnostics));
        let t = load_str(
            "name: t\nrestore: { datastore: assets }\nverify:\n  - { objects: \"\", at_least: 1 }\n  - { sql: \"SELECT 1\", expect: 1 }\n",
            Path::new("t.yaml"),
        )
        .unwrap();
        let errs = check_against(&t, &topo).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!((errs[0].pos.line, errs[0].pos.col), (5, 5));
        assert!(errs[0].to_string().starts_with("t.yaml:5:5: error"), "{}", errs[0]);
        assert!(errs[0].message.contains("an SQL check on `assets`, an S3 datastore"), "{}", errs[0]);
        let t = load_str(
            "name: t\nrestore: { datastore: asets }\nverify:\n  - { objects: \"\", at_least: 1 }\n",
            Path::new("t.yaml"),
        )
        .unwrap();
        let errs = check_against(&t, &topo).unwrap_err();
        assert_eq!(errs[0].hint.as_deref(), Some("did you mean `assets`?"));
    }
}
