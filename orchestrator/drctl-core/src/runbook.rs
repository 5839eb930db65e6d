//! Runbooks (docs/reference/runbooks-and-experiments.md): named steps with actions, parameters and `needs`.
//!
//! Parsed with the same care as the topology (positions, every error at
//! once, unknown actions and parameters named with a hint) because a typo in
//! a runbook is found at the worst possible moment otherwise: mid-failover.

use crate::action::{Action, Call};
use crate::decode::{to_json, Decoder, Spanned};
use crate::diag::{did_you_mean, Code, Diagnostic, Diagnostics, Pos};
use crate::yaml::{self, Node, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What an action takes and how long it usually lasts.
#[derive(Debug, Clone, Copy)]
pub struct ActionSpec {
    pub action: Action,
    pub required: &'static [&'static str],
    pub optional: &'static [&'static str],
    /// Used by the planner when a step gives no `estimate`.
    pub default_estimate: Duration,
    pub summary: &'static str,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// What each runbook action takes (every [`Action`] but the planner's own).
pub const ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        action: Action::PostgresFence,
        required: &["datastore"],
        optional: &["zone"],
        default_estimate: secs(2),
        summary: "stop the old primary from accepting writes, and verify it",
    },
    ActionSpec {
        action: Action::PostgresPromote,
        required: &["datastore"],
        optional: &["to_zone", "force"],
        default_estimate: secs(30),
        summary: "promote the preferred standby (refused beyond max_lag unless forced)",
    },
    ActionSpec {
        action: Action::RdsPromoteReadReplica,
        required: &["datastore"],
        optional: &["to_zone"],
        default_estimate: secs(120),
        summary: "promote an RDS read replica to a standalone instance",
    },
    ActionSpec {
        action: Action::RdsFailoverDbCluster,
        required: &["datastore"],
        optional: &["to_zone"],
        default_estimate: secs(35),
        summary: "move an RDS/Aurora cluster's writer to a member in the target zone",
    },
    ActionSpec {
        action: Action::S3PromoteReplica,
        required: &["datastore"],
        optional: &["to_zone"],
        default_estimate: secs(5),
        summary: "make an S3 replica bucket the primary and turn replication around",
    },
    ActionSpec {
        action: Action::Route53Upsert,
        required: &["zone_id", "name", "values"],
        optional: &["type", "ttl"],
        default_estimate: secs(10),
        summary: "UPSERT a record set, then wait for INSYNC",
    },
    ActionSpec {
        action: Action::Route53Failover,
        required: &["zone_id", "name"],
        optional: &["to_zone", "service", "type", "ttl"],
        default_estimate: secs(10),
        summary: "answer with the records of the zones outside the disaster scope, then wait for INSYNC",
    },
    ActionSpec {
        action: Action::DnsFailover,
        required: &["service"],
        optional: &["to_zone"],
        default_estimate: secs(1),
        summary: "switch a lab-dns route to the zones outside the disaster scope",
    },
    ActionSpec {
        action: Action::HttpHealth,
        required: &["url"],
        optional: &["within", "expect_status", "interval"],
        default_estimate: secs(5),
        summary: "poll a URL until it answers 2xx (or expect_status)",
    },
    ActionSpec {
        action: Action::HttpRequest,
        required: &["url"],
        optional: &["method", "headers", "body", "expect_status"],
        default_estimate: secs(1),
        summary: "send one HTTP request and check its status",
    },
    ActionSpec {
        action: Action::Exec,
        required: &["command"],
        optional: &["env", "cwd"],
        default_estimate: secs(5),
        summary: "run a program without a shell; succeeds on exit 0",
    },
    ActionSpec {
        action: Action::Wait,
        required: &["for"],
        optional: &[],
        default_estimate: secs(0),
        summary: "wait for a duration",
    },
    ActionSpec {
        action: Action::Approval,
        required: &[],
        optional: &["role", "prompt", "remind_after"],
        default_estimate: secs(60),
        summary: "wait for `drctl approve ID STEP`; `role: admin` keeps it to admins",
    },
    ActionSpec {
        action: Action::Notify,
        required: &["url"],
        optional: &["text", "channel"],
        default_estimate: secs(1),
        summary: "post a JSON (Slack-compatible) message to a webhook",
    },
];

impl ActionSpec {
    pub fn name(&self) -> &'static str {
        self.action.name()
    }
}

