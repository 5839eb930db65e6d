//! Telling subscribers (docs/customers.md): events derived from the state store,
//! queued in its outbox, delivered by e-mail and signed webhooks.
//!
//! Events are not pushed by the code that opens an incident (the CLI, the
//! API, a drill, another controller): the leader's notifier reads the
//! incidents and maintenance windows every tick and offers each event they
//! imply to the outbox, which stores one delivery per subscriber and event
//! and ignores the rest. So an incident opened by `drctl declare` while no
//! controller ran is told when one starts, and nothing is told twice.
//!
//! Deliveries are retried with exponential backoff (`--notify-retry`, up to
//! an hour apart) and given up after a day, which `drctl subscriptions
//! list` shows. A webhook is signed as the Standard Webhooks specification
//! says: `webhook-id` (the same on every retry), `webhook-timestamp` and
//! `webhook-signature: v1,BASE64(HMAC-SHA256(secret, "id.timestamp.body"))`.

use crate::page::{rfc3339, Lang};
use crate::view::View;
use crate::Shared;
use drctl_state::audience::{Attempt, Channel, Delivery, Notification, Subscription, SubscriptionState};
use drctl_state::controller::{Incident, Maintenance};
use drctl_state::millis;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How the controller tells subscribers.
#[derive(Clone, Debug)]
pub struct NotifyOptions {
    /// `smtp://HOST:PORT` or `smtps://…`, with credentials in the URL or
    /// `DRCTL_SMTP_PASSWORD`; `None`: no e-mail (e-mail subscriptions refused).
    pub smtp: Option<String>,
    /// The `From:` of every e-mail.
    pub from: String,
    /// How often the outbox is read.
    pub every: Duration,
    /// The first retry's delay; each next one doubles, up to `retry_max`.
    pub retry_first: Duration,
    pub retry_max: Duration,
    /// A delivery still failing this long after it was queued is given up.
    pub give_up: Duration,
    /// Whether webhooks may point at loopback, private or link-local
    /// addresses (off: an anonymous subscriber could make the controller
    /// POST into its own network).
    pub allow_private_webhooks: bool,
    /// Let credentials go over plain `smtp://` (a local relay).
    pub smtp_insecure: bool,
}

impl Default for NotifyOptions {
    fn default() -> Self {
        NotifyOptions {
            smtp: None,
            from: "drctl <status@localhost>".into(),
            smtp_insecure: false,
            every: Duration::from_secs(1),
            retry_first: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            give_up: Duration::from_secs(86_400),
            allow_private_webhooks: false,
        }
    }
}

fn maintenance_json(m: &Maintenance, status: &str, base: &str) -> Value {
    json!({
        "id": m.id.to_string(),
        "name": m.title,
        "status": status,
        "created_at": rfc3339(m.created_at),
        "scheduled_for": rfc3339(m.starts_at),
        "scheduled_until": rfc3339(m.ends_at),
        "impact": "maintenance",
        "shortlink": base,
        "body": m.body,
        "components": m.services.iter().map(|s| json!({"id": format!("svc-{s}"), "name": s})).collect::<Vec<_>>(),
    })
}

