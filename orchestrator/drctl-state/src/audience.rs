//! Who is told, and what (SPEC §12): subscriptions to the status page, the
//! outbox of notifications, and post-incident reports.
//!
//! Why an outbox: a notification is decided in one place (an incident was
//! opened) and delivered in another (an SMTP conversation, a webhook POST)
//! that can fail or be cut short by a restart. Each notification is written
//! as one delivery per subscriber, keyed by (subscriber, event), before any
//! attempt: a controller that dies in between finds it still pending, and
//! an event offered twice is stored once. A delivery keeps its id across
//! retries (the receiver's `webhook-id`, the e-mail's `Message-ID`), so a
//! receiver whose acknowledgement was lost can tell a retry from news.
//!
//! One implementation, on the key-value space ([`KvStore`]), serves both
//! backends: etcd directly, SQLite through its `kv` table ([`SqliteKv`]).
//! Times come from the caller's clock.

use crate::controller::{hex, random_bytes, token_hash};
use crate::kv::{decode, encode, seg, Check, Kv, KvStore, Op, Txn, Versioned};
use crate::{millis, Error, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// How a subscriber is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionState {
    /// An e-mail address that has not followed its confirmation link yet.
    Pending,
    Active,
    Unsubscribed,
}

impl SubscriptionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionState::Pending => "pending",
            SubscriptionState::Active => "active",
            SubscriptionState::Unsubscribed => "unsubscribed",
        }
    }
}

/// One subscriber. The secrets it holds (its unsubscribe token, a
/// webhook's signing secret) are needed to write each notification, so
/// they are stored; the confirmation token is stored only as a hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Subscription {
    pub id: i64,
    pub channel: Channel,
    /// The e-mail address or the webhook URL.
    pub target: String,
    /// Services followed; empty: every service.
    pub services: Vec<String>,
    /// The language of e-mails and pages (`en`, `ja`).
    pub lang: String,
    pub state: SubscriptionState,
    pub created_ms: i64,
    pub confirmed_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub confirm_hash: Option<String>,
    pub unsubscribe_token: String,
    pub secret: Option<String>,
}

impl Subscription {
    /// Whether a notification about `services` concerns this subscriber
    /// (a notification about no particular service concerns everyone).
    pub fn follows(&self, services: &[String]) -> bool {
        self.services.is_empty() || services.is_empty() || services.iter().any(|s| self.services.contains(s))
    }

    /// What may be shown of it (to an operator): no token, no secret.
    pub fn public(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "channel": self.channel.as_str(),
            "target": drctl_core::redact::url(&self.target),
            "services": self.services,
            "lang": self.lang,
            "state": self.state.as_str(),
            "created_ms": self.created_ms,
            "confirmed_ms": self.confirmed_ms,
            "ended_ms": self.ended_ms,
        })
    }
}

/// A subscription just made, with the secrets shown once.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub subscription: Subscription,
    /// The token of the confirmation link (e-mail).
    pub confirm_token: Option<String>,
}

/// Something subscribers are told.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notification {
    /// Unique per event (`incident.12.update.40`): the outbox keeps one
    /// delivery per subscriber and event.
    pub event: String,
    /// `incident.created|updated|resolved`,
    /// `maintenance.scheduled|started|completed`, `subscription.confirm`.
    pub kind: String,
    /// The services it concerns; empty: all.
    pub services: Vec<String>,
    /// When it happened: a subscriber confirmed later is not told.
    pub at_ms: i64,
    /// What is told: the Statuspage-style objects a webhook carries, from
    /// which each e-mail is written in its subscriber's language when sent.
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    GivenUp,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::GivenUp => "given_up",
        }
    }
}

/// One notification to one subscriber.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub subscription: i64,
    pub notification: Notification,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_ms: i64,
    pub created_ms: i64,
    pub done_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// How an attempt to deliver ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Delivered,
    /// Failed; try again at `at`.
    Retry {
        at: SystemTime,
        error: String,
    },
    /// Failed for good (a day of retries, or the subscriber left).
    GiveUp {
        error: String,
    },
}

