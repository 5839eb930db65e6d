//! The topology file as written: strings with positions, nothing resolved.
//!
//! Decoding checks shapes (keys, types, durations); everything that needs
//! the whole file (references, uniqueness, cycles) is left to
//! [`super::validate`], which turns these raw types into checked ones.

use crate::decode::{Decoder, Field, Fields, Named, Of, Spanned, What};
use crate::diag::{Code, Pos};
use crate::yaml::Node;
use std::time::Duration;

pub type S = Spanned<String>;

#[derive(Debug, Default)]
pub struct RawTopology {
    pub version: Option<Spanned<u64>>,
    pub name: Option<S>,
    pub zones: Vec<RawZone>,
    pub objectives: Vec<RawObjective>,
    pub contracts: Vec<RawContract>,
    pub datastores: Vec<RawDatastore>,
    pub services: Vec<RawService>,
    pub drills: Vec<RawDrill>,
    /// `erasure: { deadline, locate }`: where a subject's data lives.
    pub erasure: Option<super::erasure::RawErasure>,
}

#[derive(Debug)]
pub struct RawZone {
    pub pos: Pos,
    pub name: S,
    pub region: Option<S>,
    pub aws_zone: Option<S>,
}

#[derive(Debug)]
pub struct RawObjective {
    pub tier: S,
    pub rpo: Option<Spanned<Duration>>,
    pub rto: Option<Spanned<Duration>>,
    /// `restore: { rpo, rto }`: what a restore from backups must meet.
    pub restore: Option<super::backup::RawRestoreObjective>,
    /// `drills: { every: 30d }`: how old the last drill may be.
    pub drills: Option<Spanned<Duration>>,
}

#[derive(Debug)]
pub struct RawContract {
    pub pos: Pos,
    pub customer: Option<S>,
    pub services: Vec<S>,
    pub rpo: Option<Spanned<Duration>>,
    pub rto: Option<Spanned<Duration>>,
}

#[derive(Debug)]
pub struct RawMember {
    pub pos: Pos,
    pub zone: Option<S>,
    pub url: Option<S>,
    pub bucket: Option<S>,
    pub instance: Option<S>,
    pub endpoint: Option<S>,
    pub region: Option<S>,
    /// `fence: { command: [...] }`: the out-of-band fence of this member.
    pub fence: Option<Spanned<Vec<S>>>,
    /// `fence: { check: [...] }`: says, without acting, whether the fence would work.
    pub fence_check: Option<Spanned<Vec<S>>>,
    /// `reprotect: { command: [...] }`: rebuilds this member as a standby.
    pub reprotect: Option<Spanned<Vec<S>>>,
}

#[derive(Debug, Default)]
pub struct RawFailover {
    pub pos: Pos,
    pub estimate: Option<Spanned<Duration>>,
    pub max_lag: Option<Spanned<Duration>>,
    pub catch_up: Option<Spanned<Duration>>,
    pub runbook: Option<S>,
    pub on_failure: Option<crate::runbook::OnFailure>,
}

#[derive(Debug)]
pub struct RawReplication {
    pub pos: Pos,
    pub by: Option<S>,
    pub every: Option<Spanned<Duration>>,
    pub cron: Option<S>,
    pub concurrency: Option<Spanned<u64>>,
    pub sse: Option<S>,
    pub kms_key_id: Option<S>,
    pub deletes: Option<S>,
}

#[derive(Debug)]
pub struct RawDatastore {
    pub pos: Pos,
    pub name: Option<S>,
    pub kind: Option<S>,
    pub tier: Option<S>,
    pub primary: Option<RawMember>,
    pub replicas: Vec<RawMember>,
    pub endpoint: Option<S>,
    pub region: Option<S>,
    pub cluster: Option<S>,
    pub failover: Option<RawFailover>,
    pub replication: Option<RawReplication>,
    pub backup: Option<super::backup::RawBackup>,
    pub drills: Option<Spanned<Duration>>,
}

