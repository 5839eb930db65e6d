//! HTTP for the people the page is for (docs/customers.md): subscribing (JSON, and
//! the page's form), confirming and unsubscribing, incident pages, customer
//! pages, and the operators' side of it (subscriptions, post-incident
//! reports).
//!
//! The subscribe endpoints need no token, so they are rate-limited per
//! client address on top of the server's limit, bounded in size, and never
//! make the controller contact an address of its own network (webhooks).
//! A subscription is not audited: the audit log is for operators' changes,
//! and an anonymous client must not be able to flood it.

use crate::api::answer::{bounded, check_services, problem, state_error, ApiError, ApiResult};
use crate::api::auth::{audit, authorize, token_of, Remote};
use crate::api::status::LangQuery;
use crate::page::{self, Lang};
use crate::Shared;
use axum::extract::{Path, Query, State as Ax};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use drctl_state::audience::{Channel, DeliveryState, NewSubscription, SubscriptionState};
use drctl_state::controller::Role;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/subscriptions", post(subscribe_json).get(list))
        .route("/subscribe", post(subscribe_form))
        // A link opens a page whose button POSTs: mail scanners that
        // follow links confirm and unsubscribe nobody. `POST /unsubscribe`
        // is also RFC 8058's one-click unsubscribe.
        .route("/subscriptions/confirm/{token}", get(confirm_page).post(confirm))
        .route("/unsubscribe/{token}", get(unsubscribe_page).post(unsubscribe))
        .route("/incidents/{id}", get(incident_page))
        .route("/api/v1/incidents/{id}/report", get(report).put(edit_report))
        .route("/api/v1/incidents/{id}/report/publish", post(publish_report))
        .route("/customer-link/{secret}", get(open_customer_link))
        .route("/customers/{name}", get(customer_page))
        .route("/customers/{name}/{file}", get(customer_file))
}

fn html(status: StatusCode, lang: Lang, body: String) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    r.headers_mut().insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.code()));
    r
}

fn lang_of(q: Option<&str>, headers: &HeaderMap) -> Lang {
    Lang::pick(q, headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
}

/// What a subscription asks for, from JSON or the form.
struct Ask {
    email: Option<String>,
    webhook: Option<String>,
    services: Vec<String>,
    lang: Lang,
}

fn plausible_email(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && a.len() <= 254
        && !a.chars().any(|c| c.is_whitespace() || c.is_control() || "<>,;\"\\()[]".contains(c))
}

/// The network a subscriber's rate is counted against: IPv4 /24, IPv6 /64.
fn network(ip: std::net::IpAddr) -> std::net::IpAddr {
    match crate::limits::client_key(ip) {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, 0))
        }
        v6 => v6,
    }
}