/// A post-incident report: drafted from the journal and the audit log when
/// an execution ends, edited by an operator, published with the incident.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IncidentReport {
    pub incident: i64,
    pub body: String,
    pub drafted_ms: i64,
    pub edited_ms: Option<i64>,
    pub edited_by: Option<String>,
    pub published_ms: Option<i64>,
    pub published_by: Option<String>,
}

/// A link that opens one customer's contract page in a browser (`drctl
/// customer-link`): its secret is given once and only its hash is kept;
/// it opens the page until it expires or is revoked. Each time it is
/// opened, a browser session is made (a cookie), whose secret's hash is
/// kept here too, so revoking the link ends its sessions with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CustomerLink {
    pub id: String,
    pub customer: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub hash: String,
    pub created_ms: i64,
    pub created_by: String,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
    /// Hashes of the sessions opened with it, newest last (a few kept).
    #[serde(default)]
    pub sessions: Vec<String>,
}

impl CustomerLink {
    /// Whether it opens the page at `now`.
    pub fn usable(&self, now: SystemTime) -> bool {
        self.revoked_ms.is_none() && millis(now) < self.expires_ms
    }
}

/// Sessions kept per link: a link opened on more devices than this logs
/// out the oldest.
const LINK_SESSIONS: usize = 16;

/// A new link and its secret (`ID.SECRET`), shown once.
#[derive(Debug, Clone)]
pub struct NewCustomerLink {
    pub link: CustomerLink,
    pub secret: String,
}

/// Subscriptions, the outbox and reports; see the module documentation.
pub trait Audience: Send + Sync {
    /// A new subscription: e-mail pending until confirmed, webhook active
    /// (its URL answered by whoever registered it; its secret returned).
    fn subscribe(
        &self,
        channel: Channel,
        target: &str,
        services: &[String],
        lang: &str,
        now: SystemTime,
    ) -> Result<NewSubscription>;

    /// Confirms the subscription whose confirmation token this is (`None`:
    /// no such token; confirming twice is fine).
    fn confirm_subscription(&self, token: &str, now: SystemTime) -> Result<Option<Subscription>>;

    /// Ends the subscription whose unsubscribe token this is.
    fn unsubscribe(&self, token: &str, now: SystemTime) -> Result<Option<Subscription>>;

    fn subscriptions(&self) -> Result<Vec<Subscription>>;

    /// Queues `n` for every active subscriber it concerns (confirmed no
    /// later than it happened), or for subscription `to` alone whatever its
    /// state. Queuing the same event again queues nothing: the count is of
    /// deliveries new this call.
    fn enqueue(&self, n: &Notification, to: Option<i64>, now: SystemTime) -> Result<usize>;

    /// Pending deliveries due at `now`, soonest first.
    fn due_deliveries(&self, now: SystemTime, limit: usize) -> Result<Vec<Delivery>>;

    fn record_attempt(&self, delivery: i64, attempt: &Attempt, now: SystemTime) -> Result<()>;

    fn deliveries(&self) -> Result<Vec<Delivery>>;

    fn report(&self, incident: i64) -> Result<Option<IncidentReport>>;

    /// Stores a drafted report unless the incident has one (`false` then).
    fn draft_report(&self, incident: i64, body: &str, now: SystemTime) -> Result<bool>;

    fn edit_report(&self, incident: i64, body: &str, by: &str, now: SystemTime) -> Result<IncidentReport>;

    fn publish_report(&self, incident: i64, by: &str, now: SystemTime) -> Result<IncidentReport>;

    /// A new link to `customer`'s page, usable until `expires`.
    fn create_customer_link(
        &self,
        customer: &str,
        by: &str,
        expires: SystemTime,
        now: SystemTime,
    ) -> Result<NewCustomerLink>;

    /// Every link, oldest first.
    fn customer_links(&self) -> Result<Vec<CustomerLink>>;

    /// The link a secret (`ID.SECRET`) is, whatever its state; `None` when
    /// it is none.
    fn customer_link(&self, secret: &str) -> Result<Option<CustomerLink>>;

    /// Opens a session with a usable link: answers the session's secret
    /// (`ID.SECRET`, for a cookie), `None` when the link is not usable.
    fn open_link_session(&self, link_secret: &str, now: SystemTime) -> Result<Option<(CustomerLink, String)>>;