#[derive(Debug)]
pub struct RawHealth {
    pub pos: Pos,
    pub url: Option<S>,
    /// One URL per zone: (zone, URL).
    pub zones: Vec<(S, S)>,
    pub timeout: Option<Spanned<Duration>>,
}

#[derive(Debug)]
pub struct RawRoute {
    pub pos: Pos,
    pub kind: Option<S>,
    pub zone_id: Option<S>,
    pub name: Option<S>,
    pub record_type: Option<S>,
    pub ttl: Option<Spanned<u64>>,
    pub server: Option<S>,
    pub records: Vec<(S, S)>,
}

#[derive(Debug)]
pub struct RawService {
    pub pos: Pos,
    pub name: Option<S>,
    pub tier: Option<S>,
    pub zones: Option<Vec<S>>,
    pub depends_on: Vec<S>,
    pub health: Option<RawHealth>,
    pub route: Option<RawRoute>,
    pub failover: Option<RawFailover>,
    pub drills: Option<Spanned<Duration>>,
}

#[derive(Debug)]
pub struct RawDrill {
    pub pos: Pos,
    pub experiment: Option<S>,
    pub cron: Option<S>,
}

pub const DATASTORE_KINDS: &[&str] = &["postgres", "rds-instance", "rds-cluster", "s3"];

const TOP_KEYS: &[&str] =
    &["version", "name", "zones", "objectives", "contracts", "datastores", "services", "drills", "erasure"];

/// Decodes the whole file. Problems go to the decoder's diagnostics; what
/// could be read is returned so that validation can still report the rest.
pub fn decode(d: &mut Decoder, root: &Node) -> RawTopology {
    let mut raw = RawTopology::default();
    if root.is_null() {
        d.diags
            .error(Code::MissingKey, root.pos, "the topology file is empty")
            .with_hint("start with `version: 1`, then `zones:`, `datastores:` and `services:`");
        return raw;
    }
    let top_what: What = &"the topology";
    let Some(top) = d.fields(root, top_what, TOP_KEYS) else {
        return raw;
    };
    raw.version = d.required(&top, "version", top_what).and_then(|n| d.unsigned(n, &"`version`"));
    raw.name = d.opt_string(&top, "name", top_what);
    raw.erasure = top.get("erasure").and_then(|n| super::erasure::decode(d, n));

    for z in d.list(top.get("zones"), &"`zones`") {
        let what: What = &"a zone";
        let Some(f) = d.fields(z, what, &["name", "region", "aws_zone"]) else {
            continue;
        };
        if let Some(name) = d.req_string(&f, "name", what) {
            raw.zones.push(RawZone {
                pos: z.pos,
                region: d.opt_string(&f, "region", what),
                aws_zone: d.opt_string(&f, "aws_zone", what),
                name,
            });
        }
    }

    if let Some(objs) = top.get("objectives") {
        if let Some(f) = d.fields(objs, &"`objectives`", &[]) {
            for (tier, tier_pos, node) in f.entries_at() {
                let what = Named("objective", Some(tier));
                let Some(of) = d.fields(node, &what, &["rpo", "rto", "restore", "drills"]) else {
                    continue;
                };
                raw.objectives.push(RawObjective {
                    tier: Spanned::new(tier.to_string(), tier_pos),
                    rpo: d.opt_duration(&of, "rpo", &what),
                    rto: d.opt_duration(&of, "rto", &what),
                    restore: of.get("restore").and_then(|n| super::backup::decode_restore_objective(d, n, &what)),
                    drills: decode_drills(d, of.get("drills"), &what),
                });
            }
        }
    }

    for c in d.list(top.get("contracts"), &"`contracts`") {
        let Some(f) = d.fields(c, &"a contract", &["customer", "services", "rpo", "rto"]) else {
            continue;
        };
        let customer = d.req_string(&f, "customer", &"a contract");
        let what = match &customer {
            Some(c) => Named("the contract of", Some(c.value.as_str())),
            None => Named("contract", None),
        };
        raw.contracts.push(RawContract {
            pos: c.pos,
            services: d.string_list(f.get("services"), &Field("services", &what)),
            rpo: d.opt_duration(&f, "rpo", &what),
            rto: d.opt_duration(&f, "rto", &what),
            customer,
        });
    }

    for n in d.list(top.get("datastores"), &"`datastores`") {
        decode_item(d, &mut raw, "datastores", n);
    }
    for n in d.list(top.get("services"), &"`services`") {
        decode_item(d, &mut raw, "services", n);
    }
    for n in d.list(top.get("drills"), &"`drills`") {
        let what: What = &"a drill";
        let Some(f) = d.fields(n, what, &["experiment", "cron"]) else {
            continue;
        };
        raw.drills.push(RawDrill {
            pos: n.pos,
            experiment: d.req_string(&f, "experiment", what),
            // Optional for a restore test that has its own `schedule:` (checked with the file).
            cron: d.opt_string(&f, "cron", what),
        });
    }
    raw
}

