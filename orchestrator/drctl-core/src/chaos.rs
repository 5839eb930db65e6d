//! Chaos experiments (docs/reference/runbooks-and-experiments.md): the faults a drill injects, for how long,
//! when to stop early, and whether drctl declares the disaster itself.
//!
//! Parsed with the same positioned decoder as the topology, so a typo in an
//! experiment is reported with `file:line:column` before any fault is
//! injected. Running experiments is the drill's job (`drctl-lab`); this
//! module only says what an experiment file means.

use crate::decode::{Decoder, Fields, Named, Spanned};
use crate::diag::{Code, Diagnostic, Pos};
use crate::yaml;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One fault to inject.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Everything in these zones stops or becomes unreachable.
    ZoneOutage { zones: Vec<String> },
    /// The zones lose their links to the other zones and to the controller
    /// (`one_way`: to the controller only), while everything in them keeps
    /// running and their own clients keep working.
    ZonePartition { zones: Vec<String>, one_way: bool },
    /// A process of an entity is killed.
    ProcessKill { target: String },
    /// Traffic to an entity is delayed.
    Latency { target: String, delay: Duration },
    /// A share of packets to an entity is dropped (0.0–1.0).
    PacketLoss { target: String, rate: f64 },
    /// Connections to an entity are reset.
    Reset { target: String },
    /// A datastore's replication stops (PostgreSQL replay paused, S3 copying halted).
    ReplicationPause { datastore: String },
    /// A share of S3 requests is answered 503 (0.0–1.0).
    S3Errors { datastore: Option<String>, rate: f64 },
    /// A logical disaster: SQL run on a PostgreSQL datastore's primary (a
    /// `DELETE` without a `WHERE`), which replication carries everywhere.
    DataLoss { datastore: String, sql: String },
    /// A logical disaster: a share of an S3 datastore's objects overwritten
    /// (0.0–1.0), as ransomware would.
    ObjectOverwrite { datastore: String, share: f64 },
}

impl Fault {
    /// Whether the fault damages data rather than a place: a failover
    /// carries it along, only a restore to the moment before undoes it.
    pub fn is_logical(&self) -> bool {
        matches!(self, Fault::DataLoss { .. } | Fault::ObjectOverwrite { .. })
    }
}

/// How a drill answers its faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recover {
    /// Declare a disaster and fail over (the default).
    #[default]
    Failover,
    /// Restore each damaged datastore to the moment just before its first
    /// fault, in place (`drctl restore --to T --replace`).
    Restore,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimedFault {
    pub fault: Fault,
    /// Injected this long after the experiment starts.
    pub after: Duration,
    pub pos: Pos,
}

