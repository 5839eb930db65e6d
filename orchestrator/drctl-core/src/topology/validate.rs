//! Raw topology → checked [`Topology`], enforcing every rule of docs/reference/topology.md and
//! reporting every violation at once.

use super::raw::{self, RawDatastore, RawFailover, RawMember, RawService, RawTopology};
use super::*;
use crate::decode::Decoder;
use crate::diag::{did_you_mean, Code, Diagnostics};
use crate::runbook;
use crate::yaml;
use petgraph::graph::{DiGraph, NodeIndex};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

/// Reads and checks a topology file.
pub fn load(path: &Path) -> Loaded {
    match yaml::read_file(path) {
        Ok(src) => load_str(&src, path),
        Err(err) => {
            let mut diags = Diagnostics::new(path);
            diags
                .error(Code::Io, Pos::new(1, 1), format!("cannot read the topology: {err}"))
                .with_hint("pass the file with -f PATH, or run `drctl lab up` to write a lab topology");
            Loaded { topology: None, diagnostics: diags.into_sorted() }
        }
    }
}

/// Checks a topology given as text; `path` names it in diagnostics and
/// anchors relative runbook paths.
pub fn load_str(src: &str, path: &Path) -> Loaded {
    let mut diags = Diagnostics::new(path);
    // Entities are decoded as the parser completes each one; the rest of
    // the file (a few small sections) is decoded from the tree afterwards.
    let mut streamed = RawTopology::default();
    let parsed = {
        let mut decoder = Decoder::new(&mut diags);
        yaml::parse_streaming(src, raw::STREAMED_SECTIONS, &mut |section, node| {
            raw::decode_item(&mut decoder, &mut streamed, section, &node)
        })
    };
    let root = match parsed {
        Ok(root) => root,
        Err(e) => {
            let d = diags.error(Code::Syntax, e.pos, e.describe());
            if !e.limit {
                d.with_hint("check the indentation and the brackets near this place");
            }
            return Loaded { topology: None, diagnostics: diags.into_sorted() };
        }
    };
    let mut raw = raw::decode(&mut Decoder::new(&mut diags), &root);
    raw.datastores.append(&mut streamed.datastores);
    raw.services.append(&mut streamed.services);
    let topology = Validator { diags: &mut diags, path }.run(raw);
    // Otherwise valid, and nothing to fail over: said, not accepted.
    if !diags.has_errors() && topology.as_ref().is_some_and(|t| t.entities.is_empty()) {
        diags
            .error(Code::MissingKey, Pos::new(1, 1), "the topology declares no datastores and no services")
            .with_hint("add the `datastores:` and `services:` drctl fails over (see `drctl schema`)");
    }
    let topology = if diags.has_errors() { None } else { topology };
    Loaded { topology, diagnostics: diags.into_sorted() }
}

/// A description for messages (`datastore `orders-db``), written out only
/// when a message is: formatting one per entity and per dependency up front
/// was a tenth of validating a large topology.
#[derive(Clone, Copy)]
struct Desc<'a>(&'static str, &'a dyn std::fmt::Display, &'static str);

impl std::fmt::Display for Desc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.0, self.1, self.2)
    }
}

/// The largest TTL a DNS record can carry.
const MAX_TTL: u64 = 2_147_483_647;

/// Checks a cron expression (5 fields, or 6–7 with seconds first) and
/// returns it in the 6/7-field form the `cron` crate reads.
///
/// Weekdays are numbered as in Unix cron everywhere (0 or 7 = Sunday,
/// 1 = Monday; names work too). The `cron` crate numbers them from 1 =
/// Sunday, so `0 3 * * 1` would silently run on Sundays: the weekday
/// field is translated here.
pub fn cron_schedule(expr: &str) -> Result<(String, cron::Schedule), String> {
    let mut fields: Vec<String> = expr.split_whitespace().map(str::to_string).collect();
    match fields.len() {
        5 => fields.insert(0, "0".into()),
        6 | 7 => {}
        n => return Err(format!("a cron expression has 5 fields (minute hour day month weekday), not {n}")),
    }
    fields[5] = unix_weekdays_to_crate(&fields[5])?;
    let full = fields.join(" ");
    use std::str::FromStr;
    cron::Schedule::from_str(&full).map(|s| (full, s)).map_err(|e| format!("not a valid cron expression: {e}"))
}

/// Translates a weekday field from Unix numbering (0–7, Sunday = 0 or 7)
/// to the `cron` crate's (1–7, Sunday = 1). Names and `*` pass unchanged.
fn unix_weekdays_to_crate(field: &str) -> Result<String, String> {
    let day = |s: &str| -> Result<Option<u32>, String> {
        match s.parse::<u32>() {
            Ok(n) if n <= 7 => Ok(Some(n % 7 + 1)),
            Ok(n) => Err(format!("weekday {n} is not 0-7 (0 or 7 = Sunday)")),
            Err(_) => Ok(None),
        }
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let step_suffix = step.map(|s| format!("/{s}")).unwrap_or_default();
        if let Some((a, b)) = range.split_once('-') {
            match (day(a)?, day(b)?) {
                (Some(x), Some(y)) if x <= y => out.push(format!("{x}-{y}{step_suffix}")),
                // A range that ends on Sunday as 7 wraps in the crate's numbering.
                (Some(x), Some(y)) if step.is_none() => {
                    out.push(format!("{x}-7"));
                    out.push(format!("1-{y}"));
                }
                (Some(_), Some(_)) => {
                    return Err(format!("weekday range `{range}` with a step is not supported; list the days"))
                }
                _ => out.push(item.to_string()),
            }
        } else {
            match day(range)? {
                Some(x) => out.push(format!("{x}{step_suffix}")),
                None => out.push(item.to_string()),
            }
        }
    }
    Ok(out.join(","))
}