/// Every event the incidents and maintenance windows imply, that happened
/// within `horizon` of `now` (older ones are history, not news).
pub(crate) fn events(
    view: &View,
    incidents: &[Incident],
    maintenance: &[Maintenance],
    base: &str,
    now: SystemTime,
    horizon: Duration,
) -> Vec<Notification> {
    let since = now.checked_sub(horizon).unwrap_or(UNIX_EPOCH);
    let page = json!({ "id": view.name, "name": view.name, "url": base });
    let mut out = Vec::new();
    for i in incidents {
        let object = crate::feeds::incident_json(i, view, base);
        // The store lists updates newest first; the first one opened it.
        let mut updates: Vec<_> = i.updates.iter().collect();
        updates.sort_by_key(|u| (u.at, u.id));
        for (n, u) in updates.into_iter().enumerate() {
            if u.at < since {
                continue;
            }
            let (event, kind) = match (n, u.status.as_str()) {
                (0, _) => (format!("incident.{}.created", i.id), "incident.created"),
                (_, "resolved") => (format!("incident.{}.update.{}", i.id, u.id), "incident.resolved"),
                _ => (format!("incident.{}.update.{}", i.id, u.id), "incident.updated"),
            };
            out.push(Notification {
                event,
                kind: kind.into(),
                services: i.services.clone(),
                at_ms: millis(u.at),
                payload: json!({ "page": page, "incident": object, "incident_update": {
                    "id": u.id.to_string(), "status": u.status, "body": u.body, "created_at": rfc3339(u.at) } }),
            });
        }
    }
    for m in maintenance {
        for (what, at) in [("scheduled", m.created_at), ("started", m.starts_at), ("completed", m.ends_at)] {
            if at < since || at > now {
                continue;
            }
            let status = match what {
                "scheduled" => "scheduled",
                "started" => "in_progress",
                _ => "completed",
            };
            out.push(Notification {
                event: format!("maintenance.{}.{what}", m.id),
                kind: format!("maintenance.{what}"),
                services: m.services.clone(),
                at_ms: millis(at),
                payload: json!({ "page": page, "scheduled_maintenance": maintenance_json(m, status, base) }),
            });
        }
    }
    out
}

/// The confirmation message of a new e-mail subscription.
pub(crate) fn confirmation(sub: &Subscription, token: &str, base: &str, page: &str, now: SystemTime) -> Notification {
    Notification {
        event: format!("subscription.{}.confirm", sub.id),
        kind: "subscription.confirm".into(),
        services: vec![],
        at_ms: millis(now),
        payload: json!({ "page": { "name": page, "url": base },
            "confirm_url": format!("{base}/subscriptions/confirm/{token}"), "services": sub.services }),
    }
}

/// The subject and plain-text body of an e-mail, in the subscriber's language.
pub(crate) fn email_text(n: &Notification, lang: Lang, unsubscribe: &str) -> (String, String) {
    let ja = lang == Lang::Ja;
    let p = &n.payload;
    let page = p["page"]["name"].as_str().unwrap_or("drctl");
    let (subject, mut body) = match n.kind.as_str() {
        "subscription.confirm" => {
            let services = p["services"]
                .as_array()
                .filter(|a| !a.is_empty())
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "));
            if ja {
                (
                    format!("[{page}] 購読の確認"),
                    format!(
                        "{page} の状況のお知らせ（{}）を購読するには、次のリンクを開いてください:\n\n{}\n\n心当たりがなければ、このメールは無視してください。\n",
                        services.unwrap_or_else(|| "すべてのサービス".into()),
                        p["confirm_url"].as_str().unwrap_or_default()
                    ),
                )
            } else {
                (
                    format!("[{page}] Confirm your subscription"),
                    format!(
                        "To be told about {page} ({}), open this link:\n\n{}\n\nIf you did not ask for this, ignore this e-mail.\n",
                        services.unwrap_or_else(|| "every service".into()),
                        p["confirm_url"].as_str().unwrap_or_default()
                    ),
                )
            }
        }
        k if k.starts_with("incident.") => {
            let i = &p["incident"];
            let u = &p["incident_update"];
            let link = format!(
                "{}/incidents/{}",
                p["page"]["url"].as_str().unwrap_or_default(),
                i["id"].as_str().unwrap_or_default()
            );
            let status = u["status"].as_str().unwrap_or_default();
            (
                format!("[{page}] {} ({})", i["name"].as_str().unwrap_or_default(), status_word(status, ja)),
                format!(
                    "{}\n\n{}: {}\n{}: {}\n\n{link}\n",
                    u["body"].as_str().unwrap_or_default(),
                    if ja { "状態" } else { "Status" },
                    status_word(status, ja),
                    if ja { "対象" } else { "Affects" },
                    component_names(i),
                ),
            )
        }
        _ => {
            let m = &p["scheduled_maintenance"];
            let what = n.kind.trim_start_matches("maintenance.");
            let word = match (what, ja) {
                ("scheduled", true) => "予定",
                ("started", true) => "開始",
                ("completed", true) => "完了",
                (w, _) => w,
            };
            (
                format!("[{page}] {} ({word})", m["name"].as_str().unwrap_or_default()),
                format!(
                    "{}\n\n{}: {} – {}\n{}: {}\n",
                    m["body"].as_str().unwrap_or_default(),
                    if ja { "時間" } else { "When" },
                    m["scheduled_for"].as_str().unwrap_or_default(),
                    m["scheduled_until"].as_str().unwrap_or_default(),
                    if ja { "対象" } else { "Affects" },
                    component_names(m),
                ),
            )
        }
    };
    body.push_str(&format!("\n-- \n{}: {unsubscribe}\n", if ja { "配信停止" } else { "Unsubscribe" }));
    (subject, body)
}

