//! The actions a failover step can take: the one list.
//!
//! Runbook validation, the planner and the controller's dispatcher all
//! name actions through [`Action`]; the dispatcher matches on it
//! exhaustively, so an action cannot be accepted by validation and then be
//! missing at execution (a match arm forgotten is a compile error), and
//! there is no second list to drift from this one.

use serde_json::{Map, Value};
use std::time::Duration;

/// Who may approve an `approval` step through the operator API: a
/// runbook's `role`. The roles are the operator API's (docs/guide/controller.md); approving
/// takes a commander at least, so these are the two a runbook can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approver {
    /// Any commander or admin (the default).
    Commander,
    /// An admin only: for the step a company wants a second, senior pair of eyes on.
    Admin,
}

impl Approver {
    pub fn parse(role: &str) -> Option<Approver> {
        match role {
            "commander" => Some(Approver::Commander),
            "admin" => Some(Approver::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Approver::Commander => "commander",
            Approver::Admin => "admin",
        }
    }
}

/// Every action drctl performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    PostgresFence,
    PostgresPromote,
    RdsPromoteReadReplica,
    RdsFailoverDbCluster,
    S3PromoteReplica,
    Route53Upsert,
    Route53Failover,
    DnsFailover,
    HttpHealth,
    HttpRequest,
    Exec,
    Wait,
    Approval,
    Notify,
    /// A service's own failover without a runbook: switch its route, then
    /// verify its health. Made by the planner; not for runbooks.
    ServiceFailover,
}

impl Action {
    pub const ALL: [Action; 15] = [
        Action::PostgresFence,
        Action::PostgresPromote,
        Action::RdsPromoteReadReplica,
        Action::RdsFailoverDbCluster,
        Action::S3PromoteReplica,
        Action::Route53Upsert,
        Action::Route53Failover,
        Action::DnsFailover,
        Action::HttpHealth,
        Action::HttpRequest,
        Action::Exec,
        Action::Wait,
        Action::Approval,
        Action::Notify,
        Action::ServiceFailover,
    ];

    /// The name runbooks, plans and the journal use.
    pub fn name(self) -> &'static str {
        match self {
            Action::PostgresFence => "postgres.fence",
            Action::PostgresPromote => "postgres.promote",
            Action::RdsPromoteReadReplica => "rds.promote_read_replica",
            Action::RdsFailoverDbCluster => "rds.failover_db_cluster",
            Action::S3PromoteReplica => "s3.promote_replica",
            Action::Route53Upsert => "route53.upsert",
            Action::Route53Failover => "route53.failover",
            Action::DnsFailover => "dns.failover",
            Action::HttpHealth => "http.health",
            Action::HttpRequest => "http.request",
            Action::Exec => "exec",
            Action::Wait => "wait",
            Action::Approval => "approval",
            Action::Notify => "notify",
            Action::ServiceFailover => "service.failover",
        }
    }

    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether a runbook step may use it.
    pub fn in_runbooks(self) -> bool {
        self != Action::ServiceFailover
    }

    /// Whether it checks the world before acting, so that running it again
    /// after a crash does no harm. The others (a program, a webhook) cannot
    /// know whether their effect already happened.
    pub fn checks_the_world(self) -> bool {
        !matches!(self, Action::Exec | Action::HttpRequest | Action::Notify)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How long an approval waits before the operators are reminded, unless
/// its `remind_after` says otherwise.
pub const DEFAULT_REMIND_AFTER: Duration = Duration::from_secs(300);

/// A step's action with its parameters decoded: what the dispatcher
/// matches on. Runbook validation decodes every step through
/// [`Call::decode`] and reports what does not fit at its position; the
/// dispatcher decodes the journaled step (templates filled in) through the
/// same function, so what validation accepts is exactly what runs.
/// `None` for a datastore, service or zone means the step's own (its
/// entity, the plan's target zone).
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    PostgresFence {
        datastore: Option<String>,
        zone: Option<String>,
    },
    /// `force` is decoded so validation can say it has no effect: forcing
    /// is the commander's decision (`drctl declare --force`), not a runbook's.
    PostgresPromote {
        datastore: Option<String>,
        to_zone: Option<String>,
        force: bool,
    },
    RdsPromoteReadReplica {
        datastore: Option<String>,
        to_zone: Option<String>,
    },
    RdsFailoverDbCluster {
        datastore: Option<String>,
        to_zone: Option<String>,
    },
    S3PromoteReplica {
        datastore: Option<String>,
        to_zone: Option<String>,
    },
    Route53Upsert {
        zone_id: String,
        name: String,
        values: Vec<String>,
        record_type: String,
        ttl: i64,
    },
    Route53Failover {
        zone_id: String,
        name: String,
        service: Option<String>,
    },
    DnsFailover {
        service: Option<String>,
    },
    HttpHealth {
        url: String,
        within: Duration,
        interval: Duration,
        expect_status: Option<u16>,
    },
    HttpRequest {
        url: String,
        method: String,
        headers: Vec<(String, String)>,
        body: Option<Body>,
        expect_status: Option<u16>,
    },
    Exec {
        command: Vec<String>,
        env: Vec<(String, String)>,
        cwd: Option<String>,
    },
    Wait {
        duration: Duration,
    },
    Approval {
        prompt: Option<String>,
        /// How long it may wait before the operators are reminded (default 5 min).
        remind_after: Duration,
        /// Who may approve through the operator API.
        role: Approver,
        /// The `role` as written when it is not one drctl enforces
        /// (validation warns; any commander approves).
        unenforced_role: Option<String>,
    },
    Notify {
        url: String,
        text: String,
        channel: Option<String>,
    },
    ServiceFailover {
        service: Option<String>,
    },
}

