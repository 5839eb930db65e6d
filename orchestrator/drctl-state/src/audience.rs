//! Who is told, and what (docs/customers.md): subscriptions to the status page, the
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

/// One subscriber. Stored sealed (see [`crate::seal`]): its address and a
/// webhook's signing secret, needed to write each notification, never
/// leave the process in clear. Its tokens are never stored: the
/// confirmation token only as a hash, the unsubscribe token derived from
/// the store's key when a notification is written, and found again by an
/// index of its hash.
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
    /// Derived from the store's key on every read; never stored.
    #[serde(default, skip_serializing)]
    pub unsubscribe_token: String,
    pub secret: Option<String>,
    /// When its last confirmation link was made (a repeat re-sends at most
    /// once a day).
    #[serde(default)]
    pub confirm_sent_ms: Option<i64>,
}

/// How long an e-mail subscription may stay unconfirmed: then it is gone.
pub const PENDING_TTL_MS: i64 = 24 * 3_600_000;

/// The most unconfirmed subscriptions kept at once: past it, subscribing
/// is refused ([`Error::Full`]) until some confirm or expire.
pub const MAX_PENDING: usize = 10_000;

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
    /// The token of the confirmation link (e-mail); none when the address
    /// already has a subscription, or was sent a link within the day.
    pub confirm_token: Option<String>,
    /// The address had a subscription already: this is it (its secrets
    /// must not be shown to whoever asked again).
    pub existing: bool,
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
    /// A keyed hash (hex) of `value` for `purpose` under the data key, which
    /// every controller sharing this store holds: how one controller proves
    /// to another that it is one (a forwarded request's client address).
    fn keyed_hash(&self, purpose: &str, value: &[u8]) -> String;

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

    /// One subscription by id (a delivery's), read alone.
    fn subscription(&self, id: i64) -> Result<Option<Subscription>>;

    /// Forgets e-mail subscriptions left unconfirmed for [`PENDING_TTL_MS`]
    /// (and their queued confirmation); returns how many.
    fn expire_pending(&self, now: SystemTime) -> Result<usize>;

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

