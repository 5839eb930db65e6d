//! What the controller's clients may take from it.
//!
//! The status page is public and the controller is what an incident
//! commander reaches for on the worst day, so no client, careless or
//! hostile, may take it all: a cap on open connections (excess ones wait in
//! the kernel's backlog until a slot frees, rather than exhausting file
//! descriptors), a time limit on reading a request's headers (a client that
//! opens a connection and says nothing gives its slot back), a time limit on
//! answering, and a per-address rate of requests answered `429 Too Many
//! Requests` with `Retry-After` past its burst.
//!
//! Connections are counted per client too ([`Connections`]): an address
//! (an IPv6 client by its /64, which one host holds whole) keeps at most
//! `per_address` connections open, the ones past it closed at once, so a
//! client that opens a thousand idle sockets takes its own share and no
//! one else's. A request's body must arrive within `body_timeout`, and a
//! request with a body to the operator API is authenticated before a
//! byte of it is read.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The limits `drctl serve` enforces (`--max-connections`, `--rate-limit`,
/// `--request-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once, all clients together.
    pub max_connections: usize,
    /// Requests per second one client address may make on average; it may
    /// burst to twice as many. 0: no limit.
    pub rate_per_s: u32,
    /// How long a request may take to be answered.
    pub request_timeout: Duration,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// Connections one client (IPv4 address, IPv6 /64) may hold open.
    pub per_address: usize,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
    /// A second listener with connections of its own, for operators
    /// (`--admin-listen`): no load on the public one reaches it.
    pub admin_listen: Option<std::net::SocketAddr>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 512,
            rate_per_s: 50,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            per_address: 32,
            body_timeout: Duration::from_secs(10),
            admin_listen: None,
        }
    }
}

/// A token bucket per client address. Buckets of addresses that have been
/// quiet long enough to be full again are forgotten, so the table stays as
/// small as the set of clients that are active now.
pub(crate) struct RateLimiter {
    per_s: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub(crate) fn new(per_s: u32) -> RateLimiter {
        RateLimiter::with(f64::from(per_s), 2.0 * f64::from(per_s))
    }

    /// `per_s` on average (may be below one), bursts up to `burst`.
    pub(crate) fn with(per_s: f64, burst: f64) -> RateLimiter {
        RateLimiter { per_s, burst, buckets: Mutex::default() }
    }

    /// Takes one request from `ip`'s bucket, or says how long until one is there.
    pub(crate) fn take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_s <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 10_000 {
            let full_after = Duration::from_secs_f64(self.burst / self.per_s);
            buckets.retain(|_, (_, at)| now.duration_since(*at) < full_after);
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_s).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_s))
        }
    }
}

/// Who a connection is counted against: an IPv4 address, or an IPv6
/// address's /64 (an IPv4 address mapped into IPv6 counts as itself).
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Open connections per client; see the module documentation.
pub(crate) struct Connections {
    per_client: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection, counted until dropped.
pub(crate) struct Open {
    table: Arc<Connections>,
    key: IpAddr,
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl Connections {
    pub(crate) fn new(per_client: usize) -> Arc<Connections> {
        Arc::new(Connections { per_client: per_client.max(1), open: Mutex::default() })
    }

    /// Counts a new connection from `ip`, or None when its client holds its share.
    pub(crate) fn open(self: &Arc<Self>, ip: IpAddr) -> Option<Open> {
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.per_client {
            return None;
        }
        *n += 1;
        Some(Open { table: self.clone(), key })
    }
}

/// What a bearer token may do with a request body, decided before the body
/// is read: a caller without the role hears 403 before any parsing (a
/// customer's token learns nothing of a body's shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenAccess {
    /// No live token by that secret (401).
    Unknown,
    /// A live token whose role may change nothing through the operator API (403).
    ReadOnly,
    /// A live token that may send a body; the handler checks its exact role.
    MayWrite,
}

/// Judges a bearer token before a body is read.
pub(crate) type TokenCheck = Arc<dyn Fn(&str) -> TokenAccess + Send + Sync>;

/// The state the limiting middleware needs.
#[derive(Clone)]
pub(crate) struct Limiter {
    pub rate: Arc<RateLimiter>,
    pub request_timeout: Duration,
    pub body_timeout: Duration,
    /// Checks a bearer token before a body is read (None: no check, tests).
    pub authenticate: Option<TokenCheck>,
}

/// The largest request body read (the router refuses more anyway).
const MAX_BODY: usize = 64 * 1024;

/// Whether a request with a body needs a token: the operator API, but for
/// the endpoints anyone may call.
fn needs_token(path: &str) -> bool {
    path.starts_with("/api/v1/") && !path.starts_with("/api/v1/subscriptions")
}

fn error(status: StatusCode, message: &str) -> Response {
    let mut r = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"drctl\""));
    }
    r
}