/// An HTTP request's body: text as given, anything else as JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Text(String),
    Json(serde_json::Value),
}

/// A parameter that does not fit its action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub key: String,
    pub why: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.key, self.why)
    }
}

/// Reads parameters, noting every one that does not fit (all are
/// reported at once) and standing in a default for it.
struct With<'a> {
    with: &'a Map<String, Value>,
    errors: std::cell::RefCell<Vec<ParamError>>,
}

impl With<'_> {
    fn fail<T>(&self, key: &str, why: impl Into<String>, default: T) -> T {
        self.errors.borrow_mut().push(ParamError { key: key.into(), why: why.into() });
        default
    }

    /// A scalar, as text (a plain `123` in YAML is a number, and a name).
    fn text(&self, key: &str) -> Option<String> {
        match self.with.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
            Some(_) => self.fail(key, "must be a single value, not a list or a mapping", None),
        }
    }

    fn required(&self, key: &str) -> String {
        match self.text(key) {
            Some(s) if !s.is_empty() => s,
            None if self.errors.borrow().iter().any(|e| e.key == key) => String::new(),
            _ => self.fail(key, "is required", String::new()),
        }
    }

    fn texts(&self, key: &str) -> Vec<String> {
        match self.with.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for v in items {
                    match v {
                        Value::String(s) => out.push(s.clone()),
                        Value::Number(_) | Value::Bool(_) => out.push(v.to_string()),
                        _ => return self.fail(key, "must be a list of single values", Vec::new()),
                    }
                }
                out
            }
            Some(_) => self.fail(key, "must be a list", Vec::new()),
        }
    }

    fn pairs(&self, key: &str) -> Vec<(String, String)> {
        match self.with.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(m)) => {
                let mut out = Vec::new();
                for (k, v) in m {
                    match v {
                        Value::String(s) => out.push((k.clone(), s.clone())),
                        Value::Number(_) | Value::Bool(_) => out.push((k.clone(), v.to_string())),
                        _ => return self.fail(key, format!("`{k}` must be a single value"), Vec::new()),
                    }
                }
                out
            }
            Some(_) => self.fail(key, "must be a mapping of names to values", Vec::new()),
        }
    }

    fn duration(&self, key: &str, default: Duration) -> Duration {
        let parsed = match self.with.get(key) {
            None | Some(Value::Null) => return default,
            Some(Value::String(s)) => crate::duration::parse_duration(s),
            Some(Value::Number(n)) => crate::duration::from_seconds(n.as_f64().unwrap_or(-1.0)),
            Some(other) => Err(format!("{other} is not a duration (e.g. 30s, 2m)")),
        };
        parsed.unwrap_or_else(|why| self.fail(key, why, default))
    }

    fn int(&self, key: &str) -> Option<i64> {
        match self.with.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.is_i64() => n.as_i64(),
            Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            Some(_) => self.fail(key, "must be a whole number", None),
        }
    }

    fn status(&self, key: &str) -> Option<u16> {
        match self.int(key) {
            None => None,
            Some(n @ 100..=599) => Some(n as u16),
            Some(n) => self.fail(key, format!("{n} is not an HTTP status (100-599)"), None),
        }
    }

    fn flag(&self, key: &str) -> bool {
        match self.with.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => self.fail(key, "must be true or false", false),
        }
    }
}