/// Checks and stores a subscription; mails the confirmation (through the outbox).
async fn make(s: &Arc<Shared>, remote: std::net::SocketAddr, ask: Ask) -> Result<NewSubscription, ApiError> {
    // Per network, not per address: an IPv4 /24 or an IPv6 /64 is one
    // client's to spread requests over.
    if let Err(wait) = s.subscribe_rate.take(network(remote.ip()), tokio::time::Instant::now()) {
        return Err(problem(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many subscriptions from this network: try again in {} s", wait.as_secs().max(1)),
        ));
    }
    if ask.services.len() > 256 {
        return Err(problem(StatusCode::UNPROCESSABLE_ENTITY, "too many services"));
    }
    check_services(s, &ask.services)?;
    let (channel, target) = match (ask.email, ask.webhook) {
        (Some(e), None) => {
            let e = e.trim().to_string();
            if !plausible_email(&e) {
                return Err(problem(StatusCode::UNPROCESSABLE_ENTITY, "`email` is not an e-mail address"));
            }
            if s.opts.notify.smtp.is_none() {
                return Err(problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this status page sends no e-mail (its controller runs without --smtp); subscribe with a webhook or the Atom feed",
                ));
            }
            (Channel::Email, e)
        }
        (None, Some(w)) => {
            bounded("webhook", &w, 2048)?;
            crate::notify::webhook_target(&w, s.opts.notify.allow_private_webhooks)
                .await
                .map_err(|e| problem(StatusCode::UNPROCESSABLE_ENTITY, e))?;
            (Channel::Webhook, w)
        }
        _ => return Err(problem(StatusCode::UNPROCESSABLE_ENTITY, "give one of `email` or `webhook`")),
    };
    let now = s.opts.clock.now();
    let made = s.opts.state.subscribe(channel, &target, &ask.services, ask.lang.code(), now).map_err(state_error)?;
    if let Some(token) = &made.confirm_token {
        let n = crate::notify::confirmation(&made.subscription, token, &s.base_url, &s.opts.topology.name, now);
        s.opts.state.enqueue(&n, Some(made.subscription.id), now).map_err(state_error)?;
    }
    tracing::info!(subscription = made.subscription.id, channel = channel.as_str(), "subscribed");
    Ok(made)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
    email: Option<String>,
    webhook: Option<String>,
    #[serde(default)]
    services: Vec<String>,
    lang: Option<String>,
}

async fn subscribe_json(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    Json(req): Json<SubscribeRequest>,
) -> ApiResult {
    let lang = Lang::pick(req.lang.as_deref(), None);
    let made = make(&s, remote, Ask { email: req.email, webhook: req.webhook, services: req.services, lang }).await?;
    let sub = &made.subscription;
    // An e-mail address gets the same answer whether or not it was known,
    // and its unsubscribe link only by mail: whoever typed it may not own it.
    if sub.channel == Channel::Email {
        return Ok((
            StatusCode::CREATED,
            Json(json!({
                "channel": sub.channel.as_str(),
                "state": "pending",
                "services": ask_services(&made),
                "note": "a confirmation link was sent to the address, unless one was sent within the day; nothing is sent until it is followed",
            })),
        )
            .into_response());
    }
    let mut body = json!({
        "id": sub.id,
        "channel": sub.channel.as_str(),
        "state": sub.state.as_str(),
        "services": sub.services,
        "unsubscribe_url": format!("{}/unsubscribe/{}", s.base_url, sub.unsubscribe_token),
    });
    if let Some(secret) = &sub.secret {
        body["secret"] = json!(secret);
        body["note"] = json!(
            "the signing secret is shown once: verify every delivery's webhook-signature with it (Standard Webhooks)"
        );
    } else {
        body["note"] = json!("a confirmation link was sent to the address; nothing is sent until it is followed");
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The services a subscription follows, as told to whoever asked (not an
/// existing subscription's).
fn ask_services(made: &NewSubscription) -> Vec<String> {
    if made.existing {
        Vec::new()
    } else {
        made.subscription.services.clone()
    }
}

/// The page's form: `application/x-www-form-urlencoded`, `services` repeated.
async fn subscribe_form(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    body: axum::body::Bytes,
) -> Response {
    let mut email = None;
    let mut services = Vec::new();
    let mut lang = None;
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "email" => email = Some(v.into_owned()),
            "services" => services.push(v.into_owned()),
            "lang" => lang = Some(v.into_owned()),
            _ => {}
        }
    }
    let lang = Lang::pick(lang.as_deref(), None);
    let ja = lang == Lang::Ja;
    let page_name = s.opts.topology.name.clone();
    match make(&s, remote, Ask { email: Some(email.unwrap_or_default()), webhook: None, services, lang }).await {
        Ok(_) => html(
            StatusCode::OK,
            lang,
            page::message(
                &page_name,
                if ja { "確認メールを送りました" } else { "Check your inbox" },
                if ja {
                    "確認用のリンクをメールでお送りしました。リンクを開くと購読が始まります。"
                } else {
                    "We sent you a confirmation link. Your subscription starts when you follow it."
                },
                lang,
            ),
        ),
        Err(e) => html(
            e.status,
            lang,
            page::message(
                &page_name,
                if ja { "購読できませんでした" } else { "Not subscribed" },
                e.body["error"].as_str().unwrap_or_default(),
                lang,
            ),
        ),
    }
}

/// A page's words, (English, Japanese).
type Words = (&'static str, &'static str);

/// What a mailed link's page says: when it worked, when the subscription
/// had ended (confirming), and when the link is unknown.
struct LinkPage {
    done: (Words, Words),
    ended: Option<(Words, Words)>,
    unknown: Words,
}

/// The page a mailed link answers with, in the subscriber's language.
fn link_page(
    s: &Shared,
    found: drctl_state::Result<Option<drctl_state::audience::Subscription>>,
    q: &LangQuery,
    headers: &HeaderMap,
    words: LinkPage,
) -> Response {
    let lang = match &found {
        Ok(Some(sub)) => Lang::pick(Some(&sub.lang), None),
        _ => lang_of(q.lang.as_deref(), headers),
    };
    let pick = |w: Words| if lang == Lang::Ja { w.1 } else { w.0 };
    let say = |status, (heading, text): (Words, Words)| {
        html(status, lang, page::message(&s.opts.topology.name, pick(heading), pick(text), lang))
    };
    match found {
        Ok(Some(sub)) if sub.state == SubscriptionState::Unsubscribed && words.ended.is_some() => {
            say(StatusCode::GONE, words.ended.unwrap_or(words.done))
        }
        Ok(Some(_)) => say(StatusCode::OK, words.done),
        Ok(None) => say(StatusCode::NOT_FOUND, (("Unknown link", "リンクが無効です"), words.unknown)),
        Err(e) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            lang,
            page::message(&s.opts.topology.name, "Error", &e.to_string(), lang),
        ),
    }
}