pub fn action(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|a| a.name() == name)
}

/// The variables a `{{ ... }}` template may use.
pub const TEMPLATE_VARS: &[&str] = &["to_zone", "from_zone", "entity", "incident"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    /// Total attempts, the first included.
    pub attempts: u32,
    /// Delay before the second attempt; doubles after each failure.
    pub backoff: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Retries { attempts: 1, backoff: Duration::from_secs(1) }
    }
}

#[derive(Debug, Clone)]
pub struct RunbookStep {
    pub id: String,
    pub pos: Pos,
    pub action: &'static ActionSpec,
    pub with: serde_json::Map<String, serde_json::Value>,
    /// Where each `with` parameter was written, for later diagnostics.
    pub with_pos: HashMap<String, Pos>,
    /// Indices of steps in this runbook that must finish first.
    pub needs: Vec<usize>,
    pub timeout: Option<Duration>,
    pub retries: Retries,
    pub estimate: Duration,
    /// `idempotent: true`: the runbook's author says running the step
    /// again does no harm, so a crash mid-step re-runs it on resume
    /// instead of waiting for a commander (docs/guide/safety.md "Never twice").
    pub idempotent: bool,
}

/// What a failed step does to the rest of an execution (`on_failure:` on a
/// runbook or an entity's `failover:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// The default: nothing new starts until a commander decides.
    #[default]
    Pause,
    /// Steps that do not need the failed one still start.
    Continue,
}

impl OnFailure {
    pub fn parse(s: &str) -> Option<OnFailure> {
        match s {
            "pause" => Some(OnFailure::Pause),
            "continue" => Some(OnFailure::Continue),
            _ => None,
        }
    }
}

/// Reads an `on_failure:` value, reporting anything but `pause|continue`.
pub(crate) fn decode_on_failure(
    d: &mut Decoder,
    fields: &crate::decode::Fields,
    what: &dyn std::fmt::Display,
) -> Option<OnFailure> {
    let v = d.opt_string(fields, "on_failure", &what)?;
    let parsed = OnFailure::parse(&v.value);
    if parsed.is_none() {
        d.diags.error(Code::BadValue, v.pos, format!("`on_failure` of {what} is `{}`", v.value)).with_hint(
            "write `pause` (the default: a failed step stops new steps) or `continue` (independent steps go on)",
        );
    }
    parsed
}

#[derive(Debug, Clone)]
pub struct Runbook {
    pub name: String,
    /// `on_failure:` of the whole runbook.
    pub on_failure: OnFailure,
    pub file: PathBuf,
    pub steps: Vec<RunbookStep>,
    /// What is legal but probably not meant (a `force` that has no effect,
    /// an approval `role` drctl cannot enforce): the topology that names
    /// the runbook reports them with its own.
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read, or is over [`yaml::MAX_FILE_BYTES`]: in words.
    Read(String),
    Invalid(Vec<Diagnostic>),
}

pub fn load(path: &Path) -> Result<Runbook, LoadError> {
    let src = yaml::read_file(path).map_err(LoadError::Read)?;
    load_str(&src, path)
}

pub fn load_str(src: &str, path: &Path) -> Result<Runbook, LoadError> {
    let mut diags = Diagnostics::new(path);
    let root = match yaml::parse(src) {
        Ok(r) => r,
        Err(e) => {
            diags.error(Code::Syntax, e.pos, e.describe());
            return Err(LoadError::Invalid(diags.into_sorted()));
        }
    };
    let runbook = decode(&mut Decoder::new(&mut diags), &root, path);
    match runbook {
        Some(rb) if !diags.has_errors() => Ok(Runbook { warnings: diags.into_sorted(), ..rb }),
        _ => Err(LoadError::Invalid(diags.into_sorted())),
    }
}