impl Call {
    /// Decodes an action's parameters; see the type's documentation.
    pub fn decode(action: Action, with: &Map<String, Value>) -> Result<Call, Vec<ParamError>> {
        let w = With { with, errors: Default::default() };
        let call = match action {
            Action::PostgresFence => Call::PostgresFence { datastore: w.text("datastore"), zone: w.text("zone") },
            Action::PostgresPromote => Call::PostgresPromote {
                datastore: w.text("datastore"),
                to_zone: w.text("to_zone"),
                force: w.flag("force"),
            },
            Action::RdsPromoteReadReplica => {
                Call::RdsPromoteReadReplica { datastore: w.text("datastore"), to_zone: w.text("to_zone") }
            }
            Action::RdsFailoverDbCluster => {
                Call::RdsFailoverDbCluster { datastore: w.text("datastore"), to_zone: w.text("to_zone") }
            }
            Action::S3PromoteReplica => {
                Call::S3PromoteReplica { datastore: w.text("datastore"), to_zone: w.text("to_zone") }
            }
            Action::Route53Upsert => {
                let values = w.texts("values");
                if values.is_empty() && !w.errors.borrow().iter().any(|e| e.key == "values") {
                    w.fail("values", "must list at least one value", ());
                }
                Call::Route53Upsert {
                    zone_id: w.required("zone_id"),
                    name: w.required("name"),
                    values,
                    record_type: w.text("type").unwrap_or_else(|| "A".into()),
                    ttl: w.int("ttl").unwrap_or(60),
                }
            }
            Action::Route53Failover => Call::Route53Failover {
                zone_id: w.required("zone_id"),
                name: w.required("name"),
                service: w.text("service"),
            },
            Action::DnsFailover => Call::DnsFailover { service: w.text("service") },
            Action::HttpHealth => Call::HttpHealth {
                url: w.required("url"),
                within: w.duration("within", Duration::from_secs(60)),
                interval: w.duration("interval", Duration::from_millis(500)),
                expect_status: w.status("expect_status"),
            },
            Action::HttpRequest => {
                let method = w.text("method").unwrap_or_else(|| "GET".into()).to_ascii_uppercase();
                if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                    w.fail("method", format!("`{method}` is not an HTTP method"), ());
                }
                Call::HttpRequest {
                    url: w.required("url"),
                    method,
                    headers: w.pairs("headers"),
                    body: match with.get("body") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) => Some(Body::Text(s.clone())),
                        Some(v) => Some(Body::Json(v.clone())),
                    },
                    expect_status: w.status("expect_status"),
                }
            }
            Action::Exec => {
                let command = w.texts("command");
                if command.is_empty() && !w.errors.borrow().iter().any(|e| e.key == "command") {
                    w.fail("command", "must be a non-empty list: the program, then its arguments", ());
                }
                Call::Exec { command, env: w.pairs("env"), cwd: w.text("cwd") }
            }
            Action::Wait => Call::Wait { duration: w.duration("for", Duration::ZERO) },
            Action::Approval => {
                let written = w.text("role");
                let role = written.as_deref().map_or(Some(Approver::Commander), Approver::parse);
                Call::Approval {
                    prompt: w.text("prompt"),
                    remind_after: w.duration("remind_after", DEFAULT_REMIND_AFTER),
                    role: role.unwrap_or(Approver::Commander),
                    unenforced_role: if role.is_none() { written } else { None },
                }
            }
            Action::Notify => Call::Notify {
                url: w.required("url"),
                text: w.text("text").unwrap_or_else(|| "drctl".into()),
                channel: w.text("channel"),
            },
            Action::ServiceFailover => Call::ServiceFailover { service: w.text("service") },
        };
        let errors = w.errors.into_inner();
        if errors.is_empty() {
            Ok(call)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips_and_every_runbook_action_has_a_spec() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.name()), Some(a));
            let specs = crate::runbook::ACTIONS.iter().filter(|s| s.action == a).count();
            assert_eq!(specs, usize::from(a.in_runbooks()), "{a}: one spec per runbook action, none otherwise");
        }
        assert_eq!(crate::runbook::ACTIONS.len(), Action::ALL.len() - 1);
        assert_eq!(Action::parse("postgres.promot"), None);
    }

    fn with(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parameters_decode_into_typed_calls_with_their_defaults() {
        use serde_json::json;
        assert_eq!(
            Call::decode(
                Action::Route53Upsert,
                &with(json!({"zone_id": "Z1", "name": "a.", "values": ["1.2.3.4", 5]}))
            ),
            Ok(Call::Route53Upsert {
                zone_id: "Z1".into(),
                name: "a.".into(),
                values: vec!["1.2.3.4".into(), "5".into()],
                record_type: "A".into(),
                ttl: 60
            })
        );
        assert_eq!(
            Call::decode(Action::HttpHealth, &with(json!({"url": "http://x/h", "within": "2m", "expect_status": 204}))),
            Ok(Call::HttpHealth {
                url: "http://x/h".into(),
                within: Duration::from_secs(120),
                interval: Duration::from_millis(500),
                expect_status: Some(204)
            })
        );
        assert_eq!(
            Call::decode(Action::HttpRequest, &with(json!({"url": "u", "method": "post", "body": {"a": 1}}))),
            Ok(Call::HttpRequest {
                url: "u".into(),
                method: "POST".into(),
                headers: vec![],
                body: Some(Body::Json(json!({"a": 1}))),
                expect_status: None
            })
        );
        assert_eq!(
            Call::decode(Action::Wait, &with(json!({"for": 1.5}))),
            Ok(Call::Wait { duration: Duration::from_millis(1500) })
        );
    }

    #[test]
    fn an_approval_names_who_approves_and_keeps_a_role_it_cannot_enforce() {
        use serde_json::json;
        let approval = |v| Call::decode(Action::Approval, &with(v)).unwrap();
        assert_eq!(
            approval(json!({})),
            Call::Approval {
                prompt: None,
                remind_after: DEFAULT_REMIND_AFTER,
                role: Approver::Commander,
                unenforced_role: None
            }
        );
        assert_eq!(
            approval(json!({"role": "admin", "prompt": "go?"})),
            Call::Approval {
                prompt: Some("go?".into()),
                remind_after: DEFAULT_REMIND_AFTER,
                role: Approver::Admin,
                unenforced_role: None
            }
        );
        // A role drctl has no tokens for approves as a commander, and says so.
        assert_eq!(
            approval(json!({"role": "dba-lead"})),
            Call::Approval {
                prompt: None,
                remind_after: DEFAULT_REMIND_AFTER,
                role: Approver::Commander,
                unenforced_role: Some("dba-lead".into())
            }
        );
        assert_eq!(
            approval(json!({"remind_after": "2m"})),
            Call::Approval {
                prompt: None,
                remind_after: Duration::from_secs(120),
                role: Approver::Commander,
                unenforced_role: None
            }
        );
        assert!(Approver::Admin > Approver::Commander);
    }

    #[test]
    fn a_parameter_of_the_wrong_shape_is_named_with_what_it_must_be() {
        use serde_json::json;
        let err =
            |a, v| Call::decode(a, &with(v)).unwrap_err().iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
        assert_eq!(
            err(Action::Exec, json!({"command": []})),
            "`command`: must be a non-empty list: the program, then its arguments"
        );
        assert_eq!(err(Action::Exec, json!({"command": "ls -l"})), "`command`: must be a list");
        assert_eq!(
            err(Action::HttpHealth, json!({"url": ["a"]})),
            "`url`: must be a single value, not a list or a mapping"
        );
        assert_eq!(
            err(Action::HttpRequest, json!({"url": "u", "expect_status": 42})),
            "`expect_status`: 42 is not an HTTP status (100-599)"
        );
        assert_eq!(
            err(Action::HttpRequest, json!({"url": "u", "method": "GET /x"})),
            "`method`: `GET /X` is not an HTTP method"
        );
        assert_eq!(
            err(Action::Route53Upsert, json!({"zone_id": "Z", "name": "n", "values": []})),
            "`values`: must list at least one value"
        );
        assert_eq!(
            err(Action::Route53Upsert, json!({"zone_id": "Z", "name": "n", "values": ["v"], "ttl": "soon"})),
            "`ttl`: must be a whole number"
        );
        assert_eq!(err(Action::PostgresPromote, json!({"force": "yes"})), "`force`: must be true or false");
        assert_eq!(
            err(Action::Exec, json!({"command": ["x"], "env": {"A": [1]}})),
            "`env`: `A` must be a single value"
        );
        assert!(err(Action::Wait, json!({"for": "soon"})).starts_with("`for`: "));
        let all =
            Call::decode(Action::HttpHealth, &with(json!({"url": {}, "within": "x", "expect_status": 7}))).unwrap_err();
        let keys: Vec<&str> = all.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["url", "within", "expect_status"], "every parameter that does not fit is named at once");
    }
}