struct Validator<'a> {
    diags: &'a mut Diagnostics,
    path: &'a Path,
}

/// What validation needs to remember about an entity beyond the checked type.
struct Pending {
    deps: Vec<(EntityId, Pos)>,
    own: Objective,
    is_service: bool,
}

impl Validator<'_> {
    fn run(&mut self, raw: RawTopology) -> Option<Topology> {
        match &raw.version {
            Some(v) if v.value == 1 => {}
            Some(v) => {
                self.diags
                    .error(Code::BadValue, v.pos, format!("version {} is not supported", v.value))
                    .with_hint("this drctl reads `version: 1`");
            }
            None => {}
        }
        let zones = self.zones(&raw);
        let tiers = self.tiers(&raw);
        let zone_names: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
        let tier_names: Vec<&str> = tiers.iter().map(|t| t.name.as_str()).collect();

        // Names first, so that references can be resolved in any order.
        let mut by_name: HashMap<String, EntityId> = HashMap::new();
        let mut first_pos: Vec<Pos> = Vec::new();
        let named =
            raw.datastores.iter().map(|d| (&d.name, d.pos)).chain(raw.services.iter().map(|s| (&s.name, s.pos)));
        let mut ids: Vec<Option<EntityId>> = Vec::new();
        for (name, pos) in named {
            let Some(name) = name else {
                ids.push(None);
                continue;
            };
            self.check_name(&name.value, name.pos);
            if let Some(&prev) = by_name.get(&name.value) {
                let line = first_pos[prev].line;
                self.diags.error(Code::Duplicate, name.pos, format!("`{}` is declared twice", name.value)).with_hint(
                    format!(
                        "datastores and services share one namespace; the first `{}` is on line {line}",
                        name.value
                    ),
                );
                ids.push(None);
                continue;
            }
            by_name.insert(name.value.clone(), first_pos.len());
            ids.push(Some(first_pos.len()));
            first_pos.push(pos);
        }

        let mut entities: Vec<Entity> = Vec::with_capacity(first_pos.len());
        let mut pending: Vec<Pending> = Vec::with_capacity(first_pos.len());
        let mut regions: Vec<&str> = Vec::new();
        let mut region_set: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for z in &zones {
            if region_set.insert(z.region.as_str()) {
                regions.push(&z.region);
            }
        }
        let zone_index: HashMap<&str, usize> = zone_names.iter().enumerate().map(|(i, z)| (*z, i)).collect();
        let ctx = RefCtx {
            zones: &zone_names,
            zone_index: &zone_index,
            regions: &regions,
            region_set: &region_set,
            tiers: &tier_names,
            tier_defs: &tiers,
            by_name: &by_name,
        };
        let n_ds = raw.datastores.len();
        for (i, ds) in raw.datastores.iter().enumerate() {
            if ids[i].is_none() {
                continue;
            }
            if let Some((e, p)) = self.datastore(ds, &ctx) {
                entities.push(e);
                pending.push(p);
            }
        }
        for (i, svc) in raw.services.iter().enumerate() {
            if ids[n_ds + i].is_none() {
                continue;
            }
            if let Some((e, p)) = self.service(svc, &ctx) {
                entities.push(e);
                pending.push(p);
            }
        }
        // An entity that failed to decode leaves the ids out of step; later
        // stages need them dense, and errors already stop the load.
        if entities.len() != by_name.len() {
            return None;
        }

        let contracts = self.contracts(&raw, &by_name);
        for c in &contracts {
            for &e in &c.entities {
                pending[e].own = pending[e].own.tighten(c.objective);
            }
        }
        let order = self.acyclic_order(&entities, &pending)?;
        derive_targets(&mut entities, &pending, &order);
        let order: Vec<EntityId> = order.into_iter().rev().collect();
        self.check_runbook_references(&entities, &by_name);
        let drills = self.drills(&raw);
        let erasure = raw.erasure.as_ref().and_then(|r| {
            let lookup = |id: EntityId| match &entities.get(id)?.spec {
                EntitySpec::Datastore(d) => Some((entities[id].name.clone(), d.clone())),
                EntitySpec::Service(_) => None,
            };
            let checked = super::erasure::check(self.diags, r, &by_name, &lookup)?;
            super::erasure::warn_retention(self.diags, r, &checked, &lookup);
            Some(checked)
        });

        Some(Topology {
            name: raw.name.map(|n| n.value).unwrap_or_else(|| "drctl".into()),
            file: self.path.to_path_buf(),
            zones,
            tiers,
            contracts,
            entities,
            drills,
            erasure,
            order,
            by_name,
        })
    }

    fn check_name(&mut self, name: &str, pos: Pos) {
        let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            self.diags
                .error(Code::BadValue, pos, format!("`{name}` is not a valid name"))
                .with_hint("use letters, digits, `-`, `_` and `.` (step ids are `<name>/<step>`)");
        }
    }

    fn zones(&mut self, raw: &RawTopology) -> Vec<Zone> {
        let mut zones: Vec<Zone> = Vec::new();
        // A set, not a scan: a topology of 100,000 zones validates in linear time.
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for z in &raw.zones {
            if !seen.insert(z.name.value.as_str()) {
                self.diags.error(Code::Duplicate, z.name.pos, format!("zone `{}` is declared twice", z.name.value));
                continue;
            }
            self.check_name(&z.name.value, z.name.pos);
            let aws_zone = z.aws_zone.as_ref().map_or_else(|| z.name.value.clone(), |a| a.value.clone());
            let region = match &z.region {
                Some(r) => r.value.clone(),
                None => region_of_aws_zone(&aws_zone).unwrap_or_else(|| "default".into()),
            };
            zones.push(Zone { name: z.name.value.clone(), region, aws_zone });
        }
        // Said alone: a file with other mistakes gets those first.
        if zones.is_empty() && (!self.diags.has_errors() || !raw.datastores.is_empty() || !raw.services.is_empty()) {
            self.diags
                .error(Code::MissingKey, Pos::new(1, 1), "the topology declares no zones")
                .with_hint("add `zones:` with at least two failure domains, in failover preference order");
        }
        zones
    }

    fn tiers(&mut self, raw: &RawTopology) -> Vec<Tier> {
        raw.objectives
            .iter()
            .map(|o| {
                if o.rpo.is_none() && o.rto.is_none() {
                    self.diags.warning(
                        Code::Suspicious,
                        o.tier.pos,
                        format!("tier `{}` sets neither rpo nor rto", o.tier.value),
                    );
                }
                Tier {
                    name: o.tier.value.clone(),
                    objective: Objective { rpo: o.rpo.as_ref().map(|d| d.value), rto: o.rto.as_ref().map(|d| d.value) },
                    restore: o.restore.as_ref().map(|r| r.objective()).unwrap_or_default(),
                    drills_every: o.drills.as_ref().map(|d| d.value),
                }
            })
            .collect()
    }

    /// A zone reference: found by its name's index; the scan (for "did
    /// you mean") only for a name that is not there.
    fn zone_ref(&mut self, value: &raw::S, ctx: &RefCtx, hint_tail: &str) -> Option<usize> {
        if let Some(i) = ctx.zone_index.get(value.value.as_str()) {
            return Some(*i);
        }
        self.reference("zone", value, ctx.zones, hint_tail)
    }

    fn reference(&mut self, what: &str, value: &raw::S, known: &[&str], hint_tail: &str) -> Option<usize> {
        if let Some(i) = known.iter().position(|k| *k == value.value) {
            return Some(i);
        }
        let hint = match self.diags.suggest(&value.value, known.iter().copied()) {
            Some(near) => format!("did you mean `{near}`?"),
            None if known.is_empty() => hint_tail.to_string(),
            None => format!("{hint_tail} (declared: {})", crate::diag::abbreviated(known)),
        };
        self.diags
            .error(Code::UnknownReference, value.pos, format!("{what} `{}` is not declared", value.value))
            .with_hint(hint);
        None
    }

    fn entity_ref(
        &mut self,
        what: impl std::fmt::Display,
        value: &raw::S,
        by_name: &HashMap<String, EntityId>,
    ) -> Option<EntityId> {
        if let Some(&id) = by_name.get(&value.value) {
            return Some(id);
        }
        let hint = match self.diags.suggest(&value.value, by_name.keys().map(String::as_str)) {
            Some(near) => format!("did you mean `{near}`?"),
            None => "declare it under `datastores:` or `services:`".to_string(),
        };
        self.diags
            .error(Code::UnknownReference, value.pos, format!("{what} `{}` is not declared", value.value))
            .with_hint(hint);
        None
    }

    fn tier_ref(&mut self, tier: &Option<raw::S>, ctx: &RefCtx) -> Option<TierId> {
        let t = tier.as_ref()?;
        self.reference("tier", t, ctx.tiers, "declare it under `objectives:`")
    }

    fn failover(&mut self, raw: Option<&RawFailover>, default: Duration, owner: impl std::fmt::Display) -> Failover {
        let Some(f) = raw else {
            return Failover { estimate: default, max_lag: None, catch_up: None, runbook: None, on_failure: None };
        };
        let runbook = f.runbook.as_ref().and_then(|r| {
            let path = self.path.parent().unwrap_or(Path::new(".")).join(&r.value);
            match runbook::load(&path) {
                Ok(rb) => {
                    self.diags.extend(rb.warnings.clone());
                    Some(Arc::new(rb))
                }
                Err(runbook::LoadError::Read(err)) => {
                    self.diags
                        .error(
                            Code::Io,
                            r.pos,
                            format!("cannot read the runbook of {owner} ({}): {err}", path.display()),
                        )
                        .with_hint("runbook paths are relative to the topology file's folder");
                    None
                }
                Err(runbook::LoadError::Invalid(diags)) => {
                    self.diags.extend(diags);
                    None
                }
            }
        });
        if let (Some(_), Some(e)) = (&runbook, &f.estimate) {
            self.diags
                .warning(Code::Suspicious, e.pos, format!("the estimate of {owner} is not used: it has a runbook"))
                .with_hint("put `estimate:` on the runbook's steps instead");
        }
        if let Some(e) = &f.estimate {
            if e.value.is_zero() {
                self.diags.warning(Code::Suspicious, e.pos, format!("{owner} is estimated to fail over in no time"));
            }
        }
        Failover {
            estimate: f.estimate.as_ref().map_or(default, |e| e.value),
            max_lag: f.max_lag.as_ref().map(|m| m.value),
            catch_up: f.catch_up.as_ref().map(|m| m.value),
            runbook,
            on_failure: f.on_failure,
        }
    }

    fn member(
        &mut self,
        m: &RawMember,
        kind: DatastoreKind,
        ds: &RawDatastore,
        ctx: &RefCtx,
        what: impl std::fmt::Display,
    ) -> Option<Member> {
        let zone = m.zone.as_ref().and_then(|z| self.zone_ref(z, ctx, "declare it under `zones:`"));
        let location = match kind {
            DatastoreKind::Postgres => {
                let Some(url) = &m.url else {
                    self.diags
                        .error(Code::MissingKey, m.pos, format!("{what} has no `url`"))
                        .with_hint("add `url: \"postgres://user@host:port/db\"`");
                    return None;
                };
                if !(url.value.starts_with("postgres://") || url.value.starts_with("postgresql://")) {
                    self.diags
                        .error(
                            Code::BadValue,
                            url.pos,
                            format!("`{}` is not a PostgreSQL URL", crate::redact::url(&url.value)),
                        )
                        .with_hint("write it as postgres://user@host:port/db");
                }
                if let Some(problem) = crate::pgurl::tls_problem(&url.value) {
                    self.diags.error(Code::BadValue, url.pos, problem).with_hint(
                        "sslmode: disable, allow, prefer (the default), require, verify-ca or verify-full; the last two need sslrootcert=PATH",
                    );
                }
                let argv = |c: &Option<crate::decode::Spanned<Vec<raw::S>>>| {
                    c.as_ref().map(|f| f.value.iter().map(|a| a.value.clone()).collect())
                };
                Location::Postgres {
                    url: url.value.clone(),
                    fence: argv(&m.fence),
                    fence_check: argv(&m.fence_check),
                    reprotect: argv(&m.reprotect),
                }
            }
            DatastoreKind::S3 => {
                let Some(bucket) = &m.bucket else {
                    self.diags
                        .error(Code::MissingKey, m.pos, format!("{what} has no `bucket`"))
                        .with_hint("add `bucket: NAME`");
                    return None;
                };
                if let Err(why) = check_bucket_name(&bucket.value) {
                    self.diags.error(Code::BadValue, bucket.pos, format!("bucket `{}`: {why}", bucket.value));
                }
                let endpoint = m.endpoint.as_ref().or(ds.endpoint.as_ref()).map(|e| e.value.clone());
                if let Some(e) = m.endpoint.as_ref().or(ds.endpoint.as_ref()) {
                    if !(e.value.starts_with("http://") || e.value.starts_with("https://")) {
                        self.diags
                            .error(Code::BadValue, e.pos, format!("endpoint `{}` is not an http(s) URL", e.value))
                            .with_hint("write it as http://host:port or https://host");
                    }
                }
                let region = m.region.as_ref().or(ds.region.as_ref()).map(|r| r.value.clone());
                Location::S3 { bucket: bucket.value.clone(), endpoint, region }
            }
            DatastoreKind::RdsInstance => {
                let Some(instance) = &m.instance else {
                    self.diags
                        .error(Code::MissingKey, m.pos, format!("{what} has no `instance`"))
                        .with_hint("add `instance: DB_INSTANCE_IDENTIFIER`");
                    return None;
                };
                Location::RdsInstance { instance: instance.value.clone() }
            }
            DatastoreKind::RdsCluster => return None,
        };
        Some(Member { zone: zone?, location })
    }

    fn datastore(&mut self, ds: &RawDatastore, ctx: &RefCtx) -> Option<(Entity, Pending)> {
        let name = ds.name.as_ref()?;
        let what = Desc("datastore `", &name.value, "`");
        let kind = DatastoreKind::parse(&ds.kind.as_ref()?.value)?;
        let tier = self.tier_ref(&ds.tier, ctx);
        let (primary, replicas) = self.datastore_members(ds, kind, ctx, name, what);
        if let Some(region) = ds.region.as_ref().filter(|r| !ctx.region_set.contains(r.value.as_str())) {
            self.reference("region", region, ctx.regions, "regions come from the zones' `region`");
        }
        let replication = ds.replication.as_ref().and_then(|r| self.replication(r, kind, what));
        let backup = ds.backup.as_ref().and_then(|b| {
            super::backup::check(
                self.diags,
                b,
                kind,
                primary.as_ref().map(|p: &Member| p.zone),
                ctx.zones,
                ctx.zone_index,
                &what,
            )
        });
        let failover = self.failover(ds.failover.as_ref(), kind.default_estimate(), what);
        let own = tier.map(|t| ctx.tier_defs[t].objective).unwrap_or_default();
        let entity = Entity {
            name: name.value.clone(),
            pos: ds.pos,
            tier,
            effective_tier: tier,
            targets: own,
            depends_on: Vec::new(),
            failover,
            drills_every: ds.drills.as_ref().map(|d| d.value),
            spec: EntitySpec::Datastore(Datastore {
                kind,
                primary,
                replicas,
                cluster: ds.cluster.as_ref().map(|c| c.value.clone()),
                region: ds.region.as_ref().map(|r| r.value.clone()),
                replication,
                backup,
            }),
        };
        Some((entity, Pending { deps: Vec::new(), own, is_service: false }))
    }

    /// A datastore's primary and replicas, no replica in the primary's
    /// zone; an RDS cluster names only its `cluster` (its members are
    /// discovered).
    fn datastore_members(
        &mut self,
        ds: &RawDatastore,
        kind: DatastoreKind,
        ctx: &RefCtx,
        name: &raw::S,
        what: Desc,
    ) -> (Option<Member>, Vec<Member>) {
        let mut primary = None;
        let mut replicas = Vec::new();
        if kind == DatastoreKind::RdsCluster {
            if ds.cluster.is_none() {
                self.diags
                    .error(Code::MissingKey, ds.pos, format!("{what} has no `cluster`"))
                    .with_hint("add `cluster: DB_CLUSTER_IDENTIFIER`; its members and their zones are discovered");
            }
        } else {
            match &ds.primary {
                None => {
                    self.diags
                        .error(Code::MissingKey, ds.pos, format!("{what} has no `primary`"))
                        .with_hint("add `primary: { zone: ZONE, ... }`");
                }
                Some(p) => primary = self.member(p, kind, ds, ctx, Desc("the primary of ", &what, "")),
            }
            for r in &ds.replicas {
                if let Some(m) = self.member(r, kind, ds, ctx, Desc("a replica of ", &what, "")) {
                    if primary.as_ref().is_some_and(|p: &Member| p.zone == m.zone) {
                        self.diags
                            .error(
                                Code::BadValue,
                                r.zone.as_ref().map_or(r.pos, |z| z.pos),
                                format!("a replica of {what} is in its primary's zone `{}`", ctx.zones[m.zone]),
                            )
                            .with_hint("a replica must be in another zone to survive the loss of the primary's");
                    }
                    replicas.push(m);
                }
            }
            if ds.replicas.is_empty() && ds.primary.is_some() {
                self.diags
                    .warning(Code::NoReplica, name.pos, format!("{what} has no replica: it cannot fail over"))
                    .with_hint("add `replicas:` in other zones");
            }
        }
        (primary, replicas)
    }

    /// `replication:` of an S3 datastore (it applies to no other kind):
    /// who copies, when, and how.
    fn replication(&mut self, r: &raw::RawReplication, kind: DatastoreKind, what: Desc) -> Option<Replication> {
        if kind != DatastoreKind::S3 {
            self.diags
                .error(Code::UnknownKey, r.pos, format!("{what} is not an s3 datastore: `replication` does not apply"))
                .with_hint("PostgreSQL and RDS replicate by themselves; drctl measures their lag");
            return None;
        }
        let by = match r.by.as_ref() {
            Some(b) if b.value == "drctl" => ReplicationBy::Drctl,
            Some(b) if b.value == "s3" => ReplicationBy::S3,
            Some(b) => {
                self.diags
                    .error(Code::BadValue, b.pos, format!("`by: {}` is not known", b.value))
                    .with_hint("`by: drctl` (drctl copies) or `by: s3` (native replication, monitored)");
                return None;
            }
            None => return None,
        };
        let schedule = self.replication_schedule(r, &by, what);
        let sse = r.sse.as_ref().and_then(|s| {
            if s.value == "AES256" || s.value == "aws:kms" {
                Some(s.value.clone())
            } else {
                self.diags
                    .error(Code::BadValue, s.pos, format!("`sse: {}` is not known", s.value))
                    .with_hint("`AES256` or `aws:kms`");
                None
            }
        });
        if let (Some(k), false) = (&r.kms_key_id, sse.as_deref() == Some("aws:kms")) {
            self.diags
                .error(Code::BadValue, k.pos, "`kms_key_id` needs `sse: aws:kms`")
                .with_hint("add `sse: aws:kms`");
        }
        let concurrency = match &r.concurrency {
            Some(c) if c.value == 0 || c.value > 1024 => {
                self.diags.error(Code::BadValue, c.pos, "`concurrency` must be between 1 and 1024");
                16
            }
            Some(c) => c.value as usize,
            None => 16,
        };
        let deletes_replicate = self.deletes_replicate(r);
        Some(Replication {
            by,
            schedule,
            concurrency,
            sse,
            kms_key_id: r.kms_key_id.as_ref().map(|k| k.value.clone()),
            deletes_replicate,
        })
    }

    /// When the replication runs: `every` or `cron`, one of them, and one
    /// of them required when drctl does the copying.
    fn replication_schedule(&mut self, r: &raw::RawReplication, by: &ReplicationBy, what: Desc) -> Option<Schedule> {
        match (&r.every, &r.cron) {
            (Some(_), Some(c)) => {
                self.diags
                    .error(Code::BadValue, c.pos, "give either `every` or `cron`, not both")
                    .with_hint("remove one of them");
                None
            }
            (Some(e), None) => {
                if e.value.is_zero() {
                    self.diags.error(Code::BadValue, e.pos, "`every` must be longer than zero");
                }
                Some(Schedule::Every(e.value))
            }
            (None, Some(c)) => match cron_schedule(&c.value) {
                Ok((full, _)) => Some(Schedule::Cron(full)),
                Err(why) => {
                    self.diags
                        .error(Code::BadValue, c.pos, format!("cron `{}`: {why}", c.value))
                        .with_hint("for example `*/5 * * * *` runs every five minutes");
                    None
                }
            },
            (None, None) => {
                if *by == ReplicationBy::Drctl {
                    self.diags
                        .error(Code::MissingKey, r.pos, format!("the replication of {what} has no schedule"))
                        .with_hint("add `every: 10s` or `cron: \"*/5 * * * *\"`");
                }
                None
            }
        }
    }

    /// `deletes:`: whether a delete on the primary reaches the replicas
    /// (`replicate`, the default) or not (`keep`).
    fn deletes_replicate(&mut self, r: &raw::RawReplication) -> bool {
        match &r.deletes {
            None => true,
            Some(v) if v.value == "replicate" => true,
            Some(v) if v.value == "keep" => false,
            Some(v) => {
                self.diags
                    .error(Code::BadValue, v.pos, format!("`deletes: {}` is not known", v.value))
                    .with_hint("`replicate` (a delete on the primary reaches the replicas) or `keep`");
                true
            }
        }
    }

    fn service(&mut self, svc: &RawService, ctx: &RefCtx) -> Option<(Entity, Pending)> {
        let name = svc.name.as_ref()?;
        let what = Desc("service `", &name.value, "`");
        let tier = self.tier_ref(&svc.tier, ctx);
        // Sets, not scans: one service listing every one of 100,000 zones
        // (or entities) is still checked in linear time.
        let mut zones: Vec<ZoneId> = Vec::new();
        let mut seen: HashSet<ZoneId> = HashSet::new();
        for z in svc.zones.iter().flatten() {
            if let Some(id) = self.zone_ref(z, ctx, "declare it under `zones:`") {
                if !seen.insert(id) {
                    self.diags.error(Code::Duplicate, z.pos, format!("zone `{}` is listed twice in {what}", z.value));
                } else {
                    zones.push(id);
                }
            }
        }
        zones.sort_unstable();
        let mut deps: Vec<(EntityId, Pos)> = Vec::new();
        let mut seen: HashSet<EntityId> = HashSet::new();
        for d in &svc.depends_on {
            if let Some(id) = self.entity_ref(Desc("`depends_on` of ", &what, ":"), d, ctx.by_name) {
                if !seen.insert(id) {
                    self.diags.error(
                        Code::Duplicate,
                        d.pos,
                        format!("`{}` is listed twice in `depends_on` of {what}", d.value),
                    );
                } else {
                    deps.push((id, d.pos));
                }
            }
        }
        let health = svc.health.as_ref().and_then(|h| {
            let mut http_url = |url: &raw::S| {
                if !(url.value.starts_with("http://") || url.value.starts_with("https://")) {
                    self.diags
                        .error(Code::BadValue, url.pos, format!("health url `{}` is not an http(s) URL", url.value))
                        .with_hint("write it as http://host:port/path");
                }
                url.value.clone()
            };
            let url = h.url.as_ref().map(&mut http_url);
            let checked: Vec<(&raw::S, String)> = h.zones.iter().map(|(z, u)| (z, http_url(u))).collect();
            let mut per_zone = Vec::new();
            for (zone, url) in checked {
                if let Some(z) = self.zone_ref(zone, ctx, "the health check's `zones` are keyed by zone") {
                    if !zones.is_empty() && zones.binary_search(&z).is_err() {
                        self.diags.warning(
                            Code::Suspicious,
                            zone.pos,
                            format!("{what} has a health URL for zone `{}`, where it does not run", zone.value),
                        );
                    }
                    per_zone.push((z, url));
                }
            }
            per_zone.sort_by_key(|(z, _)| *z);
            if url.is_none() && per_zone.is_empty() {
                if h.zones.is_empty() {
                    self.diags
                        .error(Code::MissingKey, h.pos, format!("the health check of {what} has no URL"))
                        .with_hint("add `url: URL`, or `zones: { ZONE: URL, ... }` with one URL per zone");
                }
                return None;
            }
            Some(Health {
                url,
                zones: per_zone,
                timeout: h.timeout.as_ref().map_or(Duration::from_secs(5), |t| t.value),
            })
        });
        let route = svc.route.as_ref().and_then(|r| {
            let kind_s = r.kind.as_ref()?;
            let kind = match kind_s.value.as_str() {
                "route53" => RouteKind::Route53,
                "lab-dns" => RouteKind::LabDns,
                other => {
                    let hint = match did_you_mean(other, ["route53", "lab-dns"]) {
                        Some(n) => format!("did you mean `{n}`?"),
                        None => "`route53` or `lab-dns`".to_string(),
                    };
                    self.diags
                        .error(Code::BadValue, kind_s.pos, format!("route kind `{other}` is not known"))
                        .with_hint(hint);
                    return None;
                }
            };
            if kind == RouteKind::Route53 && r.zone_id.is_none() {
                self.diags
                    .error(Code::MissingKey, r.pos, format!("the route53 route of {what} has no `zone_id`"))
                    .with_hint("add `zone_id: HOSTED_ZONE_ID`");
            }
            if kind == RouteKind::LabDns && r.server.is_none() {
                self.diags
                    .error(Code::MissingKey, r.pos, format!("the lab-dns route of {what} has no `server`"))
                    .with_hint("add `server: \"127.0.0.1:PORT\"`: the DNS server that takes the update");
            }
            let mut records = Vec::new();
            for (zone, value) in &r.records {
                if let Some(z) = self.zone_ref(zone, ctx, "`records` are keyed by zone") {
                    if !zones.is_empty() && zones.binary_search(&z).is_err() {
                        self.diags.warning(
                            Code::Suspicious,
                            zone.pos,
                            format!("{what} has a record for zone `{}`, where it does not run", zone.value),
                        );
                    }
                    records.push((z, value.value.clone()));
                }
            }
            if r.records.is_empty() {
                self.diags
                    .error(Code::MissingKey, r.pos, format!("the route of {what} has no `records`"))
                    .with_hint("add `records: { ZONE: ADDRESS, ... }`: the answer per zone");
            }
            records.sort_by_key(|(z, _)| *z);
            // Route53 and DNS hold a TTL in 31 bits (RFC 2181).
            if let Some(t) = r.ttl.as_ref().filter(|t| t.value > MAX_TTL) {
                self.diags
                    .error(Code::BadValue, t.pos, format!("`ttl` {} of {what} is over {MAX_TTL} seconds", t.value))
                    .with_hint("a DNS TTL is at most 2147483647; failover records usually use 60 or less");
            }
            Some(Route {
                kind,
                zone_id: r.zone_id.as_ref().map(|z| z.value.clone()),
                name: r.name.as_ref()?.value.clone(),
                record_type: r.record_type.as_ref().map_or_else(|| "A".into(), |t| t.value.clone()),
                ttl: r.ttl.as_ref().map_or(60, |t| t.value),
                server: r.server.as_ref().map(|s| s.value.clone()),
                records,
            })
        });
        let failover = self.failover(svc.failover.as_ref(), SERVICE_DEFAULT_ESTIMATE, what);
        let own = tier.map(|t| ctx.tier_defs[t].objective).unwrap_or_default();
        let mut depends_on: Vec<EntityId> = deps.iter().map(|(d, _)| *d).collect();
        depends_on.sort_unstable();
        let entity = Entity {
            name: name.value.clone(),
            pos: svc.pos,
            tier,
            effective_tier: tier,
            targets: own,
            depends_on,
            failover,
            drills_every: svc.drills.as_ref().map(|d| d.value),
            spec: EntitySpec::Service(Service { zones, health, route }),
        };
        Some((entity, Pending { deps, own, is_service: true }))
    }

    fn contracts(&mut self, raw: &RawTopology, by_name: &HashMap<String, EntityId>) -> Vec<Contract> {
        let mut out = Vec::new();
        for c in &raw.contracts {
            let Some(customer) = &c.customer else {
                continue;
            };
            let mut entities = Vec::new();
            for s in &c.services {
                if let Some(id) = self.entity_ref(Desc("the contract of `", &customer.value, "` names"), s, by_name) {
                    entities.push(id);
                }
            }
            if c.services.is_empty() {
                self.diags
                    .error(Code::MissingKey, c.pos, format!("the contract of `{}` names no services", customer.value))
                    .with_hint("add `services: [NAME, ...]`");
            }
            if c.rpo.is_none() && c.rto.is_none() {
                self.diags.warning(
                    Code::Suspicious,
                    c.pos,
                    format!("the contract of `{}` sets neither rpo nor rto", customer.value),
                );
            }
            out.push(Contract {
                customer: customer.value.clone(),
                entities,
                objective: Objective { rpo: c.rpo.as_ref().map(|d| d.value), rto: c.rto.as_ref().map(|d| d.value) },
            });
        }
        out
    }

    /// A topological order, dependents before their dependencies (ties in
    /// reverse file order, so that reversed it reads in file order), or
    /// `None` after reporting every cycle with its path.
    fn acyclic_order(&mut self, entities: &[Entity], pending: &[Pending]) -> Option<Vec<EntityId>> {
        let n = entities.len();
        let mut dependents: Vec<Vec<EntityId>> = vec![Vec::new(); n];
        let mut missing: Vec<usize> = vec![0; n];
        for (i, p) in pending.iter().enumerate() {
            missing[i] = p.deps.len();
            for (d, _) in &p.deps {
                dependents[*d].push(i);
            }
        }
        // Kahn's algorithm, dependencies first, smallest id first.
        let mut ready: BinaryHeap<Reverse<EntityId>> = (0..n).filter(|&i| missing[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(e)) = ready.pop() {
            order.push(e);
            for &d in &dependents[e] {
                missing[d] -= 1;
                if missing[d] == 0 {
                    ready.push(Reverse(d));
                }
            }
        }
        if order.len() == n {
            order.reverse();
            return Some(order);
        }
        let mut graph: DiGraph<(), ()> = DiGraph::with_capacity(n, 0);
        for _ in entities {
            graph.add_node(());
        }
        for (i, p) in pending.iter().enumerate() {
            for (d, _) in &p.deps {
                graph.add_edge(NodeIndex::new(i), NodeIndex::new(*d), ());
            }
        }
        let mut sccs = petgraph::algo::tarjan_scc(&graph);
        sccs.iter_mut().for_each(|s| s.sort_unstable());
        sccs.sort_unstable();
        for scc in sccs {
            let start = scc[0].index();
            let self_loop = pending[start].deps.iter().any(|(d, _)| *d == start);
            if scc.len() == 1 && !self_loop {
                continue;
            }
            let members: HashSet<usize> = scc.iter().map(|n| n.index()).collect();
            let cycle = shortest_cycle(start, &members, pending);
            let path: Vec<&str> = cycle.iter().map(|&e| entities[e].name.as_str()).collect();
            let pos = pending[start].deps.iter().find(|(d, _)| *d == cycle[1]).map_or(entities[start].pos, |(_, p)| *p);
            self.diags
                .error(Code::Cycle, pos, format!("dependency cycle: {}", path.join(" -> ")))
                .with_hint("a failover must start somewhere: remove one of these `depends_on` entries");
        }
        None
    }

    fn check_runbook_references(&mut self, entities: &[Entity], by_name: &HashMap<String, EntityId>) {
        for e in entities {
            let Some(rb) = &e.failover.runbook else {
                continue;
            };
            let mut local = Diagnostics::new(&rb.file);
            for step in &rb.steps {
                for key in ["datastore", "service", "entity"] {
                    let Some(serde_json::Value::String(name)) = step.with.get(key) else {
                        continue;
                    };
                    if name.contains("{{") {
                        continue;
                    }
                    let pos = step.with_pos.get(key).copied().unwrap_or(step.pos);
                    match by_name.get(name) {
                        None => {
                            let hint = match local.suggest(name, by_name.keys().map(String::as_str)) {
                                Some(n) => format!("did you mean `{n}`?"),
                                None => "name an entity declared in the topology".into(),
                            };
                            local
                                .error(
                                    Code::UnknownReference,
                                    pos,
                                    format!("step `{}`: `{name}` is not declared in the topology", step.id),
                                )
                                .with_hint(hint);
                        }
                        Some(&id) if key == "datastore" && entities[id].is_service() => {
                            local.error(
                                Code::BadValue,
                                pos,
                                format!("step `{}`: `{name}` is a service, not a datastore", step.id),
                            );
                        }
                        Some(_) => {}
                    }
                }
            }
            self.diags.extend(local.into_sorted());
        }
    }

    fn drills(&mut self, raw: &RawTopology) -> Vec<Drill> {
        let mut out = Vec::new();
        for d in &raw.drills {
            let Some(exp) = &d.experiment else {
                continue;
            };
            let path = self.path.parent().unwrap_or(Path::new(".")).join(&exp.value);
            let mut schedule = None;
            let mut restore_test = false;
            if !path.is_file() {
                self.diags
                    .error(Code::Io, exp.pos, format!("experiment `{}` does not exist ({})", exp.value, path.display()))
                    .with_hint("experiment paths are relative to the topology file's folder");
            } else if std::fs::read_to_string(&path).is_ok_and(|src| crate::restore_test::is_restore_test(&src)) {
                // A restore test: its own mistakes, with its own file and
                // positions; its `schedule:` is its cron unless `cron:` is given here.
                restore_test = true;
                match crate::restore_test::load(&path) {
                    Ok(t) => schedule = t.schedule,
                    Err(problems) => self.diags.extend(problems),
                }
            } else if let Err(problems) = crate::chaos::load(&path) {
                // The experiment's own mistakes, with its own file and positions.
                self.diags.extend(problems);
            }
            let cron = match (&d.cron, schedule) {
                (Some(cron), _) => match cron_schedule(&cron.value) {
                    Ok((full, _)) => Some(full),
                    Err(why) => {
                        self.diags
                            .error(Code::BadValue, cron.pos, format!("cron `{}`: {why}", cron.value))
                            .with_hint("for example `0 3 * * 1` runs at 03:00 every Monday");
                        None
                    }
                },
                (None, Some(full)) => Some(full),
                (None, None) if restore_test => {
                    self.diags
                        .error(
                            Code::MissingKey,
                            d.pos,
                            format!("the restore test `{}` has no `schedule:`, and this drill no `cron:`", exp.value),
                        )
                        .with_hint("add `schedule: \"0 4 * * *\"` to the restore test, or `cron:` here");
                    None
                }
                (None, None) => {
                    self.diags
                        .error(Code::MissingKey, d.pos, "a drill has no `cron`")
                        .with_hint("add `cron:`, for example `cron: \"0 3 * * 1\"` (03:00 every Monday)");
                    None
                }
            };
            if let Some(cron) = cron {
                out.push(Drill { experiment: path, cron, restore_test });
            }
        }
        out
    }
}