fn decode(d: &mut Decoder, root: &Node, path: &Path) -> Option<Runbook> {
    let top = d.fields(root, &"the runbook", &["name", "description", "steps", "on_failure"])?;
    let name = d.req_string(&top, "name", &"the runbook");
    let on_failure = decode_on_failure(d, &top, &"the runbook").unwrap_or_default();
    let step_nodes = d.list(d_get(&top, "steps"), &"`steps`");
    if step_nodes.is_empty() {
        d.diags
            .error(Code::MissingKey, top.pos, "the runbook has no steps")
            .with_hint("add `steps:` with at least one `{ id, action }`");
    }
    let mut steps: Vec<RunbookStep> = Vec::new();
    // Per decoded step: its `needs` as written, resolved once every id is known.
    let mut pending_needs: Vec<Vec<Spanned<String>>> = Vec::new();
    // Every id in the file, including steps that failed to decode, so that
    // their `needs` and the `needs` naming them are still checked.
    let mut all_ids: Vec<(String, Pos)> = Vec::new();
    let mut broken_needs: Vec<(String, Vec<Spanned<String>>)> = Vec::new();
    let mut ok = true;
    for node in step_nodes {
        let keys = ["id", "action", "with", "needs", "timeout", "retries", "estimate", "idempotent", "description"];
        let what = match node.peek("id") {
            Some(id) => format!("step `{id}`"),
            None => "a step".into(),
        };
        let Some(f) = d.fields(node, &what, &keys) else {
            ok = false;
            continue;
        };
        let id = d.req_string(&f, "id", &"a step");
        let action_name = d.req_string(&f, "action", &what);
        let spec = known_action(d, action_name.as_ref(), &what);
        let (with, with_pos) = decode_with(d, &f, spec, &what);
        let timeout = d.opt_duration(&f, "timeout", &what).map(|t| t.value);
        let retries = decode_retries(d, &f, &what);
        let needs = d.string_list(f.get("needs"), &format!("`needs` of {what}"));
        let estimate = d.opt_duration(&f, "estimate", &what).map(|e| e.value);
        let idempotent =
            f.get("idempotent").and_then(|n| d.boolean(n, &format!("`idempotent` of {what}"))).is_some_and(|b| b.value);
        if let Some(id) = &id {
            if let Some((_, first)) = all_ids.iter().find(|(k, _)| *k == id.value) {
                let line = first.line;
                d.diags
                    .error(Code::Duplicate, id.pos, format!("step id `{}` is used twice", id.value))
                    .with_hint(format!("the first is on line {line}"));
                ok = false;
                continue;
            }
            all_ids.push((id.value.clone(), id.pos));
        }
        let (Some(id), Some(spec)) = (id, spec) else {
            ok = false;
            broken_needs.push(("?".into(), needs));
            continue;
        };
        if !id.value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) || id.value.is_empty() {
            d.diags
                .error(Code::BadValue, id.pos, format!("step id `{}` is not valid", id.value))
                .with_hint("use letters, digits, `-`, `_` and `.`");
        }
        // Every parameter is decoded here, as the dispatcher will decode it,
        // and reported with its position: at execution (or on every
        // resume) it would be too late.
        let wait_estimate = check_call(d, spec, &with, &with_pos, f.pos, &what);
        steps.push(RunbookStep {
            id: id.value,
            pos: node.pos,
            action: spec,
            with,
            with_pos,
            needs: Vec::new(),
            timeout,
            retries,
            estimate: estimate.or(wait_estimate).unwrap_or(spec.default_estimate),
            idempotent,
        });
        pending_needs.push(needs);
    }
    resolve_needs(d, &mut steps, &pending_needs, &broken_needs, &all_ids);
    if let Some(cycle) = find_cycle(&steps) {
        let path: Vec<&str> = cycle.iter().map(|&i| steps[i].id.as_str()).collect();
        d.diags
            .error(Code::Cycle, steps[cycle[0]].pos, format!("the steps' `needs` form a cycle: {}", path.join(" -> ")))
            .with_hint("remove one of these `needs`");
    }
    if !ok {
        return None;
    }
    Some(Runbook {
        on_failure,
        name: name.map_or_else(|| "runbook".into(), |n| n.value),
        file: path.to_path_buf(),
        steps,
        warnings: Vec::new(),
    })
}

/// The built-in action a step names; an unknown name is reported with the
/// nearest one.
fn known_action(d: &mut Decoder, action_name: Option<&Spanned<String>>, what: &str) -> Option<&'static ActionSpec> {
    action_name.and_then(|a| {
        let found = action(&a.value);
        if found.is_none() {
            let names = ACTIONS.iter().map(|a| a.name());
            let hint = match did_you_mean(&a.value, names) {
                Some(n) => format!("did you mean `{n}`?"),
                None => {
                    format!("built-in actions: {}", ACTIONS.iter().map(|a| a.name()).collect::<Vec<_>>().join(", "))
                }
            };
            d.diags.error(Code::BadValue, a.pos, format!("{what}: action `{}` is not known", a.value)).with_hint(hint);
        }
        found
    })
}