    /// The link behind a session secret, when the session is one of a
    /// usable link's.
    fn link_session(&self, session: &str, now: SystemTime) -> Result<Option<CustomerLink>>;

    /// Revokes a link by id: it, and every session opened with it, stop working.
    fn revoke_customer_link(&self, id: &str, now: SystemTime) -> Result<CustomerLink>;
}

/// A link's token: 32 random bytes, hex.
fn random_hex() -> Result<String> {
    Ok(hex(&random_bytes("a link")?))
}

/// A Standard Webhooks signing secret: `whsec_` and 32 random bytes, base64.
fn webhook_secret() -> Result<String> {
    use base64::Engine;
    Ok(format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(random_bytes("a signing secret")?)))
}

impl<K: Kv> KvStore<K> {
    fn sub_key(&self, id: i64) -> String {
        self.key(&format!("sub/{id:012}"))
    }

    fn delivery_key(&self, id: i64) -> String {
        self.key(&format!("delivery/{id:012}"))
    }

    fn due_key(&self, next_ms: i64, id: i64) -> String {
        self.key(&format!("due/{:015}/{id:012}", next_ms.max(0)))
    }

    fn report_key(&self, incident: i64) -> String {
        self.key(&format!("report/{incident:012}"))
    }

    fn find_sub(&self, pred: impl Fn(&Subscription) -> bool) -> Result<Option<(Subscription, i64)>> {
        let prefix = self.key("sub/");
        for (k, v) in self.kv().scan(&prefix, &crate::kv::prefix_end(&prefix))? {
            let s: Subscription = decode(&k, &v)?;
            if pred(&s) {
                return Ok(Some((s, v.version)));
            }
        }
        Ok(None)
    }

    fn change_sub(
        &self,
        pred: impl Fn(&Subscription) -> bool,
        change: impl Fn(&mut Subscription),
    ) -> Result<Option<Subscription>> {
        self.retry(|| {
            let Some((mut s, version)) = self.find_sub(&pred)? else { return Ok(Some(None)) };
            change(&mut s);
            let key = self.sub_key(s.id);
            let ok = self.kv().commit(Txn {
                checks: vec![Check::Version(key.clone(), version)],
                ops: vec![Op::Put(key, encode(&s))],
                leader_only: false,
            })?;
            Ok(ok.then_some(Some(s)))
        })
    }

    fn link_key(&self, id: &str) -> String {
        self.key(&format!("customer-link/{}", seg(id)))
    }

    /// Changes a link by id, read and written whole.
    fn change_link<R>(
        &self,
        id: &str,
        change: impl Fn(&mut CustomerLink) -> Result<R>,
    ) -> Result<Option<(CustomerLink, R)>> {
        let key = self.link_key(id);
        self.retry(|| {
            let Some(v) = self.kv().get(&key)? else { return Ok(Some(None)) };
            let mut l: CustomerLink = decode(&key, &v)?;
            let r = change(&mut l)?;
            let ok = self.kv().commit(Txn {
                checks: vec![Check::Version(key.clone(), v.version)],
                ops: vec![Op::Put(key.clone(), encode(&l))],
                leader_only: false,
            })?;
            Ok(ok.then_some(Some((l, r))))
        })
    }

    fn change_report(&self, incident: i64, change: impl Fn(&mut IncidentReport)) -> Result<IncidentReport> {
        let key = self.report_key(incident);
        self.retry(|| {
            let Some(v) = self.kv().get(&key)? else {
                return Err(Error::NotFound(format!(
                    "incident {incident} has no report yet: one is drafted when its execution ends, or PUT one"
                )));
            };
            let mut r: IncidentReport = decode(&key, &v)?;
            change(&mut r);
            let ok = self.kv().commit(Txn {
                checks: vec![Check::Version(key.clone(), v.version)],
                ops: vec![Op::Put(key.clone(), encode(&r))],
                leader_only: false,
            })?;
            Ok(ok.then_some(r.clone()))
        })
    }
}

