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
//! Kept apart from the chaos experiments' decoder: a restore test injects
//! nothing, and its file is told apart by its top-level `restore:` key.

use crate::decode::{to_json, Decoder, Field, Named, Spanned};
use crate::diag::{Code, Diagnostic};
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
pub struct Check {
    pub sql: String,
    pub expect: Option<serde_json::Value>,
    pub fresher_than: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestoreTest {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub datastore: String,
    pub to: Point,
    pub verify: Vec<Check>,
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
        Some((ds?.value, to?))
    });
    let mut verify = Vec::new();
    for n in d.list(top.get("verify"), &"`verify`") {
        let cw = Named("check", n.peek("sql"));
        let Some(f) = d.fields(n, &cw, &["sql", "expect", "fresher_than"]) else { continue };
        let Some(sql) = d.req_string(&f, "sql", &cw) else { continue };
        let expect = f.get("expect").map(to_json);
        let fresher_than = d.opt_duration(&f, "fresher_than", &Field("fresher_than", &cw)).map(|s| s.value);
        if expect.is_some() == fresher_than.is_some() {
            d.diags.error(Code::BadValue, n.pos, "a check needs exactly one of `expect` and `fresher_than`").with_hint(
                "`expect: true` compares the answer; `fresher_than: 10m` bounds the age of the time it answers",
            );
            continue;
        }
        verify.push(Check { sql: sql.value, expect, fresher_than });
    }
    if verify.is_empty() {
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
    let (datastore, to) = restore?;
    Some(RestoreTest { name: name?.value, description, file: path.to_path_buf(), datastore, to, verify, schedule })
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
        assert_eq!(t.verify[0].expect, Some(serde_json::json!(1)));
        assert_eq!(t.verify[1].fresher_than, Some(Duration::from_secs(600)));
    }

    #[test]
    fn mistakes_are_reported_with_positions() {
        let src = "name: t\nrestore: { datastore: db, to: yesterday }\nverify:\n  - { sql: \"SELECT 1\", expect: 1, fresher_than: 1m }\n  - { sqll: x }\n";
        let errs = load_str(src, Path::new("t.yaml")).unwrap_err();
        let lines: Vec<u32> = errs.iter().map(|e| e.pos.line).collect();
        assert_eq!(lines, [1, 2, 4, 5, 5], "{errs:#?}");
    }
}