/// A condition that ends the experiment early (and heals).
#[derive(Debug, Clone, PartialEq)]
pub enum StopWhen {
    RpoAbove { datastore: String, bound: Duration },
    RtoAbove { service: String, bound: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclareMode {
    /// drctl declares when health checks fail.
    Auto,
    /// The drill waits for `drctl declare`.
    Manual,
    /// As `auto`, through highly available controllers (docs/guide/ha-etcd.md): the
    /// lab runs one per zone on etcd and the drill declares through their
    /// API, so the leader of the moment executes — lost with its zone, if
    /// the fault takes it.
    Controllers,
    /// `{ after: 2m }`: drctl declares this long after the first fault,
    /// whatever the health checks say, as a person would (people take
    /// minutes): the declaration is judged on the evidence a late
    /// declaration has.
    After(Duration),
}

impl DeclareMode {
    /// As the experiment file says it (`auto`, `after 2m`).
    pub fn describe(&self) -> String {
        match self {
            DeclareMode::Auto => "auto".into(),
            DeclareMode::Manual => "manual".into(),
            DeclareMode::Controllers => "controllers".into(),
            DeclareMode::After(d) => format!("after {}", crate::duration::format_duration(*d)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub faults: Vec<TimedFault>,
    pub duration: Duration,
    pub stop_when: Vec<StopWhen>,
    pub declare: DeclareMode,
    /// `recover: restore` answers logical disasters with a restore.
    pub recover: Recover,
}

pub const FAULT_KINDS: &[&str] = &[
    "zone-outage",
    "zone-partition",
    "process-kill",
    "latency",
    "packet-loss",
    "reset",
    "replication-pause",
    "s3-errors",
    "data-loss",
    "object-overwrite",
];

pub fn load(path: &Path) -> Result<Experiment, Vec<Diagnostic>> {
    crate::decode::load_file(path, "the experiment", decode)
}

pub fn load_str(src: &str, path: &Path) -> Result<Experiment, Vec<Diagnostic>> {
    crate::decode::load_source(src, path, decode)
}

fn rate(d: &mut Decoder, node: Option<&yaml::Node>, what: &str) -> Option<f64> {
    let node = node?;
    let text = d.string(node, &what)?;
    let v = text.value.trim_end_matches('%');
    let r = v.parse::<f64>().ok().map(|x| if text.value.ends_with('%') { x / 100.0 } else { x });
    match r {
        Some(x) if (0.0..=1.0).contains(&x) => Some(x),
        _ => {
            d.diags
                .error(Code::BadValue, node.pos, format!("{what} `{}` is not a share between 0 and 1", text.value))
                .with_hint("write 0.2 or 20%");
            None
        }
    }
}

fn decode(d: &mut Decoder, root: &yaml::Node, path: &Path) -> Option<Experiment> {
    let top = d.fields(
        root,
        &"the experiment",
        &["name", "description", "faults", "duration", "stop_when", "declare", "recover"],
    )?;
    let name = d.req_string(&top, "name", &"the experiment");
    let description = d.opt_string(&top, "description", &"the experiment").map(|s| s.value);
    let duration = d.required(&top, "duration", &"the experiment").and_then(|n| d.duration(n, &"`duration`"));
    let faults = decode_faults(d, &top);
    let stop_when = decode_stop_when(d, &top);
    let declare = decode_declare(d, &top, duration.as_ref(), &faults);
    let recover = decode_recover(d, &top, &faults);
    check_faults_start_in_time(d, duration.as_ref(), &faults);
    Some(Experiment {
        name: name?.value,
        description,
        file: path.to_path_buf(),
        faults,
        duration: duration?.value,
        stop_when,
        declare,
        recover,
    })
}

/// `faults:`, at least one; a fault with a mistake is reported and left out.
fn decode_faults(d: &mut Decoder, top: &Fields) -> Vec<TimedFault> {
    let mut faults = Vec::new();
    let fault_nodes = d.list(top.get("faults"), &"`faults`");
    if fault_nodes.is_empty() {
        d.diags
            .error(Code::MissingKey, top.pos, "the experiment injects no faults")
            .with_hint("add `faults:` with at least one `{ kind: ... }`");
    }
    for node in fault_nodes {
        if let Some(fault) = decode_timed_fault(d, node) {
            faults.push(fault);
        }
    }
    faults
}

/// One entry of `faults:`: its kind, when it starts, and the fault.
fn decode_timed_fault(d: &mut Decoder, node: &yaml::Node) -> Option<TimedFault> {
    let what = Named("fault", node.peek("kind"));
    let keys = ["kind", "zones", "one_way", "target", "datastore", "delay", "rate", "after", "sql", "share"];
    let f = d.fields(node, &what, &keys)?;
    let kind = d.req_string(&f, "kind", &what)?;
    if !d.choice(&kind, &"fault kind", FAULT_KINDS) {
        return None;
    }
    let after = d.opt_duration(&f, "after", &what).map_or(Duration::ZERO, |a| a.value);
    let fault = decode_fault(d, &f, &what, &kind.value)?;
    Some(TimedFault { fault, after, pos: node.pos })
}

/// The fields one kind of fault needs (`kind` is one of [`FAULT_KINDS`]).
fn decode_fault(d: &mut Decoder, f: &Fields, what: &Named, kind: &str) -> Option<Fault> {
    let target = |d: &mut Decoder| d.req_string(f, "target", what).map(|t| t.value);
    match kind {
        "zone-outage" => {
            let zones = zones(d, f);
            if zones.is_empty() {
                d.diags.error(Code::MissingKey, f.pos, "a zone-outage needs `zones: [ZONE, ...]`");
                None
            } else {
                Some(Fault::ZoneOutage { zones })
            }
        }
        "zone-partition" => {
            let zones = zones(d, f);
            let one_way = f.get("one_way").and_then(|n| d.boolean(n, &"`one_way`")).is_some_and(|b| b.value);
            if zones.is_empty() {
                d.diags.error(Code::MissingKey, f.pos, "a zone-partition needs `zones: [ZONE, ...]`");
                None
            } else {
                Some(Fault::ZonePartition { zones, one_way })
            }
        }
        "process-kill" => target(d).map(|target| Fault::ProcessKill { target }),
        "reset" => target(d).map(|target| Fault::Reset { target }),
        "latency" => {
            let t = target(d);
            let delay = d.required(f, "delay", what).and_then(|n| d.duration(n, &"`delay`"));
            t.zip(delay).map(|(target, delay)| Fault::Latency { target, delay: delay.value })
        }
        "packet-loss" => {
            let t = target(d);
            let r = required_share(d, f, "rate", "a packet-loss needs `rate:` (e.g. 20%)");
            t.zip(r).map(|(target, rate)| Fault::PacketLoss { target, rate })
        }
        "replication-pause" => {
            d.req_string(f, "datastore", what).map(|s| Fault::ReplicationPause { datastore: s.value })
        }
        "s3-errors" => {
            let datastore = d.opt_string(f, "datastore", what).map(|s| s.value);
            // Without a rate, every request fails.
            let share = match f.get("rate") {
                Some(n) => rate(d, Some(n), "`rate`"),
                None => Some(1.0),
            };
            share.map(|rate| Fault::S3Errors { datastore, rate })
        }
        "data-loss" => decode_data_loss(d, f, what),
        "object-overwrite" => {
            let ds = d.req_string(f, "datastore", what);
            let share = required_share(d, f, "share", "an object-overwrite needs `share:` (e.g. 0.5)");
            ds.zip(share).map(|(ds, share)| Fault::ObjectOverwrite { datastore: ds.value, share })
        }
        _ => None,
    }
}

/// `zones:` of a zone fault (empty when missing).
fn zones(d: &mut Decoder, f: &Fields) -> Vec<String> {
    d.string_list(f.get("zones"), &"`zones`").into_iter().map(|z| z.value).collect()
}

/// A share (`key`) the fault cannot do without: `missing` when it is not there.
fn required_share(d: &mut Decoder, f: &Fields, key: &str, missing: &str) -> Option<f64> {
    match f.get(key) {
        Some(n) => rate(d, Some(n), &format!("`{key}`")),
        None => {
            d.diags.error(Code::MissingKey, f.pos, missing);
            None
        }
    }
}

/// A data-loss fault: a datastore and a statement that is not empty.
fn decode_data_loss(d: &mut Decoder, f: &Fields, what: &Named) -> Option<Fault> {
    let ds = d.req_string(f, "datastore", what);
    let sql = d.req_string(f, "sql", what);
    if let Some(s) = sql.as_ref().filter(|s| s.value.trim().is_empty()) {
        d.diags
            .error(Code::BadValue, s.pos, "`sql` is empty")
            .with_hint("the statement that damages the data, e.g. `DELETE FROM workload`");
    }
    ds.zip(sql.filter(|s| !s.value.trim().is_empty()))
        .map(|(ds, sql)| Fault::DataLoss { datastore: ds.value, sql: sql.value })
}

/// `stop_when:`, each condition a bound on one datastore's RPO or one
/// service's RTO.
fn decode_stop_when(d: &mut Decoder, top: &Fields) -> Vec<StopWhen> {
    let mut stop_when = Vec::new();
    for node in d.list(top.get("stop_when"), &"`stop_when`") {
        let what: &dyn std::fmt::Display = &"a stop condition";
        let Some(f) = d.fields(node, what, &["rpo_above", "rto_above", "datastore", "service"]) else { continue };
        match (f.get("rpo_above"), f.get("rto_above")) {
            (Some(b), None) => {
                let bound = d.duration(b, &"`rpo_above`");
                let ds = d.req_string(&f, "datastore", what);
                if let (Some(bound), Some(ds)) = (bound, ds) {
                    stop_when.push(StopWhen::RpoAbove { datastore: ds.value, bound: bound.value });
                }
            }
            (None, Some(b)) => {
                let bound = d.duration(b, &"`rto_above`");
                let svc = d.req_string(&f, "service", what);
                if let (Some(bound), Some(svc)) = (bound, svc) {
                    stop_when.push(StopWhen::RtoAbove { service: svc.value, bound: bound.value });
                }
            }
            _ => {
                d.diags
                    .error(Code::BadValue, f.pos, "a stop condition has exactly one of `rpo_above` or `rto_above`")
                    .with_hint("for example `{ rpo_above: 30s, datastore: orders-db }`");
            }
        }
    }
    stop_when
}

/// `declare:` (`auto` when absent); `{ after }` must leave the declaration
/// inside the experiment.
fn decode_declare(
    d: &mut Decoder,
    top: &Fields,
    duration: Option<&Spanned<Duration>>,
    faults: &[TimedFault],
) -> DeclareMode {
    match top.get("declare") {
        None => DeclareMode::Auto,
        Some(node) if matches!(node.value, crate::yaml::Value::Map(_)) => {
            let after = d.fields(node, &"`declare`", &["after"]).and_then(|f| {
                let n = d.required(&f, "after", &"`declare`")?;
                d.duration(n, &"`declare: { after }`")
            });
            if let (Some(after), Some(dur), Some(first)) = (&after, duration, faults.iter().map(|f| f.after).min()) {
                if first + after.value >= dur.value {
                    d.diags
                        .error(Code::BadValue, after.pos, "the declaration would come after the experiment ends")
                        .with_hint("make `duration` longer than the first fault's `after` plus `declare: { after }`, with time for the failover");
                }
            }
            after.map_or(DeclareMode::Auto, |a| DeclareMode::After(a.value))
        }
        Some(_) => match d.opt_string(top, "declare", &"the experiment") {
            None => DeclareMode::Auto,
            Some(s) if s.value == "auto" => DeclareMode::Auto,
            Some(s) if s.value == "manual" => DeclareMode::Manual,
            Some(s) if s.value == "controllers" => DeclareMode::Controllers,
            Some(s) => {
                d.choice(&s, &"`declare`", &["auto", "manual", "controllers"]);
                DeclareMode::Auto
            }
        },
    }
}

/// `recover:` (`failover` when absent); `restore` needs a logical fault to
/// answer.
fn decode_recover(d: &mut Decoder, top: &Fields, faults: &[TimedFault]) -> Recover {
    let recover = match d.opt_string(top, "recover", &"the experiment") {
        None => Recover::Failover,
        Some(s) if s.value == "failover" => Recover::Failover,
        Some(s) if s.value == "restore" => Recover::Restore,
        Some(s) => {
            d.choice(&s, &"`recover`", &["failover", "restore"]);
            Recover::Failover
        }
    };
    if recover == Recover::Restore {
        if let Some(node) = top.get("recover") {
            if !faults.iter().any(|f| f.fault.is_logical()) {
                d.diags
                    .error(
                        Code::BadValue,
                        node.pos,
                        "`recover: restore` answers a logical disaster, and no fault here is one",
                    )
                    .with_hint("add a `data-loss` or `object-overwrite` fault, or drop `recover: restore`");
            }
        }
    }
    recover
}

/// Every fault starts before the experiment ends.
fn check_faults_start_in_time(d: &mut Decoder, duration: Option<&Spanned<Duration>>, faults: &[TimedFault]) {
    if let (Some(dur), true) = (duration, !faults.is_empty()) {
        for f in faults {
            if f.after > dur.value {
                d.diags
                    .error(Code::BadValue, f.pos, "this fault starts after the experiment ends")
                    .with_hint("make `after` shorter than `duration`");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_loads() {
        let e = load_str(
            "name: az1-power-loss
description: Everything in use1-az1 stops at once.
faults:
  - { kind: zone-outage, zones: [use1-az1] }
  - { kind: latency, target: orders-db, delay: 200ms, after: 10s }
duration: 2m
stop_when:
  - { rpo_above: 30s, datastore: orders-db }
declare: auto
",
            Path::new("x.yaml"),
        )
        .unwrap();
        assert_eq!(e.faults[0].fault, Fault::ZoneOutage { zones: vec!["use1-az1".into()] });
        assert_eq!(e.faults[1].fault, Fault::Latency { target: "orders-db".into(), delay: Duration::from_millis(200) });
        assert_eq!(e.faults[1].after, Duration::from_secs(10));
        assert_eq!(e.duration, Duration::from_secs(120));
        assert_eq!(
            e.stop_when,
            vec![StopWhen::RpoAbove { datastore: "orders-db".into(), bound: Duration::from_secs(30) }]
        );
        assert_eq!(e.declare, DeclareMode::Auto);
    }

    #[test]
    fn every_mistake_is_reported_with_its_position() {
        let errs = load_str(
            "name: bad
faults:
  - { kind: zone-outag, zones: [a] }
  - { kind: packet-loss, target: db, rate: 140% }
  - { kind: latency, target: db, after: 5m, delay: 1s }
duration: 1m
stop_when:
  - { rpo_above: 30s, rto_above: 1m }
declare: sometimes
",
            Path::new("x.yaml"),
        )
        .unwrap_err();
        let got: Vec<String> = errs.iter().map(|d| format!("{}:{} {}", d.pos.line, d.pos.col, d.message)).collect();
        assert_eq!(got.len(), 5, "{got:#?}");
        assert!(got[0].starts_with("3:13 fault kind `zone-outag` is not known"), "{got:#?}");
        assert_eq!(errs[0].hint.as_deref(), Some("did you mean `zone-outage`? (one of: zone-outage, zone-partition, process-kill, latency, packet-loss, reset, replication-pause, s3-errors, data-loss, object-overwrite)"));
        assert!(got[1].starts_with("4:44 `rate` `140%` is not a share"), "{got:#?}");
        assert!(got[2].starts_with("5:5 this fault starts after the experiment ends"), "{got:#?}");
        assert!(got[3].contains("exactly one of `rpo_above` or `rto_above`"), "{got:#?}");
        assert!(got[4].contains("`declare` `sometimes` is not known"), "{got:#?}");
    }
}

#[cfg(test)]
mod logical {
    use super::*;

    #[test]
    fn logical_disasters_load_and_their_mistakes_are_placed() {
        let e = load_str(
            "name: bad-delete\nfaults:\n  - { kind: data-loss, datastore: orders-db, sql: \"DELETE FROM workload\", after: 2s }\n  - { kind: object-overwrite, datastore: assets, share: 50% }\nduration: 1m\nrecover: restore\n",
            Path::new("x.yaml"),
        )
        .unwrap();
        assert_eq!(e.recover, Recover::Restore);
        assert_eq!(
            e.faults[0].fault,
            Fault::DataLoss { datastore: "orders-db".into(), sql: "DELETE FROM workload".into() }
        );
        assert_eq!(e.faults[1].fault, Fault::ObjectOverwrite { datastore: "assets".into(), share: 0.5 });
        assert!(e.faults.iter().all(|f| f.fault.is_logical()));

        let errs = load_str(
            "name: bad\nfaults:\n  - { kind: data-los, datastore: db }\n  - { kind: data-loss, datastore: db, sqll: x }\n  - { kind: object-overwrite, datastore: a, share: 2 }\n  - { kind: object-overwrite, datastore: a }\nduration: 1m\nrecover: restor\n",
            Path::new("x.yaml"),
        )
        .unwrap_err();
        let got: Vec<String> = errs.iter().map(|d| format!("{}:{} {}", d.pos.line, d.pos.col, d.message)).collect();
        assert!(got.iter().any(|g| g.starts_with("3:13 fault kind `data-los`")), "{got:#?}");
        assert!(
            errs.iter().any(|d| d.hint.as_deref().is_some_and(|h| h.starts_with("did you mean `data-loss`?"))),
            "{errs:#?}"
        );
        assert!(got.iter().any(|g| g.starts_with("4:") && g.contains("sqll")), "unknown key refused: {got:#?}");
        assert!(got.iter().any(|g| g.starts_with("4:") && g.contains("sql")), "sql missing: {got:#?}");
        assert!(got.iter().any(|g| g.starts_with("5:") && g.contains("`share` `2` is not a share")), "{got:#?}");
        assert!(got.iter().any(|g| g.starts_with("6:") && g.contains("needs `share:`")), "{got:#?}");
        assert!(got.iter().any(|g| g.starts_with("8:10") && g.contains("`recover` `restor`")), "{got:#?}");
        assert!(
            errs.iter().any(|d| d.hint.as_deref().is_some_and(|h| h.contains("did you mean `restore`?"))),
            "{errs:#?}"
        );

        let errs = load_str(
            "name: x\nfaults:\n  - { kind: zone-outage, zones: [a] }\nduration: 1m\nrecover: restore\n",
            Path::new("x.yaml"),
        )
        .unwrap_err();
        assert!(errs[0].message.contains("no fault here is one"), "{errs:?}");
        assert_eq!((errs[0].pos.line, errs[0].pos.col), (5, 10));
    }
}

#[cfg(test)]
mod late {
    use super::*;

    #[test]
    fn a_declaration_after_a_delay_is_read_and_checked_with_positions() {
        let e = load_str(
            "name: late\nfaults:\n  - { kind: zone-outage, zones: [az1], after: 5s }\nduration: 4m\ndeclare: { after: 2m }\n",
            Path::new("x.yaml"),
        )
        .unwrap();
        assert_eq!(e.declare, DeclareMode::After(Duration::from_secs(120)));
        assert_eq!(e.declare.describe(), "after 2m");

        let errs = load_str(
            "name: late\nfaults:\n  - { kind: zone-outage, zones: [az1] }\nduration: 1m\ndeclare: { after: 2m }\n",
            Path::new("x.yaml"),
        )
        .unwrap_err();
        assert_eq!((errs[0].pos.line, errs[0].pos.col), (5, 19), "{errs:?}");
        assert!(errs[0].message.contains("after the experiment ends"), "{errs:?}");
        assert!(errs[0].hint.as_deref().unwrap().contains("make `duration` longer"), "{errs:?}");

        let errs = load_str(
            "name: late\nfaults:\n  - { kind: zone-outage, zones: [az1] }\nduration: 5m\ndeclare: { afte: 2m, after: soon }\n",
            Path::new("x.yaml"),
        )
        .unwrap_err();
        let got: Vec<String> = errs.iter().map(|d| format!("{}:{} {}", d.pos.line, d.pos.col, d.message)).collect();
        assert!(got.iter().any(|g| g.starts_with("5:12") && g.contains("afte")), "unknown key, placed: {got:#?}");
        assert!(got.iter().any(|g| g.starts_with("5:29") && g.contains("declare")), "bad duration, placed: {got:#?}");
    }
}

#[cfg(test)]
mod shipped {
    /// Every experiment shipped in `chaos/` loads without a diagnostic.
    #[test]
    fn the_shipped_experiments_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../chaos");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let e = super::load(&path).unwrap_or_else(|d| panic!("{}: {d:?}", path.display()));
                assert!(!e.faults.is_empty(), "{}", path.display());
                n += 1;
            }
        }
        assert!(n >= 5, "an experiment per fault kind: {n}");
    }
}