impl<K: Kv> Audience for KvStore<K> {
    fn subscribe(
        &self,
        channel: Channel,
        target: &str,
        services: &[String],
        lang: &str,
        now: SystemTime,
    ) -> Result<NewSubscription> {
        let confirm = match channel {
            Channel::Email => Some(random_hex()?),
            Channel::Webhook => None,
        };
        let secret = match channel {
            Channel::Email => None,
            Channel::Webhook => Some(webhook_secret()?),
        };
        let unsubscribe_token = random_hex()?;
        let sub = self.retry(|| {
            let (id, check, op) = self.next_seq("subscription")?;
            let sub = Subscription {
                id,
                channel,
                target: target.to_string(),
                services: services.to_vec(),
                lang: lang.to_string(),
                state: match channel {
                    Channel::Email => SubscriptionState::Pending,
                    Channel::Webhook => SubscriptionState::Active,
                },
                created_ms: millis(now),
                confirmed_ms: (channel == Channel::Webhook).then_some(millis(now)),
                ended_ms: None,
                confirm_hash: confirm.as_deref().map(token_hash),
                unsubscribe_token: unsubscribe_token.clone(),
                secret: secret.clone(),
            };
            let key = self.sub_key(id);
            let ok = self.kv().commit(Txn {
                checks: vec![check, Check::Absent(key.clone())],
                ops: vec![op, Op::Put(key, encode(&sub))],
                leader_only: false,
            })?;
            Ok(ok.then_some(sub))
        })?;
        Ok(NewSubscription { subscription: sub, confirm_token: confirm })
    }

    fn confirm_subscription(&self, token: &str, now: SystemTime) -> Result<Option<Subscription>> {
        let hash = token_hash(token);
        self.change_sub(
            |s| s.confirm_hash.as_deref() == Some(hash.as_str()),
            |s| {
                if s.state == SubscriptionState::Pending {
                    s.state = SubscriptionState::Active;
                    s.confirmed_ms = Some(millis(now));
                }
            },
        )
    }

    fn unsubscribe(&self, token: &str, now: SystemTime) -> Result<Option<Subscription>> {
        use subtle::ConstantTimeEq;
        self.change_sub(
            |s| bool::from(s.unsubscribe_token.as_bytes().ct_eq(token.as_bytes())),
            |s| {
                if s.state != SubscriptionState::Unsubscribed {
                    s.state = SubscriptionState::Unsubscribed;
                    s.ended_ms = Some(millis(now));
                }
            },
        )
    }

    fn subscriptions(&self) -> Result<Vec<Subscription>> {
        self.scan_docs(&self.key("sub/"))
    }

    fn enqueue(&self, n: &Notification, to: Option<i64>, now: SystemTime) -> Result<usize> {
        let targets: Vec<Subscription> = self
            .subscriptions()?
            .into_iter()
            .filter(|s| match to {
                Some(id) => s.id == id,
                None => {
                    s.state == SubscriptionState::Active
                        && s.confirmed_ms.is_some_and(|c| c <= n.at_ms)
                        && s.follows(&n.services)
                }
            })
            .collect();
        let mut queued = 0;
        for s in targets {
            let marker = self.key(&format!("delivery-of/{:012}/{}", s.id, seg(&n.event)));
            let new = self.retry(|| {
                if self.kv().get(&marker)?.is_some() {
                    return Ok(Some(false));
                }
                let (id, check, op) = self.next_seq("delivery")?;
                let d = Delivery {
                    id,
                    subscription: s.id,
                    notification: n.clone(),
                    state: DeliveryState::Pending,
                    attempts: 0,
                    next_ms: millis(now),
                    created_ms: millis(now),
                    done_ms: None,
                    last_error: None,
                };
                let ok = self.kv().commit(Txn {
                    checks: vec![check, Check::Absent(marker.clone())],
                    ops: vec![
                        op,
                        Op::Put(marker.clone(), encode(&id)),
                        Op::Put(self.delivery_key(id), encode(&d)),
                        Op::Put(self.due_key(d.next_ms, id), encode(&id)),
                    ],
                    leader_only: false,
                })?;
                Ok(ok.then_some(true))
            })?;
            queued += usize::from(new);
        }
        Ok(queued)
    }