fn component_names(o: &Value) -> String {
    let names: Vec<&str> =
        o["components"].as_array().map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect()).unwrap_or_default();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(", ")
    }
}

fn status_word(s: &str, ja: bool) -> &str {
    if !ja {
        return s;
    }
    match s {
        "investigating" => "調査中",
        "identified" => "原因特定",
        "monitoring" => "経過観察",
        "resolved" => "解決済み",
        other => other,
    }
}

/// `v1,` and the Standard Webhooks signature of `id.timestamp.body`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|e| format!("the signing secret is not base64: {e}"))?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!("v1,{}", b64.encode(mac.finalize().into_bytes())))
}

/// The webhook body: Standard Webhooks' `type` and `timestamp`, then the
/// Statuspage-style objects (`page`, `incident` or `scheduled_maintenance`).
fn webhook_body(n: &Notification, unsubscribe: &str, now: SystemTime) -> Vec<u8> {
    let mut body = json!({ "type": n.kind, "timestamp": rfc3339(now), "unsubscribe": unsubscribe });
    if let (Some(out), Some(p)) = (body.as_object_mut(), n.payload.as_object()) {
        for (k, v) in p {
            if k != "confirm_url" {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Whether `url` may receive webhooks: http(s), no credentials, and
/// unless allowed, no address the controller's own networks could answer
/// on (checked when subscribing and again before each delivery, as a name
/// may resolve elsewhere later). Answers the address that was checked:
/// the delivery connects to it and to nothing else, so a name that
/// resolves to a public address for the check and a private one for the
/// connection (DNS rebinding) gains nothing.
pub(crate) async fn webhook_target(url: &str, allow_private: bool) -> Result<Option<std::net::SocketAddr>, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("the webhook URL does not parse: {e}"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err("a webhook URL is http:// or https://".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("a webhook URL carries no credentials: deliveries are signed instead".into());
    }
    let host = parsed.host_str().ok_or("the webhook URL names no host")?.to_string();
    if allow_private {
        return Ok(None);
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("the webhook's host `{host}` does not resolve: {e}"))?
        .collect();
    for a in &addrs {
        if let Some(what) = blocked(a.ip()) {
            return Err(format!(
                "the webhook's host `{host}` is a private address ({what}): not reachable from a public subscription (the controller's operator can allow it with --allow-private-webhooks)"
            ));
        }
    }
    addrs.first().copied().map(Some).ok_or_else(|| format!("the webhook's host `{host}` resolves to no address"))
}

/// The IPv4 address an IPv6 address carries, in every form that reaches
/// an IPv4 host: mapped (`::ffff:a.b.c.d`), translated (`::ffff:0:a.b.c.d`),
/// compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`).
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let low = std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, a, b, ..] => Some(std::net::Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8)),
        _ => None,
    }
}

