//! Subscriptions, the outbox, post-incident reports and customer links on
//! the key-value space; SQLite keeps them in its `kv` table, etcd directly.
//! Times come from the caller's clock.

use super::{decode, encode, seg, Check, Kv, KvStore, Op, Txn, Versioned};
use crate::error::{Error, Result};
use crate::model::audience::LINK_SESSIONS;
use crate::model::audience::*;
use crate::model::controller::token_hash;
use crate::model::times::millis;
use crate::seal::{hex, random_bytes};
use std::time::SystemTime;

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
        self.kv().count(&prefix, &super::prefix_end(&prefix))
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
        self.kv().scan(&prefix, &super::prefix_end(&prefix))?.iter().map(|(k, v)| self.read_sub(k, v)).collect()
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
                    for (mk, mv) in self.kv().scan(&marker_prefix, &super::prefix_end(&marker_prefix))? {
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
        self.kv().scan(&prefix, &super::prefix_end(&prefix))?.iter().map(|(k, v)| self.open_doc(k, v)).collect()
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
