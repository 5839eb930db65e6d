//! HTTP actions: `http.health`, `http.request`, `notify`.

use super::*;

impl RealActions {
    pub(super) async fn health(
        &self,
        url: &str,
        within: Duration,
        interval: Duration,
        expect_status: Option<u16>,
    ) -> Result<Note, ActionError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match drctl_providers::http::check_status(self.clients.http(), url, Duration::from_secs(5), expect_status)
                .await
            {
                Ok(()) => return Ok(Some(format!("{url} healthy"))),
                Err(why) if tokio::time::Instant::now() >= deadline => {
                    return Err(ActionError::Transient(format!("not healthy within {}s: {why}", within.as_secs_f64())))
                }
                Err(_) => tokio::time::sleep(interval).await,
            }
        }
    }

    /// `http.request` and `notify`: one request, with the same Idempotency-Key on every attempt.
    pub(super) async fn request(&self, execution: &str, step: &StepSpec, call: Call) -> Result<Note, ActionError> {
        let (url, method, headers, body, expected) = match call {
            Call::Notify { url, text, channel } => {
                let mut body = serde_json::json!({ "text": text });
                if let Some(c) = channel {
                    body["channel"] = c.into();
                }
                (url, "POST".to_string(), Vec::new(), Some(Body::Json(body)), None)
            }
            Call::HttpRequest { url, method, headers, body, expect_status } => {
                (url, method, headers, body, expect_status)
            }
            _ => unreachable!("matched above"),
        };
        let client = self.clients.http();
        let mut req = client.request(
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| ActionError::Fatal(e.to_string()))?,
            &url,
        );
        req = match body {
            Some(Body::Text(t)) => req.body(t),
            Some(Body::Json(j)) => req.json(&j),
            None => req,
        };
        for (k, v) in headers {
            req = req.header(k, v);
        }
        // The same key on every attempt and after a resume: a receiver
        // that honours it applies the effect once (docs/guide/safety.md).
        req = req.header("Idempotency-Key", format!("{execution}/{}", step.id));
        let resp = req
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| ActionError::Transient(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let ok = expected.map_or((200..300).contains(&status), |e| e == status);
        match (ok, status) {
            (true, _) => Ok(Some(format!("{method} {url}: {status}"))),
            (false, s) if s >= 500 || s == 429 => Err(ActionError::Transient(format!("{method} {url}: {s}"))),
            (false, s) => Err(ActionError::Fatal(format!("{method} {url}: {s}"))),
        }
    }
}