/// Why a webhook may not be sent to `ip` (None: it may): judged by the
/// address, whatever its spelling.
pub(crate) fn blocked(ip: std::net::IpAddr) -> Option<&'static str> {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            let why = match (a, b, c) {
                (0, _, _) => "this network, 0.0.0.0/8",
                (10, _, _) => "private, 10.0.0.0/8",
                (100, 64..=127, _) => "shared address space, 100.64.0.0/10",
                (127, _, _) => "loopback",
                (169, 254, _) => "link-local",
                (172, 16..=31, _) => "private, 172.16.0.0/12",
                (192, 0, 0) => "IETF protocol assignments, 192.0.0.0/24",
                (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
                (192, 88, 99) => "6to4 relay anycast",
                (192, 168, _) => "private, 192.168.0.0/16",
                (198, 18..=19, _) => "benchmarking, 198.18.0.0/15",
                (224..=239, _, _) => "multicast",
                (240..=255, _, _) => "reserved (and broadcast)",
                _ => return None,
            };
            Some(why)
        }
        std::net::IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return blocked(std::net::IpAddr::V4(v4));
            }
            let s = v6.segments();
            let why = match s[0] {
                0xff00..=0xffff => "multicast",
                0xfc00..=0xfdff => "unique local",
                0xfe80..=0xfebf => "link-local",
                0xfec0..=0xfeff => "site-local, fec0::/10",
                0x0064 if s[1] == 0xff9b => "local-use NAT64, 64:ff9b:1::/48",
                0x0100 if s[1..4] == [0, 0, 0] => "discard-only, 100::/64",
                0x2001 if s[1] == 0 => "Teredo tunnel, 2001::/32",
                0x2001 if s[1] == 0x0db8 => "documentation",
                0x2001 if (0x0010..=0x002f).contains(&s[1]) => "ORCHID",
                0x2001 if s[1] == 0x0002 && s[2] == 0 => "benchmarking, 2001:2::/48",
                0x0000 => "reserved, ::/8",
                _ => return None,
            };
            Some(why)
        }
    }
}

async fn send_webhook(
    http: &reqwest::Client,
    sub: &Subscription,
    d: &Delivery,
    unsubscribe: &str,
    allow_private: bool,
    now: SystemTime,
) -> Result<(), String> {
    let checked = webhook_target(&sub.target, allow_private).await?;
    let secret = sub.secret.as_deref().ok_or("the subscription has no signing secret")?;
    // The connection goes to the address just checked, never to a second
    // answer for the same name; redirects are not followed.
    let pinned;
    let http = match checked {
        Some(addr) => {
            let host = reqwest::Url::parse(&sub.target)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            pinned = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(10))
                .resolve(host.trim_start_matches('[').trim_end_matches(']'), addr)
                .build()
                .map_err(|e| format!("cannot make the webhook client: {e}"))?;
            &pinned
        }
        None => http,
    };
    let ts = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let id = format!("msg_drctl_{}", d.id);
    let body = webhook_body(&d.notification, unsubscribe, now);
    let signature = sign(secret, &id, ts, &body)?;
    let r = http
        .post(&sub.target)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| drctl_core::redact::text(&e.to_string()))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", r.status()))
    }
}

/// Whether `--smtp URL` may be used, checked before the controller starts:
/// a known scheme, and credentials only where they travel encrypted
/// (`smtps://`, or `smtp+starttls://` whose STARTTLS is required) unless
/// `insecure` allows them over plain `smtp://`.
pub fn check_smtp(url: &str, insecure: bool) -> Result<(), String> {
    smtp_transport(url, insecure).map(|_| ())
}

/// How an SMTP URL wants the connection protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SmtpTls {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp+starttls://`: STARTTLS or nothing is sent.
    Required,
    /// `smtp://`: STARTTLS when the server offers it.
    Opportunistic,
}