/// The top-level sequences whose items can be decoded one by one, as the
/// parser finishes each (see [`crate::yaml::parse_streaming`]).
pub const STREAMED_SECTIONS: &[&str] = &["datastores", "services"];

/// Decodes one item of a [`STREAMED_SECTIONS`] sequence into `raw`.
pub fn decode_item(d: &mut Decoder, raw: &mut RawTopology, section: &str, node: &Node) {
    match section {
        "datastores" => raw.datastores.extend(decode_datastore(d, node)),
        "services" => raw.services.extend(decode_service(d, node)),
        _ => {}
    }
}

fn decode_datastore(d: &mut Decoder, node: &Node) -> Option<RawDatastore> {
    // The keys a datastore may have depend on its kind, so the kind is read first.
    let kind_hint = node.peek("kind");
    let common = ["name", "kind", "tier", "failover", "backup", "drills"];
    let extra: &[&str] = match kind_hint {
        Some("postgres") => &["primary", "replicas"],
        Some("s3") => &["primary", "replicas", "endpoint", "region", "replication"],
        Some("rds-instance") => &["primary", "replicas", "region"],
        Some("rds-cluster") => &["cluster", "region"],
        _ => &["primary", "replicas", "endpoint", "region", "replication", "cluster"],
    };
    let allowed: Vec<&str> = common.iter().chain(extra).copied().collect();
    let what = Named("datastore", node.peek("name"));
    let f = d.fields(node, &what, &allowed)?;
    let name = d.req_string(&f, "name", &"a datastore");
    let kind = d.req_string(&f, "kind", &what);
    if let Some(k) = &kind {
        d.choice(k, &Of("the kind", &what), DATASTORE_KINDS);
    }
    let member_keys: &[&str] = match kind_hint {
        Some("postgres") => &["zone", "url", "fence", "reprotect"],
        Some("s3") => &["zone", "bucket", "endpoint", "region"],
        Some("rds-instance") => &["zone", "instance"],
        _ => &["zone", "url", "bucket", "instance", "endpoint", "region", "fence", "reprotect"],
    };
    let primary = f.get("primary").and_then(|n| decode_member(d, n, &Of("the primary", &what), member_keys));
    let replicas = d
        .list(f.get("replicas"), &Field("replicas", &what))
        .iter()
        .filter_map(|n| decode_member(d, n, &Of("a replica", &what), member_keys))
        .collect();
    let failover = f
        .get("failover")
        .and_then(|n| decode_failover(d, n, &what, &["estimate", "max_lag", "catch_up", "runbook", "on_failure"]));
    let replication = f.get("replication").and_then(|n| {
        let rw = Of("the replication", &what);
        let rf = d.fields(n, &rw, &["by", "every", "cron", "concurrency", "sse", "kms_key_id", "deletes"])?;
        Some(RawReplication {
            pos: n.pos,
            by: d.req_string(&rf, "by", &rw),
            every: d.opt_duration(&rf, "every", &rw),
            cron: d.opt_string(&rf, "cron", &rw),
            concurrency: rf.get("concurrency").and_then(|c| d.unsigned(c, &Field("concurrency", &rw))),
            sse: d.opt_string(&rf, "sse", &rw),
            kms_key_id: d.opt_string(&rf, "kms_key_id", &rw),
            deletes: d.opt_string(&rf, "deletes", &rw),
        })
    });
    let backup = f.get("backup").and_then(|n| super::backup::decode(d, n, kind_hint, &what));
    Some(RawDatastore {
        pos: node.pos,
        backup,
        tier: d.opt_string(&f, "tier", &what),
        endpoint: d.opt_string(&f, "endpoint", &what),
        region: d.opt_string(&f, "region", &what),
        cluster: d.opt_string(&f, "cluster", &what),
        drills: decode_drills(d, f.get("drills"), &what),
        name,
        kind,
        primary,
        replicas,
        failover,
        replication,
    })
}

