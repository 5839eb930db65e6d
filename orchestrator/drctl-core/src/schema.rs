//! JSON Schema of `drctl.yaml`, so that editors validate and complete it as
//! it is typed (VS Code's YAML extension reads it; see docs/reference/topology.md). It
//! mirrors what the decoder accepts; `drctl validate` remains the authority
//! (references, cycles and positions are beyond a schema).

use serde_json::{json, Value};

const DURATION_PATTERN: &str = r"^(([0-9]+(\.[0-9]+)?)(d|h|m|s|ms))+$|^[0-9]+(\.[0-9]+)?$";

fn duration(description: &str) -> Value {
    json!({
        "description": description,
        "oneOf": [
            { "type": "string", "pattern": DURATION_PATTERN },
            { "type": "number", "minimum": 0 }
        ]
    })
}

fn strict(properties: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "additionalProperties": false, "properties": properties, "required": required })
}

/// The schema of the topology file.
pub fn topology_schema() -> Value {
    let name = json!({ "type": "string", "pattern": "^[A-Za-z0-9._-]+$" });
    let drills = strict(
        json!({ "every": duration("How old the last drill may be; readiness warns past it (see docs/readiness.md).") }),
        &["every"],
    );
    let objective = strict(
        json!({
            "rpo": duration("Recovery point objective: the most data, in time, that may be lost."),
            "rto": duration("Recovery time objective: the longest a failover may take."),
            "restore": strict(json!({
                "rpo": duration("The most data, in time, a restore from backups may lose (backup RPO)."),
                "rto": duration("The longest a restore from backups may take.")
            }), &[]),
            "drills": drills.clone()
        }),
        &[],
    );
    let on_failure = json!({
        "enum": ["pause", "continue"],
        "description": "When a step fails: pause (default; nothing new starts until a commander decides) or continue (steps that do not need it go on)."
    });
    let failover_ds = strict(
        json!({
            "estimate": duration("How long a failover of this datastore takes (default per kind)."),
            "max_lag": duration("Refuse to promote a replica further behind than this, unless declared with --accept-lag."),
            "catch_up": duration("How long a promote waits for the standby to replay the fenced primary's last write (default 30s)."),
            "runbook": { "type": "string", "description": "A runbook file, relative to this file." },
            "on_failure": on_failure.clone()
        }),
        &[],
    );
    let failover_svc = strict(
        json!({
            "estimate": duration("How long a failover of this service takes (default 10s)."),
            "runbook": { "type": "string", "description": "A runbook file, relative to this file." },
            "on_failure": on_failure
        }),
        &[],
    );
    let member = |keys: Value, required: &[&str]| strict(keys, required);
    let zone_ref = json!({ "type": "string", "description": "A zone declared under `zones`." });
    let common = |extra: Value| {
        let mut props = json!({
            "name": name.clone(),
            "kind": { "type": "string" },
            "tier": { "type": "string", "description": "A tier declared under `objectives`." },
            "failover": failover_ds.clone(),
            "drills": drills.clone()
        });
        if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        props
    };
    let pg_member = member(
        json!({ "zone": zone_ref, "url": { "type": "string", "pattern": "^postgres(ql)?://" } }),
        &["zone", "url"],
    );
    let s3_member = member(
        json!({ "zone": zone_ref, "bucket": { "type": "string", "minLength": 3, "maxLength": 63 },
        "endpoint": { "type": "string" }, "region": { "type": "string" } }),
        &["zone", "bucket"],
    );
    let rds_member = member(json!({ "zone": zone_ref, "instance": { "type": "string" } }), &["zone", "instance"]);
    let kind_branch = |kind: &str, extra: Value, required: &[&str]| {
        let mut props = common(extra);
        props["kind"] = json!({ "const": kind });
        json!({ "if": { "properties": { "kind": { "const": kind } }, "required": ["kind"] },
                "then": { "type": "object", "additionalProperties": false, "properties": props, "required": required } })
    };
    let replication = strict(
        json!({
            "by": { "enum": ["drctl", "s3"], "description": "drctl: drctl copies objects; s3: native replication, monitored." },
            "every": duration("Run a replication pass this often."),
            "cron": { "type": "string", "description": "Or a cron schedule (5 fields)." },
            "concurrency": { "type": "integer", "minimum": 1, "maximum": 1024 },
            "sse": { "enum": ["AES256", "aws:kms"] },
            "kms_key_id": { "type": "string" }
        }),
        &["by"],
    );
    let cron = |d: &str| json!({ "type": "string", "description": d });
    let pg_backup = strict(
        json!({
            "tool": { "const": "pgbackrest", "description": "drctl drives pgBackRest; it writes no backup format of its own." },
            "repo": strict(json!({
                "zone": zone_ref,
                "path": { "type": "string", "pattern": "^/", "description": "A folder (posix repository)." },
                "bucket": { "type": "string", "description": "An S3 bucket (reached over TLS)." },
                "endpoint": { "type": "string", "pattern": "^https://" },
                "region": { "type": "string" }
            }), &["zone"]),
            "full": cron("Cron schedule of full backups (5 fields)."),
            "diff": cron("Cron schedule of differential backups."),
            "incr": cron("Cron schedule of incremental backups."),
            "retention": duration("How long full backups are kept (whole days).")
        }),
        &["tool", "repo"],
    );
    let rds_backup =
        strict(json!({ "retention": duration("RDS automated backups' retention, 1 to 35 days.") }), &["retention"]);
    let s3_backup = strict(json!({ "versions": duration("How long object versions are kept.") }), &["versions"]);
    let datastore = json!({
        "type": "object",
        "required": ["name", "kind"],
        "properties": { "kind": { "enum": ["postgres", "rds-instance", "rds-cluster", "s3"] } },
        "allOf": [
            kind_branch("postgres", json!({ "primary": pg_member, "replicas": { "type": "array", "items": pg_member }, "backup": pg_backup }), &["name", "kind", "primary"]),
            kind_branch("s3", json!({ "primary": s3_member, "replicas": { "type": "array", "items": s3_member },
                "endpoint": { "type": "string" }, "region": { "type": "string" }, "replication": replication, "backup": s3_backup }), &["name", "kind", "primary"]),
            kind_branch("rds-instance", json!({ "primary": rds_member, "replicas": { "type": "array", "items": rds_member },
                "region": { "type": "string" }, "backup": rds_backup.clone() }), &["name", "kind", "primary"]),
            kind_branch("rds-cluster", json!({ "cluster": { "type": "string" }, "region": { "type": "string" }, "backup": rds_backup }), &["name", "kind", "cluster"])
        ]
    });
    let route = strict(
        json!({
            "kind": { "enum": ["route53", "lab-dns"] },
            "zone_id": { "type": "string" },
            "name": { "type": "string" },
            "type": { "type": "string", "default": "A" },
            "ttl": { "type": "integer", "minimum": 0, "default": 60 },
            "server": { "type": "string", "description": "lab-dns: the DNS server's control address." },
            "records": { "type": "object", "additionalProperties": { "type": "string" }, "description": "The record's answer per zone." }
        }),
        &["kind", "name", "records"],
    );
    let service = strict(
        json!({
            "name": name,
            "tier": { "type": "string" },
            "zones": { "type": "array", "items": zone_ref, "uniqueItems": true },
            "depends_on": { "type": "array", "items": { "type": "string" }, "uniqueItems": true },
            "health": strict(json!({
                "url": { "type": "string", "pattern": "^https?://", "description": "One URL for the whole service." },
                "zones": { "type": "object", "description": "One URL per zone: whether the service is alive in that zone.", "additionalProperties": { "type": "string", "pattern": "^https?://" } },
                "timeout": duration("Health check timeout (default 5s).")
            }), &[]),
            "route": route,
            "failover": failover_svc,
            "drills": drills.clone()
        }),
        &["name"],
    );
    let erasure = strict(
        json!({
            "deadline": duration("How long after a request every copy must be clean (default 30d)."),
            "locate": { "type": "array", "description": "Where a subject's data lives, per datastore.", "items": strict(json!({
                "datastore": { "type": "string", "description": "A datastore of this file." },
                "sql": { "type": "string", "description": "PostgreSQL/RDS: erases the subject, given as $1." },
                "check": { "type": "string", "description": "PostgreSQL/RDS: counts what is left of the subject ($1); 0 when clean." },
                "prefix": { "type": "string", "description": "S3: the subject's keys, with {subject} in it, e.g. users/{subject}/." },
                "url": { "type": "string", "description": "rds-*: the database URL drctl runs sql and check on." }
            }), &["datastore"]) }
        }),
        &[],
    );
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://drctl.dev/schema/drctl.yaml.json",
        "title": "drctl topology",
        "type": "object",
        "additionalProperties": false,
        "required": ["version"],
        "properties": {
            "version": { "const": 1 },
            "name": { "type": "string" },
            "zones": { "type": "array", "items": strict(json!({
                "name": name, "region": { "type": "string" }, "aws_zone": { "type": "string" }
            }), &["name"]) },
            "objectives": { "type": "object", "additionalProperties": objective },
            "contracts": { "type": "array", "items": strict(json!({
                "customer": { "type": "string" },
                "services": { "type": "array", "items": { "type": "string" } },
                "rpo": duration("Contractual RPO."), "rto": duration("Contractual RTO.")
            }), &["customer", "services"]) },
            "datastores": { "type": "array", "items": datastore },
            "services": { "type": "array", "items": service },
            "erasure": erasure,
            "drills": { "type": "array", "items": strict(json!({
                "experiment": { "type": "string" },
                "cron": { "type": "string", "description": "Required for a chaos experiment; a restore test may use its own `schedule:` instead." }
            }), &["experiment"]) }
        }
    })
}