/// The kind of a confirmation message.
pub const CONFIRM_KIND: &str = "subscription.confirm";

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

    /// A pending delivery's place in its queue: confirmations queue apart
    /// (`due-c/`), so a flood of them never delays a notification.
    fn due_key(&self, d: &Delivery) -> String {
        let queue = if d.notification.kind == CONFIRM_KIND { "due-c" } else { "due" };
        self.key(&format!("{queue}/{:015}/{:012}", d.next_ms.max(0), d.id))
    }

    fn report_key(&self, incident: i64) -> String {
        self.key(&format!("report/{incident:012}"))
    }

    fn sub_index_key(&self, kind: &str, hash: &str) -> String {
        self.key(&format!("sub-{kind}/{hash}"))
    }

    fn pending_key(&self, created_ms: i64, id: i64) -> String {
        self.key(&format!("sub-pending/{:015}/{id:012}", created_ms.max(0)))
    }

    /// A subscriber's address as indexed: keyed, so the index tells
    /// nothing to whoever holds the store without its key.
    fn address_index(&self, target: &str) -> String {
        self.sealer().index("subscriber address", target.trim().to_lowercase().as_bytes())
    }

    /// The unsubscribe token of a subscription: derived, never stored.
    fn unsubscribe_token_of(&self, s: &Subscription) -> String {
        self.sealer().index("unsubscribe link", format!("{}:{}", s.id, s.created_ms).as_bytes())
    }

    fn read_sub(&self, key: &str, v: &Versioned) -> Result<Subscription> {
        let mut s: Subscription = self.open_doc(key, v)?;
        if s.unsubscribe_token.is_empty() {
            s.unsubscribe_token = self.unsubscribe_token_of(&s);
        }
        Ok(s)
    }

    /// The subscription an index entry points at.
    fn sub_by_index(&self, kind: &str, hash: &str) -> Result<Option<(Subscription, i64)>> {
        let index = self.sub_index_key(kind, hash);
        let Some(v) = self.kv().get(&index)? else { return Ok(None) };
        let id: i64 = decode(&index, &v)?;
        let key = self.sub_key(id);
        match self.kv().get(&key)? {
            Some(v) => Ok(Some((self.read_sub(&key, &v)?, v.version))),
            None => Ok(None),
        }
    }

    fn change_sub(
        &self,
        kind: &str,
        hash: &str,
        change: impl Fn(&mut Subscription) -> bool,
        extra: impl Fn(&Subscription) -> Vec<Op>,
    ) -> Result<Option<Subscription>> {
        self.retry(|| {
            let Some((mut s, version)) = self.sub_by_index(kind, hash)? else { return Ok(Some(None)) };
            if !change(&mut s) {
                return Ok(Some(None));
            }
            let key = self.sub_key(s.id);
            let mut ops = vec![Op::Put(key.clone(), self.seal_doc(&s))];
            ops.extend(extra(&s));
            let ok = self.kv().commit(Txn { checks: vec![Check::Version(key, version)], ops, leader_only: false })?;
            Ok(ok.then_some(Some(s)))
        })
    }

    /// How many unconfirmed subscriptions are kept.
    fn pending_count(&self) -> Result<usize> {
        let prefix = self.key("sub-pending/");
        self.kv().count(&prefix, &crate::kv::prefix_end(&prefix))
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
    fn keyed_hash(&self, purpose: &str, value: &[u8]) -> String {
        self.sealer().index(purpose, value)
    }

    fn subscribe(
        &self,
        channel: Channel,
        target: &str,
        services: &[String],
        lang: &str,
        now: SystemTime,
    ) -> Result<NewSubscription> {
        let now_ms = millis(now);
        let addr = self.address_index(target);
        if channel == Channel::Email {
            // One subscription per address: a repeat is told nothing new,
            // and re-sends the link at most once a day while it is pending.
            if let Some((existing, version)) = self.sub_by_index("addr", &addr)? {
                let live = match existing.state {
                    SubscriptionState::Active => true,
                    SubscriptionState::Pending => now_ms - existing.created_ms < PENDING_TTL_MS,
                    SubscriptionState::Unsubscribed => false,
                };
                if live {
                    let resend = existing.state == SubscriptionState::Pending
                        && existing.confirm_sent_ms.is_none_or(|t| now_ms - t >= PENDING_TTL_MS);
                    if !resend {
                        return Ok(NewSubscription { subscription: existing, confirm_token: None, existing: true });
                    }
                    let token = random_hex()?;
                    let mut s = existing.clone();
                    let old = s.confirm_hash.replace(token_hash(&token));
                    s.confirm_sent_ms = Some(now_ms);
                    let key = self.sub_key(s.id);
                    let mut ops = vec![
                        Op::Put(key.clone(), self.seal_doc(&s)),
                        Op::Put(self.sub_index_key("confirm", &token_hash(&token)), encode(&s.id)),
                    ];
                    if let Some(old) = old {
                        ops.push(Op::Delete(self.sub_index_key("confirm", &old)));
                    }
                    if self.kv().commit(Txn { checks: vec![Check::Version(key, version)], ops, leader_only: false })? {
                        return Ok(NewSubscription { subscription: s, confirm_token: Some(token), existing: true });
                    }
                    return Ok(NewSubscription { subscription: existing, confirm_token: None, existing: true });
                }
            }
        }
        let confirm = match channel {
            Channel::Email => Some(random_hex()?),
            Channel::Webhook => None,
        };
        let secret = match channel {
            Channel::Email => None,
            Channel::Webhook => Some(webhook_secret()?),
        };
        let sub = self.retry(|| {
            let (id, check, op) = self.next_seq("subscription")?;
            // Counted after the sequence is read: a subscription made by
            // anyone since moves the sequence and this commit fails and
            // counts again, so concurrent requests never pass the cap.
            if channel == Channel::Email && self.pending_count()? >= MAX_PENDING {
                return Err(Error::Full(format!(
                    "{MAX_PENDING} subscriptions are waiting for confirmation: try again later"
                )));
            }
            let mut sub = Subscription {
                id,
                channel,
                target: target.to_string(),
                services: services.to_vec(),
                lang: lang.to_string(),
                state: match channel {
                    Channel::Email => SubscriptionState::Pending,
                    Channel::Webhook => SubscriptionState::Active,
                },
                created_ms: now_ms,
                confirmed_ms: (channel == Channel::Webhook).then_some(now_ms),
                ended_ms: None,
                confirm_hash: confirm.as_deref().map(token_hash),
                unsubscribe_token: String::new(),
                secret: secret.clone(),
                confirm_sent_ms: confirm.as_ref().map(|_| now_ms),
            };
            sub.unsubscribe_token = self.unsubscribe_token_of(&sub);
            let key = self.sub_key(id);
            let mut ops = vec![
                op,
                Op::Put(key.clone(), self.seal_doc(&sub)),
                Op::Put(self.sub_index_key("unsub", &token_hash(&sub.unsubscribe_token)), encode(&id)),
            ];
            if let Some(h) = &sub.confirm_hash {
                ops.push(Op::Put(self.sub_index_key("confirm", h), encode(&id)));
                ops.push(Op::Put(self.pending_key(now_ms, id), encode(&id)));
            }
            if channel == Channel::Email {
                ops.push(Op::Put(self.sub_index_key("addr", &addr), encode(&id)));
            }
            let ok = self.kv().commit(Txn { checks: vec![check, Check::Absent(key)], ops, leader_only: false })?;
            Ok(ok.then_some(sub))
        })?;
        Ok(NewSubscription { subscription: sub, confirm_token: confirm, existing: false })
    }

    fn confirm_subscription(&self, token: &str, now: SystemTime) -> Result<Option<Subscription>> {
        let now_ms = millis(now);
        self.change_sub(
            "confirm",
            &token_hash(token),
            |s| match s.state {
                SubscriptionState::Pending if now_ms - s.created_ms >= PENDING_TTL_MS => false,
                SubscriptionState::Pending => {
                    s.state = SubscriptionState::Active;
                    s.confirmed_ms = Some(now_ms);
                    true
                }
                _ => true,
            },
            |s| vec![Op::Delete(self.pending_key(s.created_ms, s.id))],
        )
    }

    fn unsubscribe(&self, token: &str, now: SystemTime) -> Result<Option<Subscription>> {
        self.change_sub(
            "unsub",
            &token_hash(token),
            |s| {
                if s.state != SubscriptionState::Unsubscribed {
                    s.state = SubscriptionState::Unsubscribed;
                    s.ended_ms = Some(millis(now));
                }
                true
            },
            |s| vec![Op::Delete(self.pending_key(s.created_ms, s.id))],
        )
    }

    fn subscription(&self, id: i64) -> Result<Option<Subscription>> {
        let key = self.sub_key(id);
        self.kv().get(&key)?.map(|v| self.read_sub(&key, &v)).transpose()
    }

    fn subscriptions(&self) -> Result<Vec<Subscription>> {
        let prefix = self.key("sub/");
        self.kv().scan(&prefix, &crate::kv::prefix_end(&prefix))?.iter().map(|(k, v)| self.read_sub(k, v)).collect()
    }

    fn expire_pending(&self, now: SystemTime) -> Result<usize> {
        let prefix = self.key("sub-pending/");
        let end = self.key(&format!("sub-pending/{:015}", (millis(now) - PENDING_TTL_MS).max(0)));
        let mut gone = 0;
        for (k, v) in self.kv().scan(&prefix, &end)? {
            let id: i64 = decode(&k, &v)?;
            let key = self.sub_key(id);
            let mut ops = vec![Op::Delete(k.clone())];
            let mut checks = vec![];
            if let Some(sv) = self.kv().get(&key)? {
                let s = self.read_sub(&key, &sv)?;
                if s.state == SubscriptionState::Pending {
                    ops.push(Op::Delete(key.clone()));
                    ops.push(Op::Delete(self.sub_index_key("unsub", &token_hash(&s.unsubscribe_token))));
                    if let Some(h) = &s.confirm_hash {
                        ops.push(Op::Delete(self.sub_index_key("confirm", h)));
                    }
                    let addr = self.sub_index_key("addr", &self.address_index(&s.target));
                    if let Some(av) = self.kv().get(&addr)? {
                        if decode::<i64>(&addr, &av)? == id {
                            checks.push(Check::Version(addr.clone(), av.version));
                            ops.push(Op::Delete(addr));
                        }
                    }
                    // Its confirmation, if still queued, is not sent.
                    let marker_prefix = self.key(&format!("delivery-of/{id:012}/"));
                    for (mk, mv) in self.kv().scan(&marker_prefix, &crate::kv::prefix_end(&marker_prefix))? {
                        let did: i64 = decode(&mk, &mv)?;
                        let dk = self.delivery_key(did);
                        if let Some(dv) = self.kv().get(&dk)? {
                            ops.push(Op::Delete(self.due_key(&self.open_doc::<Delivery>(&dk, &dv)?)));
                        }
                        ops.push(Op::Delete(dk));
                        ops.push(Op::Delete(mk));
                    }
                    checks.push(Check::Version(key, sv.version));
                    gone += 1;
                }
            }
            self.kv().commit(Txn { checks, ops, leader_only: false })?;
        }
        Ok(gone)
    }

    fn enqueue(&self, n: &Notification, to: Option<i64>, now: SystemTime) -> Result<usize> {
        let candidates = match to {
            Some(id) => {
                let key = self.sub_key(id);
                match self.kv().get(&key)? {
                    Some(v) => vec![self.read_sub(&key, &v)?],
                    None => vec![],
                }
            }
            None => self.subscriptions()?,
        };
        let targets: Vec<Subscription> = candidates
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
                        Op::Put(self.delivery_key(id), self.seal_doc(&d)),
                        Op::Put(self.due_key(&d), encode(&id)),
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
        // Notifications first: confirmations take what room is left.
        let mut out = Vec::new();
        for queue in ["due", "due-c"] {
            let start = self.key(&format!("{queue}/"));
            let end = self.key(&format!("{queue}/{:015}~", millis(now).max(0)));
            for (k, v) in self.kv().scan(&start, &end)?.into_iter().take(limit.saturating_sub(out.len())) {
                let id: i64 = decode(&k, &v)?;
                let key = self.delivery_key(id);
                match self.kv().get(&key)? {
                    Some(v) => {
                        let d: Delivery = self.open_doc(&key, &v)?;
                        if d.state == DeliveryState::Pending {
                            out.push(d);
                        }
                    }
                    // Its subscription expired: the queue entry goes too.
                    None => {
                        self.kv().commit(Txn { checks: vec![], ops: vec![Op::Delete(k)], leader_only: false })?;
                    }
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
            let mut d: Delivery = self.open_doc(&key, &v)?;
            if d.state != DeliveryState::Pending {
                return Ok(Some(()));
            }
            let old_due = self.due_key(&d);
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
                    ops.push(Op::Put(self.due_key(&d), encode(&d.id)));
                }
                Attempt::GiveUp { error } => {
                    d.state = DeliveryState::GivenUp;
                    d.done_ms = Some(millis(now));
                    d.last_error = Some(error.clone());
                }
            }
            if d.state != DeliveryState::Pending {
                // A sent (or abandoned) message keeps no link: whoever
                // reads the store later cannot follow it.
                if let Some(p) = d.notification.payload.as_object_mut() {
                    p.retain(|k, _| !k.ends_with("_url"));
                }
            }
            ops.push(Op::Put(key.clone(), self.seal_doc(&d)));
            let ok = self.kv().commit(Txn {
                checks: vec![Check::Version(key.clone(), v.version)],
                ops,
                leader_only: false,
            })?;
            Ok(ok.then_some(()))
        })
    }

    fn deliveries(&self) -> Result<Vec<Delivery>> {
        let prefix = self.key("delivery/");
        self.kv().scan(&prefix, &crate::kv::prefix_end(&prefix))?.iter().map(|(k, v)| self.open_doc(k, v)).collect()
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

    fn count(&self, start: &str, end: &str) -> Result<usize> {
        crate::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare_cached("SELECT COUNT(*) FROM kv WHERE key >= ?1 AND key < ?2")?;
            let n: i64 = st.query_row(params![start, end], |r| r.get(0))?;
            Ok(usize::try_from(n).unwrap_or(0))
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
    fn keyed_hash(&self, purpose: &str, value: &[u8]) -> String {
        self.sealer().index(purpose, value)
    }

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
    fn subscription(&self, id: i64) -> Result<Option<Subscription>> {
        self.kv_part().subscription(id)
    }
    fn expire_pending(&self, now: SystemTime) -> Result<usize> {
        self.kv_part().expire_pending(now)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{KvStore, MemKv};
    use std::time::{Duration, UNIX_EPOCH};

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// What etcd receives: every value as it leaves the process.
    fn everything(s: &KvStore<MemKv>) -> String {
        s.kv()
            .scan("", "\u{7f}")
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={}\n", String::from_utf8_lossy(&v.value)))
            .collect()
    }

    /// Requests at once near the cap of unconfirmed subscriptions: exactly
    /// as many pass as there are places left (the SQLite store, which
    /// counts them in the database).
    #[test]
    fn the_pending_cap_holds_under_concurrent_subscribers() {
        let sqlite = crate::Sqlite::in_memory().unwrap();
        let s = &sqlite;
        for i in 0..MAX_PENDING - 10 {
            s.subscribe(Channel::Email, &format!("p{i}@example.org"), &[], "en", at(1_000)).unwrap();
        }
        let (made, full) = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|w| {
                    scope.spawn(move || {
                        let (mut made, mut full) = (0, 0);
                        for i in 0..5 {
                            match s.subscribe(Channel::Email, &format!("w{w}-{i}@example.org"), &[], "en", at(2_000)) {
                                Ok(_) => made += 1,
                                Err(Error::Full(_)) => full += 1,
                                Err(e) => panic!("{e}"),
                            }
                        }
                        (made, full)
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        });
        assert_eq!((made, full), (10, 30));
        let pending = s.subscriptions().unwrap().iter().filter(|x| x.state == SubscriptionState::Pending).count();
        assert_eq!(pending, MAX_PENDING);
    }

    #[test]
    fn addresses_secrets_and_tokens_never_leave_the_process_in_clear() {
        let s = KvStore::new(MemKv::default(), "/drctl/").unwrap();
        let mail = s.subscribe(Channel::Email, "someone@example.org", &[], "en", at(1_000)).unwrap();
        let hook = s.subscribe(Channel::Webhook, "https://hooks.example.org/p4th", &[], "en", at(1_000)).unwrap();
        let n = Notification {
            event: "e1".into(),
            kind: CONFIRM_KIND.into(),
            services: vec![],
            at_ms: 1_000,
            payload: serde_json::json!({"confirm_url": "https://status/subscriptions/confirm/x"}),
        };
        s.enqueue(&n, Some(mail.subscription.id), at(1_000)).unwrap();
        let stored = everything(&s);
        for secret in [
            "someone@example.org",
            "p4th",
            hook.subscription.secret.as_deref().unwrap(),
            &hook.subscription.unsubscribe_token,
            mail.confirm_token.as_deref().unwrap(),
            "/subscriptions/confirm/",
        ] {
            assert!(!stored.contains(secret), "`{secret}` is stored in clear");
        }
        // Found again by the index of the token's hash.
        let gone = s.unsubscribe(&hook.subscription.unsubscribe_token, at(2_000)).unwrap().unwrap();
        assert_eq!(gone.target, "https://hooks.example.org/p4th");
        let confirmed = s.confirm_subscription(mail.confirm_token.as_deref().unwrap(), at(2_000)).unwrap().unwrap();
        assert_eq!(confirmed.state, SubscriptionState::Active);
    }

    #[test]
    fn one_pending_confirmation_per_address_resent_at_most_daily_and_expired_after_a_day() {
        let s = KvStore::new(MemKv::default(), "/drctl/").unwrap();
        let first = s.subscribe(Channel::Email, "a@example.org", &[], "en", at(0)).unwrap();
        assert!(first.confirm_token.is_some() && !first.existing);
        let again = s.subscribe(Channel::Email, "A@example.org ", &[], "en", at(60_000)).unwrap();
        assert!(again.existing && again.confirm_token.is_none(), "no second mail within the day");
        assert_eq!(s.subscriptions().unwrap().len(), 1);
        // Expired after a day: its link no longer confirms, and it is gone.
        let day = PENDING_TTL_MS as u64;
        assert!(s.confirm_subscription(first.confirm_token.as_deref().unwrap(), at(day + 1)).unwrap().is_none());
        assert_eq!(s.expire_pending(at(day + 1)).unwrap(), 1);
        assert!(s.subscriptions().unwrap().is_empty());
        let fresh = s.subscribe(Channel::Email, "a@example.org", &[], "en", at(day + 2)).unwrap();
        assert!(!fresh.existing && fresh.confirm_token.is_some());
    }

    #[test]
    fn notifications_are_due_before_confirmations() {
        let s = KvStore::new(MemKv::default(), "/drctl/").unwrap();
        let hook = s.subscribe(Channel::Webhook, "https://h.example.org/x", &[], "en", at(0)).unwrap();
        for i in 0..5 {
            let m = s.subscribe(Channel::Email, &format!("p{i}@example.org"), &[], "en", at(0)).unwrap();
            let n = Notification {
                event: format!("subscription.{i}.confirm"),
                kind: CONFIRM_KIND.into(),
                services: vec![],
                at_ms: 0,
                payload: serde_json::json!({}),
            };
            s.enqueue(&n, Some(m.subscription.id), at(0)).unwrap();
        }
        let n = Notification {
            event: "incident.1.created".into(),
            kind: "incident.created".into(),
            services: vec![],
            at_ms: 10,
            payload: serde_json::json!({}),
        };
        s.enqueue(&n, None, at(20)).unwrap();
        let due = s.due_deliveries(at(30), 1).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].subscription, hook.subscription.id, "the notification goes first");
    }
}