/// The page a link opens: what the button will do, and the button.
fn button_page(s: &Shared, q: &LangQuery, headers: &HeaderMap, words: (Words, Words, Words)) -> Response {
    let lang = lang_of(q.lang.as_deref(), headers);
    let pick = |w: Words| if lang == Lang::Ja { w.1 } else { w.0 };
    let (heading, text, button) = words;
    let body = page::message(&s.opts.topology.name, pick(heading), pick(text), lang);
    let form = format!(
        r#"<form method="post"><input type="hidden" name="lang" value="{}"><button type="submit">{}</button></form>"#,
        lang.code(),
        pick(button)
    );
    let body = body.replacen(r#"<p><a href="/?lang="#, &format!(r#"{form}<p><a href="/?lang="#), 1);
    let mut r = html(StatusCode::OK, lang, body);
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn confirm_page(Ax(s): Ax<Arc<Shared>>, Query(q): Query<LangQuery>, headers: HeaderMap) -> Response {
    button_page(
        &s,
        &q,
        &headers,
        (
            ("Confirm your subscription", "購読の確認"),
            (
                "Press the button to start receiving e-mail about this status page.",
                "ボタンを押すと、このステータスページのお知らせの配信が始まります。",
            ),
            ("Confirm", "確認する"),
        ),
    )
}

async fn unsubscribe_page(Ax(s): Ax<Arc<Shared>>, Query(q): Query<LangQuery>, headers: HeaderMap) -> Response {
    button_page(
        &s,
        &q,
        &headers,
        (
            ("Unsubscribe", "配信停止"),
            ("Press the button to stop receiving messages from this status page.", "ボタンを押すと配信を停止します。"),
            ("Unsubscribe", "配信を停止する"),
        ),
    )
}

async fn confirm(
    Ax(s): Ax<Arc<Shared>>,
    Path(token): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let found = s.opts.state.confirm_subscription(&token, s.opts.clock.now());
    link_page(
        &s,
        found,
        &q,
        &headers,
        LinkPage {
            done: (
                ("You are subscribed", "購読を開始しました"),
                ("We will e-mail you what happens from now on.", "今後のお知らせをメールでお送りします。"),
            ),
            ended: Some((
                ("This subscription has ended", "購読は停止されています"),
                ("Subscribe again from the status page.", "もう一度購読してください。"),
            )),
            unknown: ("This confirmation link is not known here.", "このリンクは使えません。"),
        },
    )
}

async fn unsubscribe(
    Ax(s): Ax<Arc<Shared>>,
    Path(token): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let found = s.opts.state.unsubscribe(&token, s.opts.clock.now());
    link_page(
        &s,
        found,
        &q,
        &headers,
        LinkPage {
            done: (
                ("You are unsubscribed", "配信を停止しました"),
                ("You will not hear from us again.", "今後お知らせは届きません。"),
            ),
            ended: None,
            unknown: ("This unsubscribe link is not known here.", "このリンクは使えません。"),
        },
    )
}

/// `GET /api/v1/subscriptions` (admin): every subscription and how its
/// deliveries went; never a token or a secret.
async fn list(Ax(s): Ax<Arc<Shared>>, Extension(Remote(remote)): Extension<Remote>, headers: HeaderMap) -> ApiResult {
    authorize(&s, &headers, remote, Role::Admin)?;
    Ok(Json(subscriptions_json(&*s.opts.state).map_err(state_error)?).into_response())
}

/// Every subscription with its delivery counts (the API and `drctl subscriptions list`).
pub fn subscriptions_json(state: &drctl_state::State) -> Result<Value, drctl_state::Error> {
    let deliveries = state.deliveries()?;
    let subs = state.subscriptions()?;
    Ok(Value::Array(
        subs.iter()
            .map(|sub| {
                let mine: Vec<_> = deliveries.iter().filter(|d| d.subscription == sub.id).collect();
                let count = |st: DeliveryState| mine.iter().filter(|d| d.state == st).count();
                let last_error = mine.iter().filter(|d| d.last_error.is_some()).max_by_key(|d| d.id);
                let mut v = sub.public();
                v["deliveries"] = json!({
                    "pending": count(DeliveryState::Pending),
                    "delivered": count(DeliveryState::Delivered),
                    "given_up": count(DeliveryState::GivenUp),
                });
                // Failing: something given up, or pending after retries.
                v["failing"] = json!(
                    count(DeliveryState::GivenUp) > 0
                        || mine.iter().any(|d| d.state == DeliveryState::Pending && d.attempts > 0)
                );
                v["last_error"] = json!(last_error.and_then(|d| d.last_error.as_deref().map(drctl_core::redact::text)));
                v
            })
            .collect(),
    ))
}

fn incident_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| problem(StatusCode::NOT_FOUND, format!("no incident `{raw}`")))
}