/// A step's `with`: its parameters as JSON and where each was written;
/// a parameter its action does not take, or one it needs and lacks, is
/// reported.
fn decode_with(
    d: &mut Decoder,
    f: &crate::decode::Fields,
    spec: Option<&'static ActionSpec>,
    what: &str,
) -> (serde_json::Map<String, serde_json::Value>, HashMap<String, Pos>) {
    let mut with = serde_json::Map::new();
    let mut with_pos = HashMap::new();
    if let Some(wn) = f.get("with") {
        if let Value::Map(entries) = &wn.value {
            for (k, v) in entries {
                let Some(key) = k.as_scalar() else { continue };
                check_templates(d, v, what);
                with.insert(key.to_string(), to_json(v));
                with_pos.insert(key.to_string(), v.pos);
                if let Some(spec) = spec {
                    if !spec.required.contains(&key) && !spec.optional.contains(&key) {
                        let allowed: Vec<&str> = spec.required.iter().chain(spec.optional).copied().collect();
                        let hint = match did_you_mean(key, allowed.iter().copied()) {
                            Some(n) => format!("did you mean `{n}`?"),
                            None => format!("`{}` takes: {}", spec.name(), allowed.join(", ")),
                        };
                        d.diags
                            .error(Code::UnknownKey, k.pos, format!("{what}: `{}` takes no `{key}`", spec.name()))
                            .with_hint(hint);
                    }
                }
            }
        } else {
            d.wrong_type(wn, &format!("`with` of {what}"), "a mapping");
        }
    }
    if let Some(spec) = spec {
        for req in spec.required {
            if !with.contains_key(*req) {
                d.diags
                    .error(Code::MissingKey, f.pos, format!("{what}: `{}` needs `with: {{ {req}: ... }}`", spec.name()))
                    .with_hint(spec.summary);
            }
        }
    }
    (with, with_pos)
}

/// A step's `retries`: attempts (1 to 100) and the pause between them.
fn decode_retries(d: &mut Decoder, f: &crate::decode::Fields, what: &str) -> Retries {
    match f.get("retries") {
        None => Retries::default(),
        Some(rn) => {
            let rw = format!("`retries` of {what}");
            match d.fields(rn, &rw, &["attempts", "backoff"]) {
                Some(rf) => {
                    let attempts = rf.get("attempts").and_then(|a| d.unsigned(a, &format!("`attempts` of {rw}")));
                    if attempts.as_ref().is_some_and(|a| a.value == 0 || a.value > 100) {
                        d.diags.error(Code::BadValue, rf.pos, format!("{rw}: `attempts` must be between 1 and 100"));
                    }
                    Retries {
                        attempts: attempts.map_or(1, |a| a.value.clamp(1, 100) as u32),
                        backoff: d.opt_duration(&rf, "backoff", &rw).map_or(Duration::from_secs(1), |b| b.value),
                    }
                }
                None => Retries::default(),
            }
        }
    }
}

/// Decodes a step's parameters as the dispatcher will, so what would
/// fail at execution is reported now with its position; returns a `wait`
/// step's duration (its estimate).
fn check_call(
    d: &mut Decoder,
    spec: &'static ActionSpec,
    with: &serde_json::Map<String, serde_json::Value>,
    with_pos: &HashMap<String, Pos>,
    step_pos: Pos,
    what: &str,
) -> Option<Duration> {
    let mut wait_estimate = None;
    if spec.required.iter().all(|k| with.contains_key(*k)) {
        match Call::decode(spec.action, with) {
            Ok(Call::Wait { duration }) => wait_estimate = Some(duration),
            Ok(Call::PostgresPromote { force: true, .. }) => {
                let pos = with_pos.get("force").copied().unwrap_or(step_pos);
                d.diags
                    .warning(Code::Suspicious, pos, format!("{what}: `force` in a runbook has no effect"))
                    .with_hint("forcing a promote is the commander's decision: `drctl declare --force`");
            }
            Ok(Call::Approval { unenforced_role: Some(role), .. }) => {
                let pos = with_pos.get("role").copied().unwrap_or(step_pos);
                d.diags
                    .warning(
                        Code::Suspicious,
                        pos,
                        format!("{what}: `role: {role}` is not a role drctl enforces; any commander approves"),
                    )
                    .with_hint("`role: admin` keeps the approval to admin tokens; `role: commander` (the default) lets any commander approve");
            }
            Ok(_) => {}
            Err(errors) => {
                for e in errors {
                    let pos = with_pos.get(&e.key).copied().unwrap_or(step_pos);
                    d.diags.error(Code::BadValue, pos, format!("{what}: {e}")).with_hint(spec.summary);
                }
            }
        }
    }
    wait_estimate
}