struct RefCtx<'a> {
    zones: &'a [&'a str],
    /// Each zone's index by name, for references (looked up, not scanned).
    zone_index: &'a HashMap<&'a str, usize>,
    regions: &'a [&'a str],
    /// The regions, for references (looked up, not scanned).
    region_set: &'a HashSet<&'a str>,
    tiers: &'a [&'a str],
    tier_defs: &'a [Tier],
    by_name: &'a HashMap<String, EntityId>,
}

/// The shortest cycle through `start` inside one strongly connected
/// component, as a path that ends where it starts.
fn shortest_cycle(start: EntityId, members: &HashSet<usize>, pending: &[Pending]) -> Vec<EntityId> {
    let mut parent: HashMap<EntityId, EntityId> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(at) = queue.pop_front() {
        for &(next, _) in &pending[at].deps {
            if next == start {
                let mut path = vec![at];
                let mut cur = at;
                while cur != start {
                    cur = parent[&cur];
                    path.push(cur);
                }
                path.reverse();
                path.push(start);
                return path;
            }
            if members.contains(&next) && next != start && !parent.contains_key(&next) {
                parent.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    vec![start, start]
}

/// Fills in each datastore's targets and effective tier from the services
/// that depend on it, directly or not (docs/reference/topology.md). `order` has dependents first.
fn derive_targets(entities: &mut [Entity], pending: &[Pending], order: &[EntityId]) {
    let n = entities.len();
    let mut inherited = vec![Objective::default(); n];
    let mut inherited_tier: Vec<Option<TierId>> = vec![None; n];
    for &e in order {
        let (pass_obj, pass_tier) = if pending[e].is_service {
            (pending[e].own.tighten(inherited[e]), min_opt(entities[e].tier, inherited_tier[e]))
        } else {
            (inherited[e], inherited_tier[e])
        };
        for &(d, _) in &pending[e].deps {
            inherited[d] = inherited[d].tighten(pass_obj);
            inherited_tier[d] = min_opt(inherited_tier[d], pass_tier);
        }
    }
    for (i, e) in entities.iter_mut().enumerate() {
        // A service's targets are its own; so are a datastore's with a tier.
        if pending[i].is_service || e.tier.is_some() {
            e.targets = pending[i].own;
        } else {
            e.targets = pending[i].own.tighten(inherited[i]);
            e.effective_tier = inherited_tier[i];
        }
    }
}

fn min_opt(a: Option<TierId>, b: Option<TierId>) -> Option<TierId> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `us-east-1a` → `us-east-1`, for zones that name an AWS availability zone.
fn region_of_aws_zone(az: &str) -> Option<String> {
    let last = az.chars().last()?;
    if !last.is_ascii_lowercase() {
        return None;
    }
    let head = &az[..az.len() - last.len_utf8()];
    let parts: Vec<&str> = head.split('-').collect();
    let looks_like_region = parts.len() >= 3
        && parts[0].len() == 2
        && parts.last().is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    looks_like_region.then(|| head.to_string())
}

/// S3's bucket naming rules, in short.
fn check_bucket_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err("bucket names have 3 to 63 characters".into());
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.') {
        return Err("bucket names use lowercase letters, digits, `-` and `.`".into());
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || !name.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("bucket names start and end with a letter or digit".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::region_of_aws_zone;

    /// A zone name ending in a multi-byte letter is not an AWS zone, and
    /// never a panic (found by the fuzzer).
    #[test]
    fn aws_zone_names_give_their_region_and_anything_else_gives_none() {
        assert_eq!(region_of_aws_zone("us-east-1a").as_deref(), Some("us-east-1"));
        assert_eq!(region_of_aws_zone("eu-west-2c").as_deref(), Some("eu-west-2"));
        assert_eq!(region_of_aws_zone("us-east-1ŝ"), None);
        assert_eq!(region_of_aws_zone("ŝ"), None);
        assert_eq!(region_of_aws_zone(""), None);
        assert_eq!(region_of_aws_zone("lab-az1"), None);
    }
}
