//! Every validation rule of docs/reference/topology.md, with the position each error points at.

use drctl_core::diag::{Code, Severity};
use drctl_core::{load_str, Diagnostic};
use std::path::Path;

fn check(src: &str) -> (bool, Vec<Diagnostic>) {
    let loaded = load_str(src, Path::new("drctl.yaml"));
    (loaded.topology.is_some(), loaded.diagnostics)
}

fn errors(src: &str) -> Vec<Diagnostic> {
    let (ok, diags) = check(src);
    let errs: Vec<Diagnostic> = diags.into_iter().filter(|d| d.severity == Severity::Error).collect();
    assert!(!ok || errs.is_empty(), "a topology with errors was accepted");
    errs
}

/// The one error in `src`, as (line, column, code, message, hint).
fn only_error(src: &str) -> (u32, u32, Code, String, Option<String>) {
    let errs = errors(src);
    assert_eq!(errs.len(), 1, "expected one error, got: {errs:#?}");
    let e = &errs[0];
    (e.pos.line, e.pos.col, e.code, e.message.clone(), e.hint.clone())
}

const HEAD: &str = "version: 1
zones:
  - { name: az1, region: r1 }
  - { name: az2, region: r1 }
objectives:
  tier-0: { rpo: 5s, rto: 2m }
";