/// `/incidents/ID`: public, like the page that links to it.
async fn incident_page(
    Ax(s): Ax<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(q.lang.as_deref(), &headers);
    let view = s.view.read().unwrap_or_else(|p| p.into_inner()).clone();
    let found = incident_id(&id).ok().and_then(|id| s.opts.state.incidents().ok()?.into_iter().find(|i| i.id == id));
    let (Some(view), Some(i)) = (view, found) else {
        let ja = lang == Lang::Ja;
        return html(
            StatusCode::NOT_FOUND,
            lang,
            page::message(
                &s.opts.topology.name,
                if ja { "見つかりません" } else { "Not found" },
                if ja { "そのインシデントはありません。" } else { "There is no such incident." },
                lang,
            ),
        );
    };
    let report = s.opts.state.report(i.id).ok().flatten().filter(|r| r.published_ms.is_some()).map(|r| r.body);
    let mut r = html(StatusCode::OK, lang, page::incident_page(&view, &i, report.as_deref(), lang));
    r.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept-Language"));
    r
}

fn report_json(r: &drctl_state::audience::IncidentReport) -> Value {
    json!({
        "incident": r.incident,
        "body": r.body,
        "drafted_ms": r.drafted_ms,
        "edited_ms": r.edited_ms,
        "edited_by": r.edited_by,
        "published_ms": r.published_ms,
        "published_by": r.published_by,
    })
}