fn too_many(retry_after: Duration) -> Response {
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut r = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(serde_json::json!({"error": format!("too many requests from this address: try again in {secs} s")})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Answers 429 past a client's rate, and 503 when the answer takes longer
/// than the request timeout (the work it started, a declaration say, goes
/// on: it is owned by the controller's task center, not by the request).
pub(crate) async fn limit(State(l): State<Limiter>, req: Request<Body>, next: axum::middleware::Next) -> Response {
    if let Some(ip) = req.extensions().get::<crate::api::auth::Remote>().map(|r| r.0.ip()) {
        if let Err(wait) = l.rate.take(ip, Instant::now()) {
            tracing::debug!(client = %ip, "rate limited");
            return too_many(wait);
        }
    }
    let has_body =
        req.headers().contains_key(header::CONTENT_LENGTH) || req.headers().contains_key(header::TRANSFER_ENCODING);
    let req = if has_body {
        if let Some(check) = l.authenticate.as_ref().filter(|_| needs_token(req.uri().path())) {
            let token = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .unwrap_or_default();
            if token.is_empty() {
                return error(StatusCode::UNAUTHORIZED, "send `Authorization: Bearer TOKEN` (`drctl token create`)");
            }
            match check(token) {
                TokenAccess::Unknown => return error(StatusCode::UNAUTHORIZED, "unknown or revoked token"),
                TokenAccess::ReadOnly => {
                    return error(
                        StatusCode::FORBIDDEN,
                        "this token's role changes nothing: an operator's token is needed",
                    )
                }
                TokenAccess::MayWrite => {}
            }
        }
        // The whole body within its deadline, or the connection's slot is
        // given back: a client trickling a body holds nothing for long.
        let (parts, body) = req.into_parts();
        match tokio::time::timeout(l.body_timeout, axum::body::to_bytes(body, MAX_BODY + 1)).await {
            Err(_) => {
                return error(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!("the request's body did not arrive within {} s", l.body_timeout.as_secs()),
                )
            }
            Ok(Err(_)) => {
                return error(StatusCode::PAYLOAD_TOO_LARGE, "the request's body is too large or was cut off")
            }
            Ok(Ok(bytes)) => Request::from_parts(parts, Body::from(bytes)),
        }
    } else {
        req
    };
    match tokio::time::timeout(l.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "error": format!("no answer within {} s; see `drctl executions` for work it started", l.request_timeout.as_secs())
            })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_its_rate_and_others_are_not_affected() {
        let limiter = RateLimiter::new(10);
        let t0 = Instant::now();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..20 {
            assert!(limiter.take(a, t0).is_ok());
        }
        let wait = limiter.take(a, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(limiter.take(b, t0).is_ok(), "another address has its own bucket");
        assert!(limiter.take(a, t0 + Duration::from_millis(100)).is_ok(), "a token back after 1/rate");
        assert!(limiter.take(a, t0 + Duration::from_millis(100)).is_err());
    }

    #[tokio::test]
    async fn a_request_past_its_time_is_answered_503_and_a_client_past_its_rate_429() {
        use tower::ServiceExt;
        let limiter = Limiter {
            rate: Arc::new(RateLimiter::new(1)),
            request_timeout: Duration::from_millis(50),
            body_timeout: Duration::from_millis(50),
            authenticate: None,
        };
        let app = axum::Router::new()
            .route("/slow", axum::routing::get(|| tokio::time::sleep(Duration::from_secs(30))))
            .route("/fast", axum::routing::get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(limiter, limit));
        let request = |path: &str| {
            let mut r = Request::builder().uri(path).body(Body::empty()).unwrap();
            r.extensions_mut().insert(crate::api::auth::Remote("127.0.0.9:1".parse().unwrap()));
            r
        };
        let started = std::time::Instant::now();
        let r = app.clone().oneshot(request("/slow")).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(5), "the timeout answered, not the handler");
        assert_eq!(app.clone().oneshot(request("/fast")).await.unwrap().status(), StatusCode::OK);
        let r = app.clone().oneshot(request("/fast")).await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "a burst of 2 at 1/s: the third waits");
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn connections_are_counted_per_address_and_per_ipv6_slash_64() {
        let table = Connections::new(2);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let first = table.open(a).unwrap();
        let _second = table.open(b).unwrap();
        assert!(table.open(a).is_none(), "the /64 holds its share");
        assert!(table.open(other).is_some(), "another /64 is not affected");
        drop(first);
        assert!(table.open(b).is_some(), "a closed connection gives its slot back");
        let v4 = Connections::new(1);
        let _x = v4.open("10.0.0.1".parse().unwrap()).unwrap();
        assert!(v4.open("::ffff:10.0.0.1".parse().unwrap()).is_none(), "mapped IPv4 is the same client");
        assert!(v4.open("10.0.0.2".parse().unwrap()).is_some());
    }

    #[tokio::test]
    async fn a_body_is_not_read_before_its_token_is_checked() {
        use tower::ServiceExt;
        let limiter = Limiter {
            rate: Arc::new(RateLimiter::new(0)),
            request_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            authenticate: Some(Arc::new(
                |t: &str| if t == "good" { TokenAccess::MayWrite } else { TokenAccess::Unknown },
            )),
        };
        let app = axum::Router::new()
            .route("/api/v1/incidents", axum::routing::post(|b: String| async move { b }))
            .layer(axum::middleware::from_fn_with_state(limiter, limit));
        let request = |token: Option<&str>| {
            let mut r = Request::builder().method("POST").uri("/api/v1/incidents").header("content-length", "2");
            if let Some(t) = token {
                r = r.header("authorization", format!("Bearer {t}"));
            }
            r.body(Body::from("{}")).unwrap()
        };
        assert_eq!(app.clone().oneshot(request(None)).await.unwrap().status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.clone().oneshot(request(Some("bad"))).await.unwrap().status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.clone().oneshot(request(Some("good"))).await.unwrap().status(), StatusCode::OK);
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = RateLimiter::new(0);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(limiter.take("127.0.0.2".parse().unwrap(), t0).is_ok());
        }
    }
}