fn decode_member(d: &mut Decoder, node: &Node, what: What, keys: &[&str]) -> Option<RawMember> {
    let f = d.fields(node, what, keys)?;
    let fence = f.get("fence").map(|n| decode_fence(d, n, what)).unwrap_or((None, None));
    Some(RawMember {
        pos: node.pos,
        zone: d.req_string(&f, "zone", what),
        url: d.opt_string(&f, "url", what),
        bucket: d.opt_string(&f, "bucket", what),
        instance: d.opt_string(&f, "instance", what),
        endpoint: d.opt_string(&f, "endpoint", what),
        region: d.opt_string(&f, "region", what),
        fence: fence.0,
        fence_check: fence.1,
        reprotect: f.get("reprotect").and_then(|n| {
            let rw = Field("reprotect", what);
            let rf = d.fields(n, &rw, &["command"])?;
            let cn = d.required(&rf, "command", &rw)?;
            decode_command(d, cn, "command", &rw)
        }),
    })
}

/// `fence: { command: [...], check: [...] }`: both, each a program and its arguments.
/// A command as written: a program and its arguments, with their positions.
pub type RawCommand = Spanned<Vec<S>>;

fn decode_fence(d: &mut Decoder, n: &Node, what: What) -> (Option<RawCommand>, Option<RawCommand>) {
    let fw = Field("fence", what);
    let Some(ff) = d.fields(n, &fw, &["command", "check"]) else { return (None, None) };
    let command = d.required(&ff, "command", &fw).and_then(|cn| decode_command(d, cn, "command", &fw));
    let check = ff.get("check").and_then(|cn| decode_command(d, cn, "check", &fw));
    (command, check)
}

/// A command (`command: [prog, arg...]`, a fence's `check`): a program and
/// its arguments, run without a shell; an empty list is an error.
fn decode_command(d: &mut Decoder, cn: &Node, field: &str, owner: What) -> Option<Spanned<Vec<S>>> {
    let argv = d.string_list(Some(cn), &Field(field, owner));
    if argv.is_empty() {
        d.diags
            .error(Code::BadValue, cn.pos, format!("{owner}: `{field}` is empty"))
            .with_hint(format!("name a program and its arguments: {field}: [\"prog\", \"arg\"]"));
        return None;
    }
    Some(Spanned::new(argv, cn.pos))
}

/// `drills: { every: 30d }`.
fn decode_drills(d: &mut Decoder, node: Option<&Node>, owner: What) -> Option<Spanned<Duration>> {
    let node = node?;
    let what = Of("the drills", owner);
    let f = d.fields(node, &what, &["every"])?;
    let every = d.opt_duration(&f, "every", &what);
    // A misspelt key is reported as such; an empty mapping says nothing.
    let empty = matches!(&node.value, crate::yaml::Value::Map(m) if m.is_empty());
    if every.is_none() && empty {
        d.diags
            .error(Code::MissingKey, node.pos, format!("{what} has no `every`"))
            .with_hint("write `drills: { every: 30d }`: how old the last drill may be");
    }
    every
}

