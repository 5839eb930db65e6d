//! The TLS settings of a PostgreSQL URL (`sslmode`, `sslrootcert`), read
//! one way by validation (which reports a bad one with its position) and
//! by the connection code in `drctl-providers` (which acts on it). They
//! used to list libpq's modes each for itself.

/// libpq's `sslmode` values, as drctl honours them (`allow` is `prefer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ))
            }
        })
    }

    /// Whether the server's certificate must chain to `sslrootcert`.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// The problem with a URL's TLS settings, if any (no query: none).
pub fn tls_problem(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let param = |key: &str| query.split('&').find_map(|p| p.strip_prefix(key)?.strip_prefix('='));
    match param("sslmode").map(SslMode::parse) {
        None => None,
        Some(Err(why)) => Some(why),
        Some(Ok(mode)) if mode.verifies() && param("sslrootcert").is_none() => {
            Some(format!("sslmode={} needs sslrootcert=PATH in the URL", param("sslmode").unwrap_or_default()))
        }
        Some(Ok(_)) => None,
    }
}
