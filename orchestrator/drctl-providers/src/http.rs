//! HTTP health checks: healthy means a 2xx answer within the timeout.

use std::time::Duration;

pub use reqwest::Client;

/// Checks a URL once; `Err` says why it is not healthy, in words.
pub async fn check(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<(), String> {
    check_status(client, url, timeout, None).await
}

/// Like [`check`], healthy when the answer is `expect` (any 2xx when `None`).
pub async fn check_status(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    expect: Option<u16>,
) -> Result<(), String> {
    match client.get(url).timeout(timeout).send().await {
        Ok(resp) if expect.map_or(resp.status().is_success(), |e| resp.status().as_u16() == e) => Ok(()),
        Ok(resp) => Err(format!("{url} answered {}", resp.status())),
        Err(e) if e.is_timeout() => Err(format!("{url} did not answer within {}s", timeout.as_secs_f64())),
        Err(e) if e.is_connect() => Err(format!("cannot connect to {url}")),
        Err(e) => Err(format!("{url}: {}", innermost(&e))),
    }
}

/// The most specific cause ("connection closed before message completed"),
/// not reqwest's generic "error sending request".
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A client suitable for health checks (no redirects followed silently, rustls).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("drctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}