fn decode_failover(d: &mut Decoder, node: &Node, owner: What, keys: &[&str]) -> Option<RawFailover> {
    let what = Of("the failover", owner);
    let f: Fields = d.fields(node, &what, keys)?;
    Some(RawFailover {
        pos: node.pos,
        estimate: d.opt_duration(&f, "estimate", &what),
        max_lag: d.opt_duration(&f, "max_lag", &what),
        catch_up: d.opt_duration(&f, "catch_up", &what),
        runbook: d.opt_string(&f, "runbook", &what),
        on_failure: crate::runbook::decode_on_failure(d, &f, &what),
    })
}

fn decode_service(d: &mut Decoder, node: &Node) -> Option<RawService> {
    let keys = ["name", "tier", "zones", "depends_on", "health", "route", "failover", "drills"];
    let what = Named("service", node.peek("name"));
    let f = d.fields(node, &what, &keys)?;
    let name = d.req_string(&f, "name", &"a service");
    let zones = f.get("zones").map(|z| d.string_list(Some(z), &Field("zones", &what)));
    let depends_on = d.string_list(f.get("depends_on"), &Field("depends_on", &what));
    let health = f.get("health").and_then(|n| {
        let hw = Of("the health check", &what);
        let hf = d.fields(n, &hw, &["url", "zones", "timeout"])?;
        let mut zones = Vec::new();
        if let Some(zn) = hf.get("zones") {
            if let Some(per) = d.fields(zn, &Field("zones", &hw), &[]) {
                for (zone, zone_pos, value) in per.entries_at() {
                    if let Some(v) = d.string(value, &Named("the health URL of zone", Some(zone))) {
                        zones.push((Spanned::new(zone.to_string(), zone_pos), v));
                    }
                }
            }
        }
        let url = if hf.get("zones").is_some() { d.opt_string(&hf, "url", &hw) } else { d.req_string(&hf, "url", &hw) };
        Some(RawHealth { pos: n.pos, url, zones, timeout: d.opt_duration(&hf, "timeout", &hw) })
    });
    let route = f.get("route").and_then(|n| {
        let rw = Of("the route", &what);
        let rf = d.fields(n, &rw, &["kind", "zone_id", "name", "type", "ttl", "server", "records"])?;
        let mut records = Vec::new();
        if let Some(rn) = rf.get("records") {
            if let Some(recs) = d.fields(rn, &Field("records", &rw), &[]) {
                for (zone, zone_pos, value) in recs.entries_at() {
                    if let Some(v) = d.string(value, &Named("the record of zone", Some(zone))) {
                        records.push((Spanned::new(zone.to_string(), zone_pos), v));
                    }
                }
            }
        }
        Some(RawRoute {
            pos: n.pos,
            kind: d.req_string(&rf, "kind", &rw),
            zone_id: d.opt_string(&rf, "zone_id", &rw),
            name: d.req_string(&rf, "name", &rw),
            record_type: d.opt_string(&rf, "type", &rw),
            ttl: rf.get("ttl").and_then(|t| d.unsigned(t, &Field("ttl", &rw))),
            server: d.opt_string(&rf, "server", &rw),
            records,
        })
    });
    let failover = f.get("failover").and_then(|n| decode_failover(d, n, &what, &["estimate", "runbook", "on_failure"]));
    Some(RawService {
        pos: node.pos,
        tier: d.opt_string(&f, "tier", &what),
        name,
        zones,
        depends_on,
        health,
        route,
        failover,
        drills: decode_drills(d, f.get("drills"), &what),
    })
}
