//! `backup:` on datastores and `restore:` in objectives: what is accepted,
//! and where each mistake is reported.

use drctl_core::diag::{Code, Severity};
use drctl_core::topology::backup::{Backup, RepoStore};
use drctl_core::topology::EntitySpec;
use drctl_core::{load_str, Diagnostic};
use std::path::Path;
use std::time::Duration;

const HEAD: &str = "version: 1
zones:
  - { name: az1, region: r1 }
  - { name: az2, region: r1 }
  - { name: az3, region: r1 }
objectives:
  tier-0: { rpo: 5s, rto: 2m, restore: { rpo: 5m, rto: 1h } }
";

fn errors(src: &str) -> Vec<Diagnostic> {
    let loaded = load_str(&format!("{HEAD}{src}"), Path::new("drctl.yaml"));
    let errs: Vec<Diagnostic> = loaded.diagnostics.into_iter().filter(|d| d.severity == Severity::Error).collect();
    assert!(loaded.topology.is_none() || errs.is_empty());
    errs
}

fn pg(backup: &str) -> String {
    format!(
        "datastores:
  - name: db
    kind: postgres
    tier: tier-0
    primary: {{ zone: az1, url: \"postgres://u@h:1/d\" }}
    replicas: [ {{ zone: az2, url: \"postgres://u@h:2/d\" }} ]
    backup:
{backup}"
    )
}

#[test]
fn a_pgbackrest_backup_and_a_restore_objective_are_read() {
    let src = format!(
        "{HEAD}{}",
        pg("      tool: pgbackrest
      repo: { zone: az3, path: /var/lib/pgbackrest }
      full: \"0 3 * * 0\"
      incr: \"0 * * * *\"
      retention: 35d
")
    );
    let loaded = load_str(&src, Path::new("drctl.yaml"));
    let topo = loaded.topology.unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    let id = topo.entity_id("db").unwrap();
    let EntitySpec::Datastore(ds) = &topo.entity(id).spec else { panic!() };
    let Some(Backup::PgBackRest(b)) = &ds.backup else { panic!("{:?}", ds.backup) };
    assert_eq!(b.repo.zone, 2);
    assert_eq!(b.repo.store, RepoStore::Posix { path: "/var/lib/pgbackrest".into() });
    assert_eq!(b.retention_days(), Some(35));
    assert_eq!(b.schedules().iter().map(|s| s.0).collect::<Vec<_>>(), ["full", "incr"]);
    let r = topo.restore_targets(id);
    assert_eq!((r.rpo, r.rto), (Some(Duration::from_secs(300)), Some(Duration::from_secs(3600))));
}

#[test]
fn a_repository_in_the_primarys_zone_is_refused_where_its_zone_is_written() {
    let errs = errors(&pg("      tool: pgbackrest
      repo: { zone: az1, path: /var/lib/pgbackrest }
"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!((errs[0].pos.line, errs[0].pos.col), (16, 21));
    assert!(errs[0].message.contains("in its primary's zone `az1`"), "{}", errs[0].message);
    assert!(errs[0].hint.as_deref().unwrap_or("").contains("another zone"));
}

#[test]
fn unknown_keys_in_backup_and_restore_are_refused_with_a_suggestion() {
    let errs = errors(&pg("      tool: pgbackrest
      repo: { zone: az3, path: /r }
      retension: 7d
"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].code, Code::UnknownKey);
    assert_eq!(errs[0].pos.line, 17);
    assert!(errs[0].hint.as_deref().unwrap_or("").contains("did you mean `retention`"));

    let src = "version: 1\nzones: [ { name: az1 } ]\nobjectives:\n  t: { rpo: 1s, restore: { rpo: 1m, rtoo: 1h } }\n";
    let loaded = load_str(src, Path::new("drctl.yaml"));
    let e: Vec<_> = loaded.diagnostics.iter().filter(|d| d.severity == Severity::Error).collect();
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!((e[0].pos.line, e[0].code), (4, Code::UnknownKey));
}

#[test]
fn every_backup_mistake_is_reported_at_once() {
    let errs = errors(&pg("      tool: barman
      repo: { zone: az9, path: relative/dir }
      full: \"not a cron\"
      retention: 2h
"));
    let lines: Vec<u32> = errs.iter().map(|e| e.pos.line).collect();
    assert_eq!(lines, [15, 16, 16, 17, 18], "{errs:#?}");
    assert!(errs[0].message.contains("`barman` is not known"));
    assert!(errs.iter().any(|e| e.message.contains("zone `az9` is not declared")));
    assert!(errs.iter().any(|e| e.message.contains("not absolute")));
    assert!(errs[4].hint.as_deref().unwrap_or("").contains("whole days"));
}

#[test]
fn an_s3_repository_must_be_reached_over_tls() {
    let errs = errors(&pg("      tool: pgbackrest
      repo: { zone: az3, bucket: backups, endpoint: \"http://127.0.0.1:9000\" }
"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].message.contains("not HTTPS"));
}

#[test]
fn rds_and_s3_backups_take_their_own_keys() {
    let errs = errors(
        "datastores:
  - name: ledger
    kind: rds-instance
    primary: { zone: az1, instance: a }
    replicas: [ { zone: az2, instance: b } ]
    backup: { retention: 40d }
  - name: assets
    kind: s3
    primary: { zone: az1, bucket: bkt-a }
    replicas: [ { zone: az2, bucket: bkt-b } ]
    backup: { retention: 7d }
",
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs[0].message.contains("between 1 and 35 days"));
    // `backup: {` of assets: the missing `versions` at the brace, the stray `retention` after it.
    assert!(errs[1].message.contains("no `versions`"));
    assert_eq!(errs[2].code, Code::UnknownKey);
    assert!(errs[2].hint.as_deref().unwrap_or("").contains("versions"));
}