async fn report(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&s, &headers, remote, Role::Viewer)?;
    let id = incident_id(&id)?;
    match s.opts.state.report(id).map_err(state_error)? {
        Some(r) => Ok(Json(report_json(&r)).into_response()),
        None => Err(problem(
            StatusCode::NOT_FOUND,
            format!("incident {id} has no report yet: one is drafted when its execution ends, or PUT one"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportEdit {
    body: String,
}

async fn edit_report(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(req): Json<ReportEdit>,
) -> ApiResult {
    let who = authorize(&s, &headers, remote, Role::Operator)?;
    let id = incident_id(&id)?;
    bounded("body", &req.body, 60_000)?;
    if !s.opts.state.incidents().map_err(state_error)?.iter().any(|i| i.id == id) {
        return Err(problem(StatusCode::NOT_FOUND, format!("no incident {id}")));
    }
    audit(&s, &who, "report.edit", &format!("incident {id}"), &json!({"chars": req.body.chars().count()}))?;
    let r = s.opts.state.edit_report(id, &req.body, &who.name, s.opts.clock.now()).map_err(state_error)?;
    Ok(Json(report_json(&r)).into_response())
}

async fn publish_report(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let who = authorize(&s, &headers, remote, Role::Operator)?;
    let id = incident_id(&id)?;
    // What customers read is finished: a draft's placeholder is not. A
    // refusal is answered before the audit: the log records changes only.
    let Some(r) = s.opts.state.report(id).map_err(state_error)? else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("incident {id} has no report yet: one is drafted when its execution ends, or PUT one"),
        ));
    };
    if let Some(p) = crate::reports::placeholder_in(&r.body) {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the report still holds the placeholder `{p}`: write that part (PUT /api/v1/incidents/{id}/report), then publish"
            ),
        ));
    }
    audit(&s, &who, "report.publish", &format!("incident {id}"), &json!({}))?;
    let r = s.opts.state.publish_report(id, &who.name, s.opts.clock.now()).map_err(state_error)?;
    Ok(Json(report_json(&r)).into_response())
}

/// Who may see customer `name`'s page: that customer's token, or an
/// operator's. Another customer's token gets 403 whether `name` exists or
/// not; an operator asking for an unknown customer gets 404.
fn customer_access<'a>(
    s: &'a Shared,
    headers: &HeaderMap,
    remote: std::net::SocketAddr,
    name: &str,
) -> Result<&'a drctl_core::topology::Contract, ApiError> {
    // A browser opened through a customer link carries its session cookie.
    if !headers.contains_key(header::AUTHORIZATION) {
        if let Some(session) = cookie(headers, LINK_COOKIE) {
            let link = s.opts.state.link_session(session, s.opts.clock.now()).map_err(state_error)?;
            return match link {
                Some(l) if l.customer == name => crate::customers::contract(s, name).ok_or_else(|| {
                    problem(StatusCode::NOT_FOUND, format!("the topology has no contract with `{name}`"))
                }),
                Some(_) => Err(problem(StatusCode::FORBIDDEN, "a customer link opens only its own customer's page")),
                None => Err(problem(
                    StatusCode::UNAUTHORIZED,
                    "this browser's link has expired or was revoked: ask for a new link",
                )),
            };
        }
    }
    let t = token_of(s, headers, remote)?;
    let mine = t.role == Role::Customer && t.customer.as_deref() == Some(name);
    if !mine && t.role < Role::Operator {
        return Err(problem(
            StatusCode::FORBIDDEN,
            match t.role {
                Role::Customer => "a customer token sees only its own customer's page".to_string(),
                _ => format!(
                    "token `{}` is {}; a customer's page needs that customer's token or an operator",
                    t.name,
                    t.role.as_str()
                ),
            },
        ));
    }
    crate::customers::contract(s, name)
        .ok_or_else(|| problem(StatusCode::NOT_FOUND, format!("the topology has no contract with `{name}`")))
}

