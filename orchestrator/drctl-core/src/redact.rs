//! The one redaction every face of drctl uses before text leaves the
//! process or lands in the state store: command output, logs, step notes
//! and errors in the journal, the status JSON and page (served without a
//! token), drill reports.
//!
//! Secrets reach drctl inside URLs more often than anywhere else: a
//! password in a connection URL (`postgres://app:PASS@db/x`, or
//! `?password=PASS`), a token or signature in a query string, and the
//! secret that *is* the path of a chat webhook (Slack's
//! `/services/T…/B…/SECRET`). One function for URLs ([`url`]) and one for
//! free text that may embed them, or a libpq `password=` pair ([`text`]),
//! keep the rules in one place: a new rule reaches every face at once.

/// What replaces a secret.
pub const MASK: &str = "***";

/// Query parameters (compared lowercase, `-` and `_` ignored) whose values
/// are secrets: passwords, tokens, keys, signatures and credentials.
const SECRET_PARAMS: &[&str] =
    &["pass", "pwd", "secret", "token", "key", "sig", "credential", "auth", "session", "code"];

/// Hides the secrets of one URL: the password of its user info, secret
/// query parameters, and every path segment after the first of a webhook
/// (a host or path that says `hook`) or that looks like a generated token.
/// Anything that is not a URL comes back unchanged.
pub fn url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let (head, rest) = url.split_at(scheme_end + 3);
    // Authority ends at the first '/', '?' or '#'.
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let authority = match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!("{}:{MASK}{}", &authority[..colon], &authority[at..]),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let (path, query_and_fragment) = tail.split_at(tail.find(['?', '#']).unwrap_or(tail.len()));
    let host = authority.rsplit('@').next().unwrap_or_default().to_ascii_lowercase();
    let webhook = host.contains("hook") || path.to_ascii_lowercase().contains("hook");
    let path = redact_path(path, webhook);
    let (query, fragment) = match query_and_fragment.strip_prefix('?') {
        Some(q) => q.split_at(q.find('#').unwrap_or(q.len())),
        None => ("", query_and_fragment),
    };
    let mut out = format!("{head}{authority}{path}");
    if query_and_fragment.starts_with('?') {
        out.push('?');
        out.push_str(&redact_query(query));
    }
    out.push_str(fragment);
    out
}

/// The fixed words of webhook paths (Slack's `/services/`, Discord's
/// `/api/webhooks/`); every other segment of a webhook's path is secret.
const WEBHOOK_WORDS: &[&str] = &["hook", "hooks", "webhook", "webhooks", "webhookb2", "api", "services"];

fn redact_path(path: &str, webhook: bool) -> String {
    let mut out = String::with_capacity(path.len());
    let mut kept_first = false;
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if segment.is_empty() {
            continue;
        }
        let hide = (webhook && kept_first && !WEBHOOK_WORDS.contains(&segment.to_ascii_lowercase().as_str()))
            || looks_generated(segment);
        kept_first = true;
        out.push_str(if hide { MASK } else { segment });
    }
    out
}

/// A long run of letters and digits mixed, without the dots and dashes of
/// names people choose: a generated token, not a resource name.
fn looks_generated(segment: &str) -> bool {
    segment.len() >= 20
        && segment.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && segment.chars().any(|c| c.is_ascii_digit())
        && segment.chars().any(|c| c.is_ascii_alphabetic())
        && segment.chars().filter(|c| *c == '-').count() < 3
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_name(k) => format!("{k}={MASK}"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_secret_name(name: &str) -> bool {
    let name: String = name.chars().filter(|c| *c != '-' && *c != '_').collect::<String>().to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

/// Hides the secrets in free text: every URL in it (see [`url`]) and the
/// value of a libpq-style `password=VALUE` pair.
pub fn text(text: &str) -> String {
    if !text.contains("://") && !text.to_ascii_lowercase().contains("password=") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        // The scheme: letters, digits, '+', '-', '.' before "://".
        let start = rest[..found]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let end = found
            + rest[found..]
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
                .unwrap_or(rest.len() - found);
        // Punctuation that ends a sentence is not part of the URL.
        let end = start + rest[start..end].trim_end_matches(['.', ',', ';', ')', ']', '}']).len();
        out.push_str(&password_pairs(&rest[..start]));
        out.push_str(&url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(&password_pairs(rest));
    out
}

/// `host=db password=s3cret user=app` → `host=db password=*** user=app`.
fn password_pairs(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(i) = lower[from..].find("password=") {
        let value_start = from + i + "password=".len();
        let value_end = text[value_start..].find(char::is_whitespace).map_or(text.len(), |e| value_start + e);
        out.push_str(&text[from..value_start]);
        out.push_str(MASK);
        from = value_end;
    }
    out.push_str(&text[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_user_info_and_query_are_hidden() {
        assert_eq!(url("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(
            url("postgres://app@db/x?password=s3cret&sslmode=require"),
            "postgres://app@db/x?password=***&sslmode=require"
        );
        assert_eq!(
            url("https://api.example.com/v1?access_token=abc&X-Amz-Signature=f00&region=eu"),
            "https://api.example.com/v1?access_token=***&X-Amz-Signature=***&region=eu"
        );
        assert_eq!(url("not a url"), "not a url");
    }

    #[test]
    fn the_secret_path_of_a_webhook_is_hidden() {
        assert_eq!(
            url("https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"),
            "https://hooks.slack.com/services/***/***/***"
        );
        assert_eq!(url("https://discord.com/api/webhooks/123/tok-en"), "https://discord.com/api/webhooks/***/***");
        assert_eq!(url("http://ops.example.com/a1b2c3d4e5f6g7h8i9j0k1/run"), "http://ops.example.com/***/run");
        // Names people write are kept.
        assert_eq!(url("http://127.0.0.1:8080/api/v1/status"), "http://127.0.0.1:8080/api/v1/status");
        assert_eq!(url("s3://orders-archive-eu-west-1/2026/12"), "s3://orders-archive-eu-west-1/2026/12");
    }

    #[test]
    fn urls_and_password_pairs_inside_text_are_hidden() {
        assert_eq!(
            text("cannot connect to postgres://a:pw@db/x?password=pw2 (refused)."),
            "cannot connect to postgres://a:***@db/x?password=*** (refused)."
        );
        assert_eq!(text("host=db PASSWORD=pw user=app"), "host=db PASSWORD=*** user=app");
        assert_eq!(
            text("POST \"https://hooks.slack.com/services/T/B/SECRETSECRET\": 500"),
            "POST \"https://hooks.slack.com/services/***/***/***\": 500"
        );
        assert_eq!(text("nothing secret"), "nothing secret");
        assert_eq!(text("é://x"), "é://x", "a scheme after a multi-byte character");
        assert_eq!(text("ü:password=x"), "ü:password=***");
    }
}