/// Resolves each step's `needs` to indices now that every id is known;
/// a step that needs itself or a step not in the file is reported (the
/// `needs` of steps that failed to decode too).
fn resolve_needs(
    d: &mut Decoder,
    steps: &mut [RunbookStep],
    pending_needs: &[Vec<Spanned<String>>],
    broken_needs: &[(String, Vec<Spanned<String>>)],
    all_ids: &[(String, Pos)],
) {
    let unknown_need = |d: &mut Decoder, step: &str, n: &Spanned<String>| {
        let hint = match did_you_mean(&n.value, all_ids.iter().map(|(k, _)| k.as_str())) {
            Some(near) => format!("did you mean `{near}`?"),
            None => "name a step of this runbook".into(),
        };
        d.diags
            .error(
                Code::UnknownReference,
                n.pos,
                format!("step `{step}` needs `{}`, which is not a step here", n.value),
            )
            .with_hint(hint);
    };
    for (step, needs) in broken_needs {
        for n in needs.iter().filter(|n| !all_ids.iter().any(|(k, _)| *k == n.value)) {
            unknown_need(d, step, n);
        }
    }
    for (i, needs) in pending_needs.iter().enumerate() {
        for n in needs {
            match steps.iter().position(|s| s.id == n.value) {
                Some(j) if j == i => {
                    d.diags.error(Code::Cycle, n.pos, format!("step `{}` needs itself", n.value));
                }
                Some(j) => steps[i].needs.push(j),
                // A step that failed to decode: already reported.
                None if all_ids.iter().any(|(k, _)| *k == n.value) => {}
                None => {
                    let step = steps[i].id.clone();
                    unknown_need(d, &step, n);
                }
            }
        }
    }
}

fn d_get<'a>(f: &crate::decode::Fields<'a>, key: &str) -> Option<&'a Node<'a>> {
    f.get(key)
}

/// Reports `{{ name }}` templates that use an unknown variable.
fn check_templates(d: &mut Decoder, node: &Node, what: &str) {
    match &node.value {
        Value::Scalar { text, .. } => {
            let mut rest = &**text;
            while let Some(open) = rest.find("{{") {
                let Some(close) = rest[open..].find("}}") else {
                    d.diags.error(Code::BadValue, node.pos, format!("{what}: `{{{{` is never closed"));
                    return;
                };
                let var = rest[open + 2..open + close].trim();
                if !TEMPLATE_VARS.contains(&var) {
                    let hint = match did_you_mean(var, TEMPLATE_VARS.iter().copied()) {
                        Some(n) => format!("did you mean `{{{{ {n} }}}}`?"),
                        None => format!("templates: {}", TEMPLATE_VARS.join(", ")),
                    };
                    d.diags
                        .error(Code::BadValue, node.pos, format!("{what}: unknown template variable `{var}`"))
                        .with_hint(hint);
                }
                rest = &rest[open + close + 2..];
            }
        }
        Value::Seq(items) => items.iter().for_each(|i| check_templates(d, i, what)),
        Value::Map(entries) => entries.iter().for_each(|(_, v)| check_templates(d, v, what)),
    }
}

/// A cycle among steps' `needs`, as a path that returns to its start.
fn find_cycle(steps: &[RunbookStep]) -> Option<Vec<usize>> {
    // 0 = unseen, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; steps.len()];
    let mut path = Vec::new();
    fn visit(i: usize, steps: &[RunbookStep], state: &mut [u8], path: &mut Vec<usize>) -> Option<Vec<usize>> {
        state[i] = 1;
        path.push(i);
        for &n in &steps[i].needs {
            if state[n] == 1 {
                let start = path.iter().position(|&p| p == n).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(n);
                return Some(cycle);
            }
            if state[n] == 0 {
                if let Some(c) = visit(n, steps, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state[i] = 2;
        None
    }
    (0..steps.len()).find_map(|i| if state[i] == 0 { visit(i, steps, &mut state, &mut path) } else { None })
}