/// The cookie a customer link's browser session lives in.
const LINK_COOKIE: &str = "drctl_customer";

/// The value of cookie `name`, if the request carries it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A customer link, opened: the secret in the address is exchanged at once
/// for a session cookie (HttpOnly, SameSite=Strict, Secure over TLS, sent
/// only to that customer's pages), and the browser moves on to the page's
/// clean address, so the secret leaves the address bar and history entry
/// behind and no Referer ever carries it. The move is a page that refreshes
/// itself rather than a 303: a link followed from a mail client is a
/// cross-site navigation, and a browser does not send a SameSite=Strict
/// cookie on a redirect that continues one; a refresh the page itself
/// makes is same-site. The secret is never logged.
async fn open_customer_link(Ax(s): Ax<Arc<Shared>>, Path(secret): Path<String>) -> Response {
    let now = s.opts.clock.now();
    let opened = match s.opts.state.open_link_session(&secret, now) {
        Ok(o) => o,
        Err(e) => return state_error(e).into_response(),
    };
    let mut r = match opened {
        Some((link, session)) => {
            let to = format!("/customers/{}", utf8_percent_encode(&link.customer));
            let max_age = (link.expires_ms - drctl_state::millis(now)).max(0) / 1000;
            let secure = if s.opts.tls.is_some() { "; Secure" } else { "" };
            let cookie = format!(
                "{LINK_COOKIE}={session}; Path={to}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
            );
            let body = format!(
                r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><meta http-equiv="refresh" content="0; url={0}"><title>Opening your contract page</title></head><body><p><a href="{0}">Open your contract page</a></p></body></html>"#,
                page::esc(&to)
            );
            let mut r = html(StatusCode::OK, Lang::En, body);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        None => html(
            StatusCode::FORBIDDEN,
            Lang::En,
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Link expired</title></head><body><h1>This link has expired or was revoked</h1><p>Ask your contact for a new link to your contract page.</p></body></html>"#.to_string(),
        ),
    };
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// A customer's name as one path segment.
fn utf8_percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

async fn customer_page(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let contract = match customer_access(&s, &headers, remote, &name) {
        Ok(c) => c,
        // A person in a browser is told how to get in, not shown JSON.
        Err(e) if e.status == StatusCode::UNAUTHORIZED && !wants_json(&headers) => {
            return Ok(html(
                StatusCode::UNAUTHORIZED,
                Lang::En,
                r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Your contract page</title></head><body><h1>Open your contract page through your link</h1><p>This page opens through the link we sent you. If it has expired or was revoked, ask your contact for a new one.</p></body></html>"#.to_string(),
            ));
        }
        Err(e) => return Err(e),
    };
    let evidence = crate::customers::evidence_now(&s, contract);
    if wants_json(&headers) {
        return Ok(Json(evidence).into_response());
    }
    let mut r = html(StatusCode::OK, Lang::En, crate::customers::html(&evidence, false));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    r.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, crate::customers::csp());
    Ok(r)
}

async fn customer_file(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    Path((name, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let contract = customer_access(&s, &headers, remote, &name)?;
    let evidence = crate::customers::evidence_now(&s, contract);
    let mut r = match file.as_str() {
        "assurance.json" => Json(evidence).into_response(),
        "assurance.html" => {
            let mut r = html(StatusCode::OK, Lang::En, crate::customers::html(&evidence, true));
            r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, crate::customers::csp());
            r
        }
        _ => return Err(problem(StatusCode::NOT_FOUND, "use assurance.json or assurance.html")),
    };
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(r)
}