/// The SMTP transport `--smtp` names; see [`check_smtp`].
pub(crate) fn smtp_transport(
    url: &str,
    insecure: bool,
) -> Result<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>, String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, Tokio1Executor};
    let (tls, rest) = if let Some(r) = url.strip_prefix("smtps://") {
        (SmtpTls::Implicit, r)
    } else if let Some(r) = url.strip_prefix("smtp+starttls://") {
        (SmtpTls::Required, r)
    } else if let Some(r) = url.strip_prefix("smtp://") {
        (SmtpTls::Opportunistic, r)
    } else {
        return Err(format!(
            "--smtp `{}`: use smtp://HOST:PORT, smtp+starttls://HOST:PORT (STARTTLS required) or smtps://HOST:PORT (TLS)",
            drctl_core::redact::url(url)
        ));
    };
    let (userinfo, hostport) = match rest.trim_end_matches('/').rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest.trim_end_matches('/')),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("--smtp: port `{p}` is not a number"))?),
        None => (hostport, if tls == SmtpTls::Implicit { 465 } else { 25 }),
    };
    if host.is_empty() {
        return Err("--smtp names no host".into());
    }
    let password = std::env::var("DRCTL_SMTP_PASSWORD").ok().filter(|p| !p.is_empty());
    if userinfo.is_some() && tls == SmtpTls::Opportunistic && !insecure {
        return Err(format!(
            "--smtp `{}` carries credentials over plain smtp://, where a server without STARTTLS (or someone between) receives the password in clear: use smtps://{host}:PORT or smtp+starttls://{host}:PORT, or --smtp-insecure to accept it",
            drctl_core::redact::url(url)
        ));
    }
    let params = || TlsParameters::new(host.to_string()).map_err(|e| format!("--smtp: TLS for `{host}`: {e}"));
    let mut b = match tls {
        SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(|e| e.to_string())?,
        SmtpTls::Required => {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).tls(Tls::Required(params()?))
        }
        SmtpTls::Opportunistic => {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).tls(Tls::Opportunistic(params()?))
        }
    }
    .port(port)
    .timeout(Some(Duration::from_secs(30)));
    if let Some(u) = userinfo {
        let (user, pass) = match u.split_once(':') {
            Some((user, pass)) => (user.to_string(), pass.to_string()),
            None => (u.to_string(), password.unwrap_or_default()),
        };
        b = b.credentials(Credentials::new(user, pass));
    }
    Ok(b.build())
}

async fn send_email(
    smtp: &lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: &str,
    sub: &Subscription,
    d: &Delivery,
    unsubscribe: &str,
) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::AsyncTransport;
    let lang = if sub.lang == "ja" { Lang::Ja } else { Lang::En };
    let (subject, body) = email_text(&d.notification, lang, unsubscribe);
    let mut m = lettre::Message::builder()
        .from(from.parse().map_err(|e| format!("--smtp-from `{from}`: {e}"))?)
        .to(sub.target.parse().map_err(|e| format!("the address `{}`: {e}", sub.target))?)
        .subject(subject)
        .message_id(Some(format!("<drctl-delivery-{}@{}>", d.id, host_of(from))));
    if d.notification.kind != "subscription.confirm" {
        m = m.header(ListUnsubscribe(format!("<{unsubscribe}>")));
        // RFC 8058: the mail client POSTs to the link itself (one click).
        m = m.header(ListUnsubscribePost);
    }
    let m = m.header(ContentType::TEXT_PLAIN).body(body).map_err(|e| e.to_string())?;
    smtp.send(m).await.map(|_| ()).map_err(|e| drctl_core::redact::text(&e.to_string()))
}

fn host_of(from: &str) -> &str {
    from.rsplit('@').next().map(|h| h.trim_end_matches('>')).filter(|h| !h.is_empty()).unwrap_or("drctl")
}

/// `List-Unsubscribe` (RFC 2369): mail clients show an unsubscribe button.
#[derive(Clone)]
struct ListUnsubscribe(String);

impl lettre::message::header::Header for ListUnsubscribe {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("List-Unsubscribe")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(s.to_string()))
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Clone)]
struct ListUnsubscribePost;

impl lettre::message::header::Header for ListUnsubscribePost {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".into())
    }
}

/// When a failed delivery is tried next (`None`: give up).
fn next_try(o: &NotifyOptions, d: &Delivery, now: SystemTime) -> Option<SystemTime> {
    let queued = UNIX_EPOCH + Duration::from_millis(d.created_ms.max(0) as u64);
    if now.duration_since(queued).unwrap_or_default() >= o.give_up {
        return None;
    }
    let delay = o.retry_first.saturating_mul(1u32 << d.attempts.min(20)).min(o.retry_max);
    Some(now + delay)
}

