//! Which client a request forwarded by another controller came from.
//!
//! Why: a follower forwards an operator write (and a subscription) to the
//! leader, so the leader sees the follower's address. Every per-client
//! rule (the request rate, the subscription rate per network, the client
//! network rule, the address in the audit log) must apply to the client,
//! not to the follower, or all the clients of one follower share one
//! client's allowance and one of them can use it up for the others. So
//! the follower says who the client is, and proves it is a controller:
//! `x-drctl-forwarded-for` carries the client's address and
//! `x-drctl-forwarded-proof` a time and a keyed hash of (the forwarding
//! controller's id, the address, the time, the method, the path) under the
//! data key every controller sharing the store holds (docs/hardening.md).
//!
//! A request whose proof does not check (no key, another key, a forged or
//! stale one) loses all three headers and is judged by the address it
//! came from: anyone may send the headers, only a controller makes them
//! count.

use crate::api::auth::Remote;
use crate::Shared;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Request};
use axum::response::Response;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Marks a request one controller forwarded to another (never forwarded twice).
pub(crate) const FORWARDED: &str = "x-drctl-forwarded-by";
/// The address of the client a forwarded request came from.
pub(crate) const FORWARDED_FOR: &str = "x-drctl-forwarded-for";
/// `SECONDS.HASH`: when it was forwarded, and the keyed hash proving a controller did.
pub(crate) const FORWARDED_PROOF: &str = "x-drctl-forwarded-proof";

/// How far a proof's time may be from the leader's clock (either way).
const SKEW: Duration = Duration::from_secs(60);

pub(crate) fn proof(s: &Shared, by: &str, client: IpAddr, secs: u64, method: &str, path: &str) -> String {
    let text = format!("{by}\n{client}\n{secs}\n{method}\n{path}");
    s.opts.state.keyed_hash("forwarded client", text.as_bytes())
}

pub(crate) fn now_secs(s: &Shared) -> u64 {
    s.opts.clock.now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn path_of(req: &Request<Body>) -> &str {
    req.uri().path_and_query().map_or("/", |p| p.as_str())
}

/// Adds the client's address and its proof to a request this controller
/// (`me`) forwards, replacing any the client sent.
pub(crate) fn sign(s: &Shared, me: &str, client: IpAddr, req: &mut Request<Body>) {
    let secs = now_secs(s);
    let mac = proof(s, me, client, secs, req.method().as_str(), path_of(req));
    let h = req.headers_mut();
    if let (Ok(by), Ok(client), Ok(p)) = (
        HeaderValue::from_str(me),
        HeaderValue::from_str(&client.to_string()),
        HeaderValue::from_str(&format!("{secs}.{mac}")),
    ) {
        h.insert(FORWARDED, by);
        h.insert(FORWARDED_FOR, client);
        h.insert(FORWARDED_PROOF, p);
    }
}

/// The client a request was forwarded for, when its proof checks.
fn verified(s: &Shared, req: &Request<Body>) -> Option<IpAddr> {
    let text = |h: &HeaderMap, name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let h = req.headers();
    let by = text(h, FORWARDED)?;
    let client: IpAddr = text(h, FORWARDED_FOR)?.trim().parse().ok()?;
    let (secs, mac) = text(h, FORWARDED_PROOF)?.split_once('.').map(|(a, b)| (a.to_string(), b.to_string()))?;
    let secs: u64 = secs.parse().ok()?;
    if now_secs(s).abs_diff(secs) > SKEW.as_secs() {
        return None;
    }
    let want = proof(s, &by, client, secs, req.method().as_str(), path_of(req));
    // Compared in constant time: the hash must not leak byte by byte.
    let same = want.len() == mac.len() && want.bytes().zip(mac.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    same.then_some(client)
}

/// Judges a request by the client a controller forwarded it for (see the
/// module documentation): runs before every per-client rule.
pub(crate) async fn trust_forwarded(
    State(s): State<Arc<Shared>>,
    mut req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let claims = [FORWARDED, FORWARDED_FOR, FORWARDED_PROOF].iter().any(|h| req.headers().contains_key(*h));
    if claims {
        let from = req.extensions().get::<Remote>().map(|r| r.0);
        match (verified(&s, &req), from) {
            (Some(client), Some(from)) => {
                tracing::debug!(%client, controller = %from, "forwarded by a controller");
                req.extensions_mut().insert(Remote(SocketAddr::new(client, 0)));
            }
            _ => {
                tracing::debug!(client = ?from, "forwarding headers without a controller's proof: ignored");
                for name in [FORWARDED, FORWARDED_FOR, FORWARDED_PROOF] {
                    req.headers_mut().remove(name);
                }
            }
        }
    }
    next.run(req).await
}