    fn due_deliveries(&self, now: SystemTime, limit: usize) -> Result<Vec<Delivery>> {
        let start = self.key("due/");
        let end = self.key(&format!("due/{:015}~", millis(now).max(0)));
        let mut out = Vec::new();
        for (k, v) in self.kv().scan(&start, &end)?.into_iter().take(limit) {
            let id: i64 = decode(&k, &v)?;
            let key = self.delivery_key(id);
            if let Some(v) = self.kv().get(&key)? {
                let d: Delivery = decode(&key, &v)?;
                if d.state == DeliveryState::Pending {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    fn record_attempt(&self, delivery: i64, attempt: &Attempt, now: SystemTime) -> Result<()> {
        let key = self.delivery_key(delivery);
        self.retry(|| {
            let Some(v) = self.kv().get(&key)? else {
                return Err(Error::NotFound(format!("no delivery {delivery}")));
            };
            let mut d: Delivery = decode(&key, &v)?;
            if d.state != DeliveryState::Pending {
                return Ok(Some(()));
            }
            let old_due = self.due_key(d.next_ms, d.id);
            d.attempts += 1;
            let mut ops = vec![Op::Delete(old_due)];
            match attempt {
                Attempt::Delivered => {
                    d.state = DeliveryState::Delivered;
                    d.done_ms = Some(millis(now));
                }
                Attempt::Retry { at, error } => {
                    d.next_ms = millis(*at);
                    d.last_error = Some(error.clone());
                    ops.push(Op::Put(self.due_key(d.next_ms, d.id), encode(&d.id)));
                }
                Attempt::GiveUp { error } => {
                    d.state = DeliveryState::GivenUp;
                    d.done_ms = Some(millis(now));
                    d.last_error = Some(error.clone());
                }
            }
            ops.push(Op::Put(key.clone(), encode(&d)));
            let ok = self.kv().commit(Txn {
                checks: vec![Check::Version(key.clone(), v.version)],
                ops,
                leader_only: false,
            })?;
            Ok(ok.then_some(()))
        })
    }

    fn deliveries(&self) -> Result<Vec<Delivery>> {
        self.scan_docs(&self.key("delivery/"))
    }

    fn report(&self, incident: i64) -> Result<Option<IncidentReport>> {
        let key = self.report_key(incident);
        self.kv().get(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    fn draft_report(&self, incident: i64, body: &str, now: SystemTime) -> Result<bool> {
        let key = self.report_key(incident);
        let r = IncidentReport {
            incident,
            body: body.to_string(),
            drafted_ms: millis(now),
            edited_ms: None,
            edited_by: None,
            published_ms: None,
            published_by: None,
        };
        self.kv().commit(Txn {
            checks: vec![Check::Absent(key.clone())],
            ops: vec![Op::Put(key, encode(&r))],
            leader_only: false,
        })
    }

    fn edit_report(&self, incident: i64, body: &str, by: &str, now: SystemTime) -> Result<IncidentReport> {
        let key = self.report_key(incident);
        // An operator may write a report before (or without) a draft.
        if self.kv().get(&key)?.is_none() {
            self.draft_report(incident, "", now)?;
        }
        self.change_report(incident, |r| {
            r.body = body.to_string();
            r.edited_ms = Some(millis(now));
            r.edited_by = Some(by.to_string());
        })
    }

    fn publish_report(&self, incident: i64, by: &str, now: SystemTime) -> Result<IncidentReport> {
        self.change_report(incident, |r| {
            r.published_ms = Some(millis(now));
            r.published_by = Some(by.to_string());
        })
    }

    fn create_customer_link(
        &self,
        customer: &str,
        by: &str,
        expires: SystemTime,
        now: SystemTime,
    ) -> Result<NewCustomerLink> {
        let id = random_hex()?[..12].to_string();
        let secret = format!("{id}.{}", random_hex()?);
        let link = CustomerLink {
            id: id.clone(),
            customer: customer.to_string(),
            hash: token_hash(&secret),
            created_ms: millis(now),
            created_by: by.to_string(),
            expires_ms: millis(expires),
            revoked_ms: None,
            sessions: Vec::new(),
        };
        let key = self.link_key(&id);
        if !self.kv().commit(Txn {
            checks: vec![Check::Absent(key.clone())],
            ops: vec![Op::Put(key, encode(&link))],
            leader_only: false,
        })? {
            return Err(Error::Invalid(format!("a link {id} exists already; try again")));
        }
        Ok(NewCustomerLink { link, secret })
    }

    fn customer_links(&self) -> Result<Vec<CustomerLink>> {
        let mut all: Vec<CustomerLink> = self.scan_docs(&self.key("customer-link/"))?;
        all.sort_by_key(|l| l.created_ms);
        Ok(all)
    }

    fn customer_link(&self, secret: &str) -> Result<Option<CustomerLink>> {
        let Some((id, _)) = secret.split_once('.') else { return Ok(None) };
        let key = self.link_key(id);
        let Some(v) = self.kv().get(&key)? else { return Ok(None) };
        let l: CustomerLink = decode(&key, &v)?;
        let same: bool = subtle::ConstantTimeEq::ct_eq(l.hash.as_bytes(), token_hash(secret).as_bytes()).into();
        Ok(same.then_some(l))
    }

    fn open_link_session(&self, link_secret: &str, now: SystemTime) -> Result<Option<(CustomerLink, String)>> {
        let Some(link) = self.customer_link(link_secret)? else { return Ok(None) };
        if !link.usable(now) {
            return Ok(None);
        }
        let session = format!("{}.{}", link.id, random_hex()?);
        let hash = token_hash(&session);
        let changed = self.change_link(&link.id, |l| {
            l.sessions.push(hash.clone());
            let extra = l.sessions.len().saturating_sub(LINK_SESSIONS);
            l.sessions.drain(..extra);
            Ok(())
        })?;
        Ok(changed.map(|(l, ())| (l, session)))
    }

    fn link_session(&self, session: &str, now: SystemTime) -> Result<Option<CustomerLink>> {
        let Some((id, _)) = session.split_once('.') else { return Ok(None) };
        let key = self.link_key(id);
        let Some(v) = self.kv().get(&key)? else { return Ok(None) };
        let l: CustomerLink = decode(&key, &v)?;
        let hash = token_hash(session);
        let known = l.sessions.iter().any(|h| bool::from(subtle::ConstantTimeEq::ct_eq(h.as_bytes(), hash.as_bytes())));
        Ok((known && l.usable(now)).then_some(l))
    }

    fn revoke_customer_link(&self, id: &str, now: SystemTime) -> Result<CustomerLink> {
        let changed = self.change_link(id, |l| {
            if l.revoked_ms.is_none() {
                l.revoked_ms = Some(millis(now));
            }
            l.sessions.clear();
            Ok(())
        })?;
        changed
            .map(|(l, ())| l)
            .ok_or_else(|| Error::NotFound(format!("no customer link `{id}` (see `drctl customer-link list`)")))
    }
}

/// SQLite as a key-value space, for the parts of the store written once
/// on [`Kv`] (see the module documentation). Versions come from one
/// counter, so a key deleted and written again never repeats a version a
/// reader may hold.
pub struct SqliteKv {
    conn: Arc<Mutex<Connection>>,
    location: String,
}

impl SqliteKv {
    pub(crate) fn new(conn: Arc<Mutex<Connection>>, location: String) -> SqliteKv {
        SqliteKv { conn, location }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Kv for SqliteKv {
    fn location(&self) -> &str {
        &self.location
    }

    fn get(&self, key: &str) -> Result<Option<Versioned>> {
        crate::offload(|| {
            Ok(self
                .conn()
                .query_row("SELECT value, version FROM kv WHERE key = ?1", params![key], |r| {
                    Ok(Versioned { value: r.get(0)?, version: r.get(1)? })
                })
                .optional()?)
        })
    }

    fn scan(&self, start: &str, end: &str) -> Result<Vec<(String, Versioned)>> {
        crate::offload(|| {
            let conn = self.conn();
            let mut st =
                conn.prepare_cached("SELECT key, value, version FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key")?;
            let rows = st.query_map(params![start, end], |r| {
                Ok((r.get(0)?, Versioned { value: r.get(1)?, version: r.get(2)? }))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn commit(&self, txn: Txn) -> Result<bool> {
        crate::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for check in &txn.checks {
                let (key, want) = match check {
                    Check::Absent(k) => (k, None),
                    Check::Version(k, v) => (k, Some(*v)),
                };
                let found: Option<i64> =
                    tx.query_row("SELECT version FROM kv WHERE key = ?1", params![key], |r| r.get(0)).optional()?;
                if found != want {
                    return Ok(false);
                }
            }
            let version: i64 = tx.query_row("UPDATE kv_revision SET n = n + 1 RETURNING n", [], |r| r.get(0))?;
            for op in &txn.ops {
                match op {
                    Op::Put(k, v) => {
                        tx.execute(
                            "INSERT INTO kv (key, value, version) VALUES (?1, ?2, ?3)
                             ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version",
                            params![k, v, version],
                        )?;
                    }
                    Op::Delete(k) => {
                        tx.execute("DELETE FROM kv WHERE key = ?1", params![k])?;
                    }
                    Op::DeleteRange(a, b) => {
                        tx.execute("DELETE FROM kv WHERE key >= ?1 AND key < ?2", params![a, b])?;
                    }
                }
            }
            tx.commit()?;
            Ok(true)
        })
    }
}

impl Audience for crate::Sqlite {
    fn subscribe(
        &self,
        channel: Channel,
        target: &str,
        services: &[String],
        lang: &str,
        now: SystemTime,
    ) -> Result<NewSubscription> {
        self.kv_part().subscribe(channel, target, services, lang, now)
    }
    fn confirm_subscription(&self, token: &str, now: SystemTime) -> Result<Option<Subscription>> {
        self.kv_part().confirm_subscription(token, now)
    }
    fn unsubscribe(&self, token: &str, now: SystemTime) -> Result<Option<Subscription>> {
        self.kv_part().unsubscribe(token, now)
    }
    fn subscriptions(&self) -> Result<Vec<Subscription>> {
        self.kv_part().subscriptions()
    }
    fn enqueue(&self, n: &Notification, to: Option<i64>, now: SystemTime) -> Result<usize> {
        self.kv_part().enqueue(n, to, now)
    }
    fn due_deliveries(&self, now: SystemTime, limit: usize) -> Result<Vec<Delivery>> {
        self.kv_part().due_deliveries(now, limit)
    }
    fn record_attempt(&self, delivery: i64, attempt: &Attempt, now: SystemTime) -> Result<()> {
        self.kv_part().record_attempt(delivery, attempt, now)
    }
    fn deliveries(&self) -> Result<Vec<Delivery>> {
        self.kv_part().deliveries()
    }
    fn report(&self, incident: i64) -> Result<Option<IncidentReport>> {
        self.kv_part().report(incident)
    }
    fn draft_report(&self, incident: i64, body: &str, now: SystemTime) -> Result<bool> {
        self.kv_part().draft_report(incident, body, now)
    }
    fn edit_report(&self, incident: i64, body: &str, by: &str, now: SystemTime) -> Result<IncidentReport> {
        self.kv_part().edit_report(incident, body, by, now)
    }
    fn publish_report(&self, incident: i64, by: &str, now: SystemTime) -> Result<IncidentReport> {
        self.kv_part().publish_report(incident, by, now)
    }
    fn create_customer_link(
        &self,
        customer: &str,
        by: &str,
        expires: SystemTime,
        now: SystemTime,
    ) -> Result<NewCustomerLink> {
        self.kv_part().create_customer_link(customer, by, expires, now)
    }
    fn customer_links(&self) -> Result<Vec<CustomerLink>> {
        self.kv_part().customer_links()
    }
    fn customer_link(&self, secret: &str) -> Result<Option<CustomerLink>> {
        self.kv_part().customer_link(secret)
    }
    fn open_link_session(&self, link_secret: &str, now: SystemTime) -> Result<Option<(CustomerLink, String)>> {
        self.kv_part().open_link_session(link_secret, now)
    }
    fn link_session(&self, session: &str, now: SystemTime) -> Result<Option<CustomerLink>> {
        self.kv_part().link_session(session, now)
    }
    fn revoke_customer_link(&self, id: &str, now: SystemTime) -> Result<CustomerLink> {
        self.kv_part().revoke_customer_link(id, now)
    }
}
