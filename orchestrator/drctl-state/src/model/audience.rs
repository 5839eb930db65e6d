//! Who is told, and what (docs/customers.md): subscriptions to the status
//! page, the outbox of notifications, post-incident reports and customer
//! links, as records and the [`Audience`] trait.
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
//! One implementation, on the key-value space
//! ([`KvStore`](crate::kv::KvStore)), serves both backends.

use crate::error::Result;
use crate::model::times::millis;
use serde::{Deserialize, Serialize};
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
pub(crate) const LINK_SESSIONS: usize = 16;

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
