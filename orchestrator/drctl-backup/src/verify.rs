//! The checks of a restore test, run against the restored copy.
//!
//! A backup is real only once a restore from it has been shown to hold the
//! data: a checksum of the backup proves the bytes, not that the rows are
//! there. Each check is SQL run on the copy, with what it must answer
//! (`expect`) or how fresh the newest data it returns must be against the
//! point asked for (`fresher_than`).

use serde_json::{json, Value};
use std::time::Duration;

/// One check of a restore test, as the experiment gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub sql: String,
    /// What the query must answer (its first column of its first row).
    pub expect: Option<Value>,
    /// The time the query answers must be at most this old at the point asked for.
    pub fresher_than: Option<Duration>,
}

/// Whether PostgreSQL's text for a value is what was expected.
fn matches(text: Option<&str>, expected: &Value) -> bool {
    match (text, expected) {
        (None, Value::Null) => true,
        (Some(t), Value::Bool(b)) => (t == "t" || t == "true") == *b && matches!(t, "t" | "f" | "true" | "false"),
        (Some(t), Value::Number(n)) => t.parse::<f64>().ok().zip(n.as_f64()).is_some_and(|(a, b)| (a - b).abs() < 1e-9),
        (Some(t), Value::String(s)) => t == s,
        _ => false,
    }
}

/// Runs every check on the copy at `url`; `point` is the requested point
/// (seconds since the epoch). Each result: `{sql, passed, got, error}`.
pub async fn run(url: &str, checks: &[Check], point: f64) -> Vec<Value> {
    let mut out = Vec::new();
    let client = match crate::postgres::connect(url).await {
        Ok(c) => Some(c),
        Err(e) => {
            for c in checks {
                out.push(json!({ "sql": c.sql, "passed": false, "got": null, "error": format!("cannot reach the copy: {e}") }));
            }
            None
        }
    };
    let Some(client) = client else { return out };
    for c in checks {
        let result = if let Some(limit) = c.fresher_than {
            let sql = format!("SELECT extract(epoch FROM ({}))::float8", c.sql);
            match client.query_one(sql.as_str(), &[]).await {
                Ok(row) => {
                    let t: Option<f64> = row.get(0);
                    match t {
                        Some(t) => {
                            let age = point - t;
                            let passed = age <= limit.as_secs_f64();
                            json!({ "sql": c.sql, "passed": passed, "got": crate::restore::rfc3339(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t.max(0.0))),
                                    "age_s": age, "error": if passed { Value::Null } else { json!(format!("the newest data is {age:.1}s older than the point asked for (limit {}s)", limit.as_secs_f64())) } })
                        }
                        None => {
                            json!({ "sql": c.sql, "passed": false, "got": null, "error": "the query answered NULL: no data" })
                        }
                    }
                }
                Err(e) => json!({ "sql": c.sql, "passed": false, "got": null, "error": db_error(&e) }),
            }
        } else {
            match client.simple_query(&c.sql).await {
                Ok(msgs) => {
                    let text: Option<Option<String>> = msgs.iter().find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
                        _ => None,
                    });
                    let got = text.clone().flatten();
                    let expected = c.expect.clone().unwrap_or(Value::Bool(true));
                    let passed = text.is_some() && matches(got.as_deref(), &expected);
                    json!({ "sql": c.sql, "passed": passed, "got": got, "expect": expected,
                            "error": if passed { Value::Null } else { json!(format!("expected {expected}, got {}", got.as_deref().unwrap_or("no row"))) } })
                }
                Err(e) => json!({ "sql": c.sql, "passed": false, "got": null, "error": db_error(&e) }),
            }
        };
        out.push(result);
    }
    out
}

fn db_error(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_text_is_compared_with_the_expected_json() {
        assert!(matches(Some("t"), &json!(true)));
        assert!(!matches(Some("f"), &json!(true)));
        assert!(!matches(Some("yes"), &json!(true)));
        assert!(matches(Some("42"), &json!(42)));
        assert!(matches(Some("ok"), &json!("ok")));
        assert!(matches(None, &Value::Null));
        assert!(!matches(None, &json!(0)));
    }
}