/// What the notifier has already done in this leadership, so a pass does
/// not redo it: events queued (queuing one again would add nobody, since
/// only subscribers confirmed before an event hear of it) and incidents
/// whose report exists. A new leader starts empty and offers each once.
#[derive(Default)]
pub(crate) struct Done {
    offered: std::collections::HashSet<String>,
    reported: std::collections::HashSet<i64>,
}

/// One pass: offer the events, draft the reports, deliver what is due.
pub(crate) async fn tick(
    s: &Arc<Shared>,
    smtp: Option<&lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
    done: &mut Done,
) {
    let state = &s.opts.state;
    let now = s.opts.clock.now();
    // Unconfirmed subscriptions a day old are forgotten, with their link.
    match state.expire_pending(now) {
        Ok(0) => {}
        Ok(n) => tracing::info!(expired = n, "unconfirmed subscriptions expired"),
        Err(e) => tracing::warn!(error = %e, "unconfirmed subscriptions could not be expired"),
    }
    let view = s.view.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(view) = view {
        let incidents = state.incidents().unwrap_or_default();
        let maintenance = state.maintenance().unwrap_or_default();
        let news = events(&view, &incidents, &maintenance, &s.base_url, now, s.opts.notify.give_up);
        for n in &news {
            if done.offered.contains(&n.event) {
                continue;
            }
            match state.enqueue(n, None, now) {
                Ok(_) => {
                    done.offered.insert(n.event.clone());
                }
                Err(e) => {
                    tracing::warn!(event = %n.event, error = %e, "an event could not be queued; tried again next pass")
                }
            }
        }
        // Past the horizon an event is no longer offered: forget it.
        done.offered.retain(|e| news.iter().any(|n| &n.event == e));
        done.reported.retain(|id| incidents.iter().any(|i| i.id == *id));
        crate::reports::draft_finished(s, &incidents, now, &mut done.reported);
    }
    let due = match state.due_deliveries(now, 64) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "the outbox cannot be read");
            return;
        }
    };
    if due.is_empty() {
        return;
    }
    // Each delivery's subscription alone: never every subscription (a
    // flood of unconfirmed ones would slow every pass).
    let jobs = due.into_iter().map(|d| {
        let sub = state.subscription(d.subscription).ok().flatten();
        async move {
            let now = s.opts.clock.now();
            let Some(sub) = sub else {
                return (d, Attempt::GiveUp { error: "the subscription is gone".into() });
            };
            if sub.state == SubscriptionState::Unsubscribed {
                return (d, Attempt::GiveUp { error: "unsubscribed".into() });
            }
            let unsubscribe = format!("{}/unsubscribe/{}", s.base_url, sub.unsubscribe_token);
            let sent = match sub.channel {
                Channel::Webhook => {
                    send_webhook(&s.http, &sub, &d, &unsubscribe, s.opts.notify.allow_private_webhooks, now).await
                }
                Channel::Email => match smtp {
                    Some(t) => send_email(t, &s.opts.notify.from, &sub, &d, &unsubscribe).await,
                    None => Err("this controller has no --smtp".into()),
                },
            };
            let attempt = match sent {
                Ok(()) => Attempt::Delivered,
                Err(error) => match next_try(&s.opts.notify, &d, now) {
                    Some(at) => Attempt::Retry { at, error },
                    None => {
                        Attempt::GiveUp { error: format!("failing for {}s: {error}", s.opts.notify.give_up.as_secs()) }
                    }
                },
            };
            (d, attempt)
        }
    });
    for (d, attempt) in futures::future::join_all(jobs).await {
        match &attempt {
            Attempt::Delivered => {
                tracing::info!(delivery = d.id, subscription = d.subscription, event = %d.notification.event, "delivered")
            }
            Attempt::Retry { error, .. } => {
                tracing::warn!(delivery = d.id, subscription = d.subscription, attempt = d.attempts + 1, error = %error, "delivery failed; retrying")
            }
            Attempt::GiveUp { error } => {
                tracing::warn!(delivery = d.id, subscription = d.subscription, error = %error, "delivery given up")
            }
        }
        if let Err(e) = state.record_attempt(d.id, &attempt, s.opts.clock.now()) {
            tracing::warn!(delivery = d.id, error = %e, "the outcome of a delivery could not be recorded; it may be sent again (same webhook-id)");
        }
    }
}

