//! The lab's authoritative DNS server for `lab.`: A records over UDP, and
//! RFC 2136 updates from loopback, which is how a `lab-dns` route fails
//! over (`dig @127.0.0.1 -p PORT checkout.lab.` shows the switch).

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

/// Records by lower-case fully qualified name.
pub type Records = Arc<Mutex<BTreeMap<String, (u32, Vec<Ipv4Addr>)>>>;

pub struct DnsServer {
    pub addr: SocketAddr,
    pub records: Records,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key(name: &hickory_proto::rr::Name) -> String {
    let mut s = name.to_ascii().to_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

impl DnsServer {
    pub async fn start(addr: SocketAddr, zone: &str, records: Records) -> std::io::Result<DnsServer> {
        let sock = UdpSocket::bind(addr).await?;
        let addr = sock.local_addr()?;
        let zone = zone.to_ascii_lowercase();
        let recs = records.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else { continue };
                let Ok(msg) = Message::from_vec(&buf[..n]) else { continue };
                let reply = answer(&msg, from, &zone, &recs);
                if let Ok(bytes) = reply.to_vec() {
                    let _ = sock.send_to(&bytes, from).await;
                }
            }
        });
        Ok(DnsServer { addr, records, task })
    }
}

fn answer(msg: &Message, from: SocketAddr, zone: &str, records: &Records) -> Message {
    let mut reply = Message::new(msg.metadata.id, MessageType::Response, msg.metadata.op_code);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = msg.metadata.recursion_desired;
    match msg.metadata.op_code {
        OpCode::Query => {
            reply.add_queries(msg.queries.iter().cloned());
            let Some(q) = msg.queries.first() else {
                reply.metadata.response_code = ResponseCode::FormErr;
                return reply;
            };
            let name = key(q.name());
            let map = records.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&name) {
                None if !name.ends_with(zone) => reply.metadata.response_code = ResponseCode::Refused,
                None => reply.metadata.response_code = ResponseCode::NXDomain,
                Some((ttl, addrs)) => {
                    if matches!(q.query_type(), RecordType::A | RecordType::ANY) {
                        for a in addrs {
                            reply.add_answer(Record::from_rdata(q.name().clone(), *ttl, RData::A(A(*a))));
                        }
                    }
                }
            }
        }
        OpCode::Update => {
            // Unsigned updates are accepted from this machine only.
            if !from.ip().is_loopback() {
                reply.metadata.response_code = ResponseCode::Refused;
                return reply;
            }
            if msg.zones().first().map(|z| key(z.name())) != Some(zone.to_string()) {
                reply.metadata.response_code = ResponseCode::NotZone;
                return reply;
            }
            let mut map = records.lock().unwrap_or_else(|p| p.into_inner());
            for r in msg.updates() {
                let name = key(&r.name);
                if !name.ends_with(zone) {
                    reply.metadata.response_code = ResponseCode::NotZone;
                    return reply;
                }
                match (r.dns_class, &r.data) {
                    // Delete an RRset (class ANY) or a name (type ANY).
                    (DNSClass::ANY, _) => {
                        map.remove(&name);
                    }
                    (DNSClass::IN, RData::A(a)) => {
                        let entry = map.entry(name).or_insert((r.ttl, Vec::new()));
                        entry.0 = r.ttl;
                        if !entry.1.contains(&a.0) {
                            entry.1.push(a.0);
                        }
                    }
                    (DNSClass::NONE, RData::A(a)) => {
                        if let Some(e) = map.get_mut(&name) {
                            e.1.retain(|x| *x != a.0);
                        }
                    }
                    _ => {
                        reply.metadata.response_code = ResponseCode::NotImp;
                        return reply;
                    }
                }
            }
        }
        _ => reply.metadata.response_code = ResponseCode::NotImp,
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use drctl_providers::dns;
    use std::time::Duration;

    #[tokio::test]
    async fn answers_and_takes_updates() {
        let records: Records = Default::default();
        records.lock().unwrap().insert("checkout.lab.".into(), (1, vec!["127.0.1.10".parse().unwrap()]));
        let s = DnsServer::start("127.0.0.1:0".parse().unwrap(), "lab.", records).await.unwrap();
        let server = s.addr.to_string();
        let t = Duration::from_secs(2);
        assert_eq!(dns::query_a(&server, "checkout.lab.", t).await.unwrap(), vec![Ipv4Addr::new(127, 0, 1, 10)]);
        assert!(dns::query_a(&server, "nothing.lab.", t).await.unwrap().is_empty());
        let note = dns::replace_a(&server, "lab.", "checkout.lab.", 1, &["127.0.2.10".into()], t).await.unwrap();
        assert_eq!(note, "checkout.lab. now answers 127.0.2.10");
        assert_eq!(dns::query_a(&server, "Checkout.LAB", t).await.unwrap(), vec![Ipv4Addr::new(127, 0, 2, 10)]);
        let again = dns::replace_a(&server, "lab.", "checkout.lab.", 1, &["127.0.2.10".into()], t).await.unwrap();
        assert!(again.contains("already"), "{again}");
        let wrong = dns::replace_a(&server, "other.", "x.other.", 1, &["127.0.2.10".into()], t).await;
        assert!(wrong.is_err(), "a zone it does not serve is refused");
    }
}