fn with_head(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

#[test]
fn a_good_file_is_accepted_with_no_diagnostics() {
    let (ok, diags) = check(&with_head(
        "datastores:
  - name: db
    kind: postgres
    primary: { zone: az1, url: \"postgres://u@h:1/d\" }
    replicas: [ { zone: az2, url: \"postgres://u@h:2/d\" } ]
services:
  - { name: api, tier: tier-0, zones: [az1, az2], depends_on: [db] }
",
    ));
    assert!(ok, "{diags:#?}");
    assert!(diags.is_empty(), "{diags:#?}");
}

#[test]
fn names_are_unique_across_datastores_and_services() {
    let (line, col, code, msg, hint) = only_error(&with_head(
        "datastores:
  - { name: api, kind: s3, primary: { zone: az1, bucket: bkt-a }, replicas: [ { zone: az2, bucket: bkt-b } ] }
services:
  - { name: api, zones: [az1] }
",
    ));
    assert_eq!((line, col, code), (10, 13, Code::Duplicate));
    assert!(msg.contains("`api` is declared twice"), "{msg}");
    assert!(hint.unwrap().contains("line 8"));
}

#[test]
fn depends_on_must_name_something_declared_with_a_suggestion() {
    let (line, col, code, msg, hint) = only_error(&with_head(
        "datastores:
  - { name: orders-db, kind: postgres, primary: { zone: az1, url: \"postgres://h/d\" }, replicas: [ { zone: az2, url: \"postgres://h2/d\" } ] }
services:
  - { name: api, zones: [az1], depends_on: [order-db] }
",
    ));
    assert_eq!((line, col, code), (10, 45, Code::UnknownReference));
    assert!(msg.contains("`order-db` is not declared"), "{msg}");
    assert_eq!(hint.as_deref(), Some("did you mean `orders-db`?"));
}

#[test]
fn zones_tiers_and_contract_services_must_be_declared() {
    let errs = errors(&with_head(
        "contracts:
  - { customer: acme, services: [ap], rto: 1m }
services:
  - { name: api, tier: tier-9, zones: [az1, az7] }
",
    ));
    let found: Vec<(u32, u32, &str)> = errs.iter().map(|e| (e.pos.line, e.pos.col, e.message.as_str())).collect();
    assert_eq!(errs.len(), 3, "{found:#?}");
    assert!(found.iter().any(|(l, c, m)| (*l, *c) == (8, 34) && m.contains("`ap`")), "{found:?}");
    assert!(found.iter().any(|(l, c, m)| (*l, *c) == (10, 24) && m.contains("tier `tier-9`")), "{found:?}");
    assert!(found.iter().any(|(l, c, m)| (*l, *c) == (10, 45) && m.contains("zone `az7`")), "{found:?}");
}

#[test]
fn a_dependency_cycle_is_printed_in_order() {
    let (line, col, code, msg, _) = only_error(&with_head(
        "services:
  - { name: a, zones: [az1], depends_on: [b] }
  - { name: b, zones: [az1], depends_on: [c] }
  - { name: c, zones: [az1], depends_on: [a] }
",
    ));
    assert_eq!(code, Code::Cycle);
    assert_eq!(msg, "dependency cycle: a -> b -> c -> a");
    assert_eq!((line, col), (8, 43), "points at a's `depends_on: [b]`");
}

#[test]
fn every_cycle_is_reported_and_a_self_dependency_is_one() {
    let errs = errors(&with_head(
        "services:
  - { name: a, depends_on: [a] }
  - { name: b, depends_on: [c] }
  - { name: c, depends_on: [b] }
  - { name: d, depends_on: [b] }
",
    ));
    let msgs: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(msgs, ["dependency cycle: a -> a", "dependency cycle: b -> c -> b"]);
}

#[test]
fn a_datastore_needs_a_primary_and_a_cluster_needs_its_identifier() {
    let errs = errors(&with_head(
        "datastores:
  - { name: db, kind: postgres }
  - { name: aurora, kind: rds-cluster }
",
    ));
    let msgs: Vec<String> = errs.iter().map(|e| format!("{}:{} {}", e.pos.line, e.pos.col, e.message)).collect();
    assert_eq!(msgs, ["8:5 datastore `db` has no `primary`", "9:5 datastore `aurora` has no `cluster`"]);
}

#[test]
fn replicas_must_be_in_other_zones_and_none_is_a_warning() {
    let (line, col, code, msg, _) = only_error(&with_head(
        "datastores:
  - name: db
    kind: postgres
    primary: { zone: az1, url: \"postgres://h/d\" }
    replicas: [ { zone: az1, url: \"postgres://h2/d\" } ]
",
    ));
    assert_eq!((line, col, code), (11, 25, Code::BadValue));
    assert!(msg.contains("primary's zone `az1`"), "{msg}");

    let (ok, diags) = check(&with_head(
        "datastores:
  - { name: db, kind: postgres, primary: { zone: az1, url: \"postgres://h/d\" } }
",
    ));
    assert!(ok, "a missing replica is only a warning");
    assert_eq!(diags.len(), 1);
    assert_eq!((diags[0].severity, diags[0].code), (Severity::Warning, Code::NoReplica));
    assert!(diags[0].message.contains("cannot fail over"));
}

#[test]
fn unknown_keys_are_errors_with_a_did_you_mean() {
    let (line, col, code, msg, hint) = only_error(&with_head(
        "services:
  - name: api
    zones: [az1]
    depend_on: [x]
",
    ));
    assert_eq!((line, col, code), (10, 5, Code::UnknownKey));
    assert_eq!(msg, "unknown key `depend_on` in service `api`");
    assert!(hint.unwrap().starts_with("did you mean `depends_on`?"));
}

#[test]
fn keys_are_checked_per_datastore_kind() {
    let errs = errors(&with_head(
        "datastores:
  - name: db
    kind: postgres
    primary: { zone: az1, bucket: nope }
    replicas: [ { zone: az2, url: \"postgres://h2/d\" } ]
",
    ));
    let got: Vec<(u32, u32, Code, &str)> =
        errs.iter().map(|e| (e.pos.line, e.pos.col, e.code, e.message.as_str())).collect();
    assert_eq!(
        got,
        [
            (10, 14, Code::MissingKey, "the primary of datastore `db` has no `url`"),
            (10, 27, Code::UnknownKey, "unknown key `bucket` in the primary of datastore `db`"),
        ]
    );
}

#[test]
fn durations_must_parse() {
    let (line, col, code, msg, hint) = only_error(&with_head(
        "services:
  - { name: api, zones: [az1], failover: { estimate: 20 sec } }
",
    ));
    assert_eq!((line, col, code), (8, 54, Code::BadValue));
    assert!(msg.starts_with("`estimate` of the failover of service `api`"), "{msg}");
    assert!(hint.unwrap().contains("30s"));
}

#[test]
fn every_duration_form_of_the_contract_is_accepted() {
    for d in ["250ms", "30s", "2m", "1h30m", "4h", "90", "0.5"] {
        let src =
            with_head(&format!("services:\n  - {{ name: api, zones: [az1], failover: {{ estimate: \"{d}\" }} }}\n"));
        assert!(check(&src).0, "{d} was refused");
    }
}

#[test]
fn version_must_be_1() {
    let (line, col, code, ..) = only_error(&HEAD.replace("version: 1", "version: 2"));
    assert_eq!((line, col, code), (1, 10, Code::BadValue));
    let (line, col, code, msg, _) = only_error(&HEAD.replace("version: 1\n", ""));
    assert_eq!((line, col, code), (1, 1, Code::MissingKey));
    assert!(msg.contains("`version`"));
}

#[test]
fn every_error_is_reported_at_once() {
    let errs = errors(
        "version: 1
zones:
  - { name: az1 }
colour: blue
datastores:
  - { name: db, kind: postgress, primary: { zone: az1, url: \"postgres://h/d\" } }
services:
  - { name: api, zones: [az2], depends_on: [dbx], failover: { estimate: soon } }
  - { name: api, zones: [az1] }
",
    );
    let at: Vec<(u32, Code)> = errs.iter().map(|e| (e.pos.line, e.code)).collect();
    assert_eq!(
        at,
        [
            (4, Code::UnknownKey),
            (6, Code::BadValue),
            (8, Code::UnknownReference),
            (8, Code::UnknownReference),
            (8, Code::BadValue),
            (9, Code::Duplicate),
        ],
        "{errs:#?}"
    );
    assert!(errs[1].hint.as_deref().unwrap().contains("did you mean `postgres`?"));
}

#[test]
fn syntax_errors_and_duplicate_keys_have_positions() {
    let (line, _, code, msg, _) = only_error("version: 1\nzones: [ { name: az1 }\nservices: []\n");
    assert_eq!(code, Code::Syntax);
    assert!(line >= 2, "{line}: {msg}");
    let (line, col, code, ..) = only_error("version: 1\nversion: 1\n");
    assert_eq!((line, col, code), (2, 1, Code::Duplicate));
}

#[test]
fn wrong_types_say_what_was_expected() {
    let (line, col, code, msg, _) = only_error(&with_head("services: { name: api }\n"));
    assert_eq!((line, col, code), (7, 11, Code::WrongType));
    assert_eq!(msg, "`services` must be a list, not a mapping");
}

#[test]
fn an_empty_file_says_how_to_start() {
    let (_, _, code, msg, hint) = only_error("");
    assert_eq!(code, Code::MissingKey);
    assert!(msg.contains("empty"));
    assert!(hint.unwrap().contains("version: 1"));
}

#[test]
fn replication_schedules_are_checked() {
    let errs = errors(&with_head(
        "datastores:
  - name: a
    kind: s3
    primary: { zone: az1, bucket: aaa-1 }
    replicas: [ { zone: az2, bucket: aaa-2 } ]
    replication: { by: drctl, cron: \"61 * * * *\" }
  - name: b
    kind: s3
    primary: { zone: az1, bucket: B_b }
    replicas: [ { zone: az2, bucket: bbb-2 } ]
    replication: { by: drctl }
",
    ));
    let msgs: Vec<String> = errs.iter().map(|e| format!("{}: {}", e.pos.line, e.message)).collect();
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
    assert!(msgs[0].starts_with("12: cron `61 * * * *`"), "{msgs:#?}");
    assert!(msgs[1].starts_with("15: bucket `B_b`"), "{msgs:#?}");
    assert!(msgs[2].starts_with("17: the replication of datastore `b` has no schedule"), "{msgs:#?}");
}

#[test]
fn secrets_in_urls_are_not_echoed() {
    let errs = errors(&with_head(
        "datastores:
  - { name: db, kind: postgres, primary: { zone: az1, url: \"mysql://admin:hunter2@h/d\" }, replicas: [ { zone: az2, url: \"postgres://h/d\" } ] }
",
    ));
    assert_eq!(errs.len(), 1);
    assert!(!errs[0].message.contains("hunter2"), "{}", errs[0].message);
    assert!(errs[0].message.contains("admin:***@h/d"));
}

mod targets {
    use super::*;
    use std::time::Duration;

    #[test]
    fn contracts_tighten_services_and_datastores_inherit_the_strictest() {
        let topo = load_str(
            "version: 1
zones: [ { name: az1 }, { name: az2 } ]
objectives:
  tier-0: { rpo: 5s, rto: 2m }
  tier-1: { rpo: 1m, rto: 15m }
  tier-2: { rpo: 1h, rto: 4h }
contracts:
  - { customer: acme, services: [front], rto: 90s, rpo: 1s }
datastores:
  - { name: shared, kind: postgres, primary: { zone: az1, url: \"postgres://h/d\" }, replicas: [ { zone: az2, url: \"postgres://h2/d\" } ] }
  - { name: own, kind: postgres, tier: tier-2, primary: { zone: az1, url: \"postgres://h/e\" }, replicas: [ { zone: az2, url: \"postgres://h2/e\" } ] }
services:
  - { name: back, tier: tier-1, depends_on: [shared, own] }
  - { name: front, tier: tier-1, depends_on: [back] }
",
            Path::new("t.yaml"),
        )
        .topology
        .expect("valid");
        let targets = |n: &str| topo.entity(topo.entity_id(n).unwrap()).targets;
        assert_eq!(targets("front").rto, Some(Duration::from_secs(90)), "the contract tightens tier-1");
        assert_eq!(
            targets("back").rto,
            Some(Duration::from_secs(900)),
            "contracts name services, not their dependencies"
        );
        assert_eq!(targets("shared").rto, Some(Duration::from_secs(90)), "inherited through back from front");
        assert_eq!(targets("shared").rpo, Some(Duration::from_secs(1)));
        assert_eq!(targets("own").rto, Some(Duration::from_secs(4 * 3600)), "its own tier wins");
        let shared = topo.entity(topo.entity_id("shared").unwrap());
        assert_eq!(shared.effective_tier, Some(1), "tier-1, from the services above it");
        assert_eq!(shared.failover.estimate, Duration::from_secs(30), "postgres default");
    }
}

mod runbooks {
    use super::*;
    use std::fs;

    fn topology_with_runbook(runbook: &str) -> (tempdir::Dir, Vec<Diagnostic>) {
        let dir = tempdir::Dir::new();
        fs::write(dir.path().join("rb.yaml"), runbook).unwrap();
        let topo = with_head(
            "datastores:
  - { name: db, kind: postgres, primary: { zone: az1, url: \"postgres://h/d\" }, replicas: [ { zone: az2, url: \"postgres://h2/d\" } ] }
services:
  - { name: api, zones: [az1, az2], depends_on: [db], failover: { runbook: rb.yaml } }
",
        );
        let path = dir.path().join("drctl.yaml");
        fs::write(&path, topo).unwrap();
        let diags = drctl_core::load(&path).diagnostics;
        (dir, diags)
    }

    #[test]
    fn a_good_runbook_loads() {
        let (_dir, diags) = topology_with_runbook(
            "name: ok
steps:
  - { id: fence, action: postgres.fence, with: { datastore: db } }
  - { id: promote, action: postgres.promote, with: { datastore: db }, needs: [fence], retries: { attempts: 3, backoff: 2s } }
  - { id: wait, action: wait, with: { for: 5s }, needs: [promote] }
",
        );
        assert!(diags.is_empty(), "{diags:#?}");
    }

    /// Warnings in a runbook that loads reach `drctl validate` with the
    /// runbook's file and position, as its errors do.
    #[test]
    fn a_runbooks_warnings_are_reported_with_the_topologys() {
        let (dir, diags) = topology_with_runbook(
            "name: ok
steps:
  - { id: promote, action: postgres.promote, with: { datastore: db, force: true } }
  - id: approve
    action: approval
    with: { role: dba-lead, prompt: go? }
    needs: [promote]
  - { id: approve-again, action: approval, with: { role: admin }, needs: [approve] }
",
        );
        let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert!(diags.iter().all(|d| d.severity == Severity::Warning), "{text:#?}");
        assert_eq!(diags.len(), 2, "{text:#?}");
        let rb = dir.path().join("rb.yaml").display().to_string();
        assert!(
            text[0].starts_with(&format!("{rb}:3:")) && text[0].contains("`force` in a runbook has no effect"),
            "{text:#?}"
        );
        assert!(text[1].starts_with(&format!("{rb}:6:19: warning[W002]")), "{text:#?}");
        assert!(text[1].contains("`role: dba-lead` is not a role drctl enforces"), "{text:#?}");
    }

    #[test]
    fn runbook_errors_name_the_runbook_file_and_position() {
        let (dir, diags) = topology_with_runbook(
            "name: bad
steps:
  - { id: fence, action: postgres.fenc, with: { datastore: db } }
  - { id: promote, action: postgres.promote, with: { datastore: dbb }, needs: [fense] }
  - { id: say, action: notify, with: { url: \"http://x\", text: \"{{ to_zon }}\", colour: red } }
  - { id: a, action: wait, with: { for: 1s }, needs: [b] }
  - { id: b, action: wait, with: { for: 1s }, needs: [a] }
",
        );
        let rb = dir.path().join("rb.yaml");
        let got: Vec<String> = diags.iter().map(|d| format!("{}:{} {}", d.pos.line, d.pos.col, d.message)).collect();
        assert!(diags.iter().all(|d| d.file == rb), "{diags:#?}");
        assert!(got[0].starts_with("3:26 step `fence`: action `postgres.fenc` is not known"), "{got:#?}");
        assert_eq!(diags[0].hint.as_deref(), Some("did you mean `postgres.fence`?"));
        assert!(got.iter().any(|g| g.starts_with("4:80 step `promote` needs `fense`")), "{got:#?}");
        assert!(got.iter().any(|g| g.contains("unknown template variable `to_zon`")), "{got:#?}");
        assert!(got.iter().any(|g| g.contains("`notify` takes no `colour`")), "{got:#?}");
        assert!(got.iter().any(|g| g.contains("cycle: a -> b -> a")), "{got:#?}");
    }

    #[test]
    fn runbook_parameters_must_name_declared_entities() {
        let (_dir, diags) = topology_with_runbook(
            "name: r
steps:
  - { id: promote, action: postgres.promote, with: { datastore: dbb } }
  - { id: wrong, action: postgres.fence, with: { datastore: api } }
",
        );
        let msgs: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:#?}");
        assert!(msgs[0].contains("`dbb` is not declared"), "{msgs:#?}");
        assert_eq!(diags[0].hint.as_deref(), Some("did you mean `db`?"));
        assert!(msgs[1].contains("`api` is a service, not a datastore"), "{msgs:#?}");
    }

    #[test]
    fn a_missing_runbook_file_is_reported_where_it_is_named() {
        let (_dir, diags) = topology_with_runbook("name: r\nsteps: []\n");
        assert!(diags[0].message.contains("no steps"), "{diags:#?}");
        let src = with_head("services:\n  - { name: api, zones: [az1], failover: { runbook: nowhere.yaml } }\n");
        let (line, col, code, msg, _) = only_error(&src);
        assert_eq!((line, col, code), (8, 53, Code::Io));
        assert!(msg.contains("nowhere.yaml"));
    }

    #[test]
    fn drills_are_checked_down_to_their_experiments() {
        let dir = tempdir::Dir::new();
        fs::write(
            dir.path().join("az1.yaml"),
            "name: x\nfaults:\n  - { kind: zone-outage, zones: [az1] }\nduration: soon\n",
        )
        .unwrap();
        let path = dir.path().join("drctl.yaml");
        fs::write(&path, with_head("drills:\n  - { experiment: az1.yaml, cron: \"0 3 * * 1\" }\n  - { experiment: gone.yaml, cron: \"0 3 * * 9\" }\n")).unwrap();
        let diags = drctl_core::load(&path).diagnostics;
        let got: Vec<String> = diags
            .iter()
            .map(|d| {
                format!("{}:{}:{} {}", d.file.file_name().unwrap().to_string_lossy(), d.pos.line, d.pos.col, d.message)
            })
            .collect();
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got.iter().any(|g| g.starts_with("az1.yaml:4:11 `duration`")), "the experiment's own error: {got:#?}");
        assert!(got.iter().any(|g| g.starts_with("drctl.yaml:9:19 experiment `gone.yaml` does not exist")), "{got:#?}");
        assert!(got.iter().any(|g| g.contains("weekday 9 is not 0-7")), "{got:#?}");
    }

    #[test]
    fn a_restore_test_listed_in_drills_runs_on_its_own_schedule_or_the_drills_cron() {
        let dir = tempdir::Dir::new();
        let test = |name: &str, schedule: &str| {
            fs::write(
                dir.path().join(name),
                format!("name: t\nrestore: {{ datastore: db }}\nverify:\n  - {{ sql: \"SELECT 1\", expect: 1 }}\n{schedule}"),
            )
            .unwrap();
        };
        test("own.yaml", "schedule: \"0 4 * * *\"\n");
        test("bare.yaml", "");
        let path = dir.path().join("drctl.yaml");
        fs::write(
            &path,
            with_head("datastores:\n  - { name: db, kind: postgres, primary: { zone: az1, url: \"postgres://u@h/d\" } }\ndrills:\n  - { experiment: own.yaml }\n  - { experiment: bare.yaml, cron: \"0 5 * * *\" }\n"),
        )
        .unwrap();
        let loaded = drctl_core::load(&path);
        let topo = loaded.topology.unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
        assert!(topo.drills.iter().all(|d| d.restore_test), "{:?}", topo.drills);
        assert!(topo.drills[0].cron.starts_with("0 0 4 "), "its own schedule: {:?}", topo.drills[0]);
        assert!(topo.drills[1].cron.starts_with("0 0 5 "), "the drill's cron: {:?}", topo.drills[1]);
        // Neither a schedule nor a cron: an error at the drill, saying both ways out.
        fs::write(&path, with_head("datastores:\n  - { name: db, kind: postgres, primary: { zone: az1, url: \"postgres://u@h/d\" } }\ndrills:\n  - { experiment: bare.yaml }\n")).unwrap();
        let errs: Vec<_> =
            drctl_core::load(&path).diagnostics.into_iter().filter(|d| d.severity == Severity::Error).collect();
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!((errs[0].pos.line, errs[0].code), (10, Code::MissingKey), "{errs:#?}");
        assert!(errs[0].message.contains("has no `schedule:`, and this drill no `cron:`"), "{errs:#?}");
        // A chaos drill still needs its cron.
        fs::write(
            dir.path().join("az1.yaml"),
            "name: x\nfaults:\n  - { kind: zone-outage, zones: [az1] }\nduration: 1m\n",
        )
        .unwrap();
        fs::write(&path, with_head("datastores:\n  - { name: db, kind: postgres, primary: { zone: az1, url: \"postgres://u@h/d\" } }\ndrills:\n  - { experiment: az1.yaml }\n")).unwrap();
        let errs: Vec<_> =
            drctl_core::load(&path).diagnostics.into_iter().filter(|d| d.severity == Severity::Error).collect();
        assert!(errs.len() == 1 && errs[0].message == "a drill has no `cron`", "{errs:#?}");
    }

    /// A temporary folder removed on drop (no dependency for so little).
    mod tempdir {
        use std::path::{Path, PathBuf};
        pub struct Dir(PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "drctl-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}

#[test]
fn a_route_needs_what_its_kind_switches_through() {
    let route = |body: &str| {
        with_head(&format!(
            "services:\n  - name: api\n    zones: [az1, az2]\n    route:\n{body}      name: api.lab.\n      records: {{ az1: 127.0.1.10, az2: 127.0.2.10 }}\n"
        ))
    };
    let (line, col, code, msg, hint) = only_error(&route("      kind: lab-dns\n"));
    assert_eq!((line, col, code), (11, 7, Code::MissingKey));
    assert!(msg.contains("lab-dns route of service `api` has no `server`"), "{msg}");
    assert!(hint.unwrap().contains("server:"));
    let (_, _, code, msg, _) = only_error(&route("      kind: route53\n"));
    assert_eq!(code, Code::MissingKey);
    assert!(msg.contains("no `zone_id`"), "{msg}");
    let (line, _, code, msg, _) = only_error(&route("      kind: route53\n      zone_id: Z1\n      ttl: 9999999999\n"));
    assert_eq!((line, code), (13, Code::BadValue), "{msg}");
    assert!(msg.contains("over 2147483647"), "{msg}");
    assert!(errors(&route("      kind: lab-dns\n      server: \"127.0.0.1:54353\"\n")).is_empty());
}

/// A duration a step takes that no clock can hold (`within: 1e20`) is an
/// error at its position when the runbook is read, not a panic when the
/// step runs (and again on every resume).
#[test]
fn runbook_durations_out_of_range_are_errors_with_positions() {
    let src = "name: rb\nsteps:\n  - id: up\n    action: http.health\n    with: { url: \"http://x/health\", within: 1e20, interval: -1 }\n  - id: pause\n    action: wait\n    with: { for: 11y }\n";
    let Err(drctl_core::runbook::LoadError::Invalid(diags)) = drctl_core::runbook::load_str(src, Path::new("rb.yaml"))
    else {
        panic!("accepted");
    };
    let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert!(
        text.iter().any(|t| t.contains("5:") && t.contains("`within`") && t.contains("longer than ten years")),
        "{text:#?}"
    );
    assert!(text.iter().any(|t| t.contains("`interval`") && t.contains("zero or more")), "{text:#?}");
    assert!(text.iter().any(|t| t.contains("8:") && t.contains("`for`")), "{text:#?}");
    let ok = "name: rb\nsteps:\n  - id: up\n    action: http.health\n    with: { url: \"http://x/health\", within: 90, interval: 2s }\n";
    assert!(drctl_core::runbook::load_str(ok, Path::new("rb.yaml")).is_ok());
}

#[test]
fn postgres_tls_settings_are_checked_where_they_are_written() {
    let topo = |q: &str| {
        with_head(&format!(
            "datastores:\n  - name: db\n    kind: postgres\n    primary: {{ zone: az1, url: \"postgres://u@h/db{q}\" }}\n    replicas: [ {{ zone: az2, url: \"postgres://u@h2/db\" }} ]\n"
        ))
    };
    assert!(errors(&topo("?sslmode=verify-full&sslrootcert=/etc/rds.pem")).is_empty());
    assert!(errors(&topo("?sslmode=require")).is_empty());
    let (_, _, code, msg, hint) = only_error(&topo("?sslmode=verify-full"));
    assert_eq!(code, Code::BadValue);
    assert!(msg.contains("needs sslrootcert=PATH"), "{msg}");
    assert!(hint.unwrap().contains("verify-ca"));
    let (_, _, _, msg, _) = only_error(&topo("?sslmode=strict"));
    assert!(msg.contains("`strict`"), "{msg}");
}

#[test]
fn fence_checks_reprotect_hooks_and_drill_ages_are_read_and_their_mistakes_named() {
    let src = "version: 1
zones:
  - { name: az1, region: r1 }
  - { name: az2, region: r1 }
objectives:
  tier-0: { rpo: 5s, rto: 2m, drills: { every: 30d } }
datastores:
  - name: db
    kind: postgres
    primary: { zone: az1, url: \"postgres://u@h:1/d\", fence: { command: [pdu, off], check: [pdu, status] } }
    replicas: [ { zone: az2, url: \"postgres://u@h:2/d\", reprotect: { command: [rebuild, az2] } } ]
services:
  - { name: api, tier: tier-0, zones: [az1, az2], depends_on: [db], drills: { every: 7d } }
";
    let loaded = load_str(src, Path::new("drctl.yaml"));
    let topo = loaded.topology.unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
    let db = topo.entity_id("db").unwrap();
    let api = topo.entity_id("api").unwrap();
    assert_eq!(topo.drills_every(api), Some(std::time::Duration::from_secs(7 * 86_400)), "the entity's own wins");
    assert_eq!(topo.drills_every(db), Some(std::time::Duration::from_secs(30 * 86_400)), "else its tier's");
    let drctl_core::topology::EntitySpec::Datastore(d) = &topo.entity(db).spec else { panic!() };
    match (&d.primary.as_ref().unwrap().location, &d.replicas[0].location) {
        (
            drctl_core::topology::Location::Postgres { fence_check: Some(check), fence: Some(fence), .. },
            drctl_core::topology::Location::Postgres { reprotect: Some(hook), .. },
        ) => {
            assert_eq!(check, &["pdu", "status"]);
            assert_eq!(fence, &["pdu", "off"]);
            assert_eq!(hook, &["rebuild", "az2"]);
        }
        other => panic!("{other:#?}"),
    }

    let (line, _, code, msg, _) = only_error(&with_head(
        "datastores:
  - name: db
    kind: postgres
    primary: { zone: az1, url: \"postgres://u@h:1/d\", fence: { command: [pdu, off], check: [] } }
    replicas: [ { zone: az2, url: \"postgres://u@h:2/d\" } ]
",
    ));
    assert_eq!((line, code), (10, Code::BadValue), "{msg}");
    assert!(msg.contains("`check` is empty"), "{msg}");
    let (line, _, code, msg, _) = only_error(&with_head(
        "datastores:
  - name: db
    kind: postgres
    primary: { zone: az1, url: \"postgres://u@h:1/d\", fence: { check: [pdu, status] } }
    replicas: [ { zone: az2, url: \"postgres://u@h:2/d\" } ]
",
    ));
    assert_eq!((line, code), (10, Code::MissingKey), "a check without a command: {msg}");
    let (_, _, code, msg, hint) = only_error(&with_head(
        "services:
  - { name: api, zones: [az1], drills: { evry: 30d } }
",
    ));
    assert_eq!(code, Code::UnknownKey, "{msg}");
    assert!(hint.unwrap_or_default().contains("every"));
}