/// The notifier loop (the leader's).
pub(crate) async fn run(s: Arc<Shared>, stop: drctl_runtime::CancellationToken) {
    let smtp = match s.opts.notify.smtp.as_deref().map(|u| smtp_transport(u, s.opts.notify.smtp_insecure)) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            (s.opts.say)(&format!("e-mail is off: {e}"));
            None
        }
        None => None,
    };
    let mut done = Done::default();
    loop {
        tick(&s, smtp.as_ref(), &mut done).await;
        tokio::select! {
            _ = s.opts.clock.sleep(s.opts.notify.every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view_at(now: SystemTime) -> View {
        let loaded = drctl_core::load_str(
            "version: 1\nname: shop\nzones: [ { name: az1, region: r1 } ]\nservices: [ { name: checkout, zones: [az1] } ]\n",
            std::path::Path::new("t.yaml"),
        );
        crate::view::build(crate::view::Inputs {
            restore_tests: Vec::new(),
            topo: &loaded.topology.unwrap(),
            status: None,
            incidents: vec![],
            maintenance: vec![],
            uptime: Default::default(),
            drills: &[],
            running_executions: vec![],
            now,
            expected_checks_per_day: 1440,
        })
    }

    #[test]
    fn incidents_and_maintenance_become_events_in_order_and_only_when_due() {
        use drctl_state::controller::IncidentUpdate;
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s);
        let now = t(1000);
        let update =
            |id, at, status: &str| IncidentUpdate { id, at, status: status.into(), body: format!("{status}.") };
        // The store lists updates newest first.
        let incident = Incident {
            id: 7,
            title: "Checkout slow".into(),
            status: "resolved".into(),
            services: vec!["checkout".into()],
            created_at: t(100),
            updated_at: t(300),
            resolved_at: Some(t(300)),
            execution_id: None,
            updates: vec![
                update(3, t(300), "resolved"),
                update(2, t(200), "monitoring"),
                update(1, t(100), "investigating"),
            ],
        };
        let window = |starts, ends| Maintenance {
            id: 4,
            title: "Upgrade".into(),
            body: "PostgreSQL 16".into(),
            services: vec![],
            starts_at: starts,
            ends_at: ends,
            created_at: t(50),
        };
        let v = view_at(now);
        let kinds = |m: &Maintenance| {
            events(
                &v,
                std::slice::from_ref(&incident),
                std::slice::from_ref(m),
                "https://status.example.com",
                now,
                Duration::from_secs(86_400),
            )
            .into_iter()
            .map(|n| (n.event, n.kind))
            .collect::<Vec<_>>()
        };
        let ev = |e: &str, k: &str| (e.to_string(), k.to_string());
        // In progress: scheduled and started, not completed.
        assert_eq!(
            kinds(&window(t(900), t(2000))),
            [
                ev("incident.7.created", "incident.created"),
                ev("incident.7.update.2", "incident.updated"),
                ev("incident.7.update.3", "incident.resolved"),
                ev("maintenance.4.scheduled", "maintenance.scheduled"),
                ev("maintenance.4.started", "maintenance.started"),
            ]
        );
        // Over: completed too.
        assert!(kinds(&window(t(500), t(900))).contains(&ev("maintenance.4.completed", "maintenance.completed")));
        // Older than the horizon: history, not news.
        let later = now + Duration::from_secs(2 * 86_400);
        assert!(events(&v, &[incident], &[], "https://s", later, Duration::from_secs(86_400)).is_empty());
    }

    #[test]
    fn the_signature_is_the_specifications_example() {
        // The example of the Standard Webhooks specification's reference
        // libraries (webhooks.md, "Signature scheme").
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[tokio::test]
    async fn every_spelling_of_a_private_address_is_refused() {
        for url in [
            "http://[::127.0.0.1]/x",
            "http://[64:ff9b::7f00:1]/x",
            "http://[::ffff:0:7f00:1]/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://[2002:7f00:1::]/x",
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x",
            "http://0.0.0.1/x",
            "http://224.0.0.1/x",
            "http://198.18.0.1/x",
            "http://[fec0::1]/x",
            "http://[ff02::1]/x",
            "http://[::]/x",
            "http://0177.0.0.1/x",
            "http://2130706433/x",
            "http://0x7f.1/x",
            "http://255.255.255.255/x",
            "http://240.0.0.1/x",
            "http://[fd00::1]/x",
            "http://[fe80::1]/x",
        ] {
            let e = webhook_target(url, false).await.unwrap_err();
            assert!(e.contains("private address"), "{url}: {e}");
        }
        assert!(blocked("93.184.216.34".parse().unwrap()).is_none());
        assert!(blocked("2606:2800:220:1:248:1893:25c8:1946".parse().unwrap()).is_none());
        assert!(blocked("2002:5db8:d822::1".parse().unwrap()).is_none(), "6to4 of a public address");
    }

    #[tokio::test]
    async fn webhooks_into_private_networks_are_refused_unless_allowed() {
        for url in ["http://127.0.0.1:9/hook", "http://10.1.2.3/x", "http://169.254.169.254/latest", "http://[::1]/x"] {
            let e = webhook_target(url, false).await.unwrap_err();
            assert!(e.contains("private address"), "{url}: {e}");
            assert!(webhook_target(url, true).await.is_ok(), "{url}");
        }
        assert!(webhook_target("ftp://example.com/x", true).await.is_err());
        assert!(webhook_target("https://user:pw@example.com/x", true).await.is_err());
    }

    #[test]
    fn retries_back_off_and_give_up_after_the_horizon() {
        let o = NotifyOptions::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut d = Delivery {
            id: 1,
            subscription: 1,
            notification: confirmation_for_test(),
            state: drctl_state::audience::DeliveryState::Pending,
            attempts: 0,
            next_ms: millis(t0),
            created_ms: millis(t0),
            done_ms: None,
            last_error: None,
        };
        assert_eq!(next_try(&o, &d, t0), Some(t0 + Duration::from_secs(30)));
        d.attempts = 3;
        assert_eq!(next_try(&o, &d, t0), Some(t0 + Duration::from_secs(240)));
        d.attempts = 30;
        assert_eq!(next_try(&o, &d, t0), Some(t0 + Duration::from_secs(3600)));
        assert_eq!(next_try(&o, &d, t0 + Duration::from_secs(86_400)), None);
    }

    fn confirmation_for_test() -> Notification {
        Notification {
            event: "e".into(),
            kind: "incident.created".into(),
            services: vec![],
            at_ms: 0,
            payload: json!({}),
        }
    }

    #[test]
    fn an_email_carries_its_unsubscribe_link_in_its_language() {
        let n = Notification {
            event: "incident.1.created".into(),
            kind: "incident.created".into(),
            services: vec!["checkout".into()],
            at_ms: 0,
            payload: json!({ "page": {"name": "shop", "url": "https://status.example.com"},
                "incident": {"id": "1", "name": "Checkout slow", "components": [{"name": "checkout"}]},
                "incident_update": {"status": "investigating", "body": "Looking."} }),
        };
        let (subject, body) = email_text(&n, Lang::En, "https://status.example.com/unsubscribe/T");
        assert_eq!(subject, "[shop] Checkout slow (investigating)");
        assert!(body.contains("Looking.") && body.contains("https://status.example.com/incidents/1"), "{body}");
        assert!(body.ends_with("Unsubscribe: https://status.example.com/unsubscribe/T\n"), "{body}");
        let (subject, body) = email_text(&n, Lang::Ja, "https://status.example.com/unsubscribe/T");
        assert_eq!(subject, "[shop] Checkout slow (調査中)");
        assert!(body.contains("配信停止: https://status.example.com/unsubscribe/T"), "{body}");
    }
}
