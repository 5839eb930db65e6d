//! DNS records switched the standard way: an RFC 2136 UPDATE that replaces
//! one record set, then a query that proves the server answers with it.
//!
//! This is how a `lab-dns` route fails over (the lab's DNS server accepts
//! updates from loopback), and it works against any authoritative server
//! that accepts unsigned updates from this host (BIND, Knot, PowerDNS).

use crate::Error;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;

fn name(s: &str) -> Result<Name, Error> {
    let mut n = Name::from_ascii(s).map_err(|e| Error::Refused(format!("`{s}` is not a DNS name: {e}")))?;
    n.set_fqdn(true);
    Ok(n)
}

/// The zone a record belongs to when none is given: its name minus the first label.
pub fn parent_zone(record: &str) -> String {
    let trimmed = record.trim_end_matches('.');
    match trimmed.split_once('.') {
        Some((_, rest)) => format!("{rest}."),
        None => ".".to_string(),
    }
}

async fn exchange(server: &str, msg: &Message, timeout: Duration) -> Result<Message, Error> {
    let target = format!("dns://{server}");
    let addr: SocketAddr =
        server.parse().map_err(|_| Error::Refused(format!("the DNS server `{server}` is not an IP:port address")))?;
    let bytes = msg.to_vec().map_err(|e| Error::Refused(format!("cannot encode a DNS message: {e}")))?;
    let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
    let sock =
        UdpSocket::bind(bind).await.map_err(|e| Error::Connect { target: target.clone(), why: e.to_string() })?;
    sock.connect(addr).await.map_err(|e| Error::Connect { target: target.clone(), why: e.to_string() })?;
    // UDP: resend a few times within the deadline.
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; 4096];
    loop {
        sock.send(&bytes).await.map_err(|e| Error::Connect { target: target.clone(), why: e.to_string() })?;
        let wait = Duration::from_millis(300).min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let reply = Message::from_vec(&buf[..n]).map_err(|e| Error::Query {
                    target: target.clone(),
                    what: "reading the answer".into(),
                    why: e.to_string(),
                })?;
                if reply.metadata.id == msg.metadata.id {
                    return Ok(reply);
                }
            }
            Ok(Err(e)) => return Err(Error::Connect { target, why: e.to_string() }),
            Err(_) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Timeout { target, secs: timeout.as_secs_f64() })
            }
            Err(_) => {}
        }
    }
}

/// The A records a server answers for `record` (empty: no such name).
pub async fn query_a(server: &str, record: &str, timeout: Duration) -> Result<Vec<Ipv4Addr>, Error> {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = false;
    msg.add_query(Query::query(name(record)?, RecordType::A));
    let reply = exchange(server, &msg, timeout).await?;
    match reply.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        other => {
            return Err(Error::Query {
                target: format!("dns://{server}"),
                what: format!("looking up {record}"),
                why: other.to_string(),
            })
        }
    }
    let mut out: Vec<Ipv4Addr> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Replaces the A record set of `record` in `zone` with `values`, then
/// checks that the server answers with them. Idempotent: when the server
/// already answers with exactly these values, nothing is sent.
pub async fn replace_a(
    server: &str,
    zone: &str,
    record: &str,
    ttl: u32,
    values: &[String],
    timeout: Duration,
) -> Result<String, Error> {
    let mut wanted: Vec<Ipv4Addr> = values
        .iter()
        .map(|v| v.parse().map_err(|_| Error::Refused(format!("`{v}` is not an IPv4 address for an A record"))))
        .collect::<Result<_, _>>()?;
    wanted.sort();
    let list = wanted.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
    if query_a(server, record, timeout).await? == wanted {
        return Ok(format!("{record} already answers {list}"));
    }
    let mut msg = Message::new(rand_id(), MessageType::Query, OpCode::Update);
    let zone_name = name(zone)?;
    let rec_name = name(record)?;
    let mut zq = Query::new();
    zq.set_name(zone_name).set_query_class(DNSClass::IN).set_query_type(RecordType::SOA);
    msg.add_zone(zq);
    let mut delete = Record::update0(rec_name.clone(), 0, RecordType::A);
    delete.dns_class = DNSClass::ANY;
    msg.add_update(delete);
    for a in &wanted {
        msg.add_update(Record::from_rdata(rec_name.clone(), ttl, RData::A(A(*a))));
    }
    let reply = exchange(server, &msg, timeout).await?;
    if reply.metadata.response_code != ResponseCode::NoError {
        return Err(Error::Refused(format!(
            "dns://{server} refused the update of {record}: {}",
            reply.metadata.response_code
        )));
    }
    let now = query_a(server, record, timeout).await?;
    if now != wanted {
        return Err(Error::Refused(format!(
            "dns://{server} accepted the update but answers {record} with {now:?}, not {list}"
        )));
    }
    Ok(format!("{record} now answers {list}"))
}

fn rand_id() -> u16 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.subsec_nanos() ^ std::process::id()) as u16
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_zone_of_a_record_is_its_parent() {
        assert_eq!(super::parent_zone("checkout.lab."), "lab.");
        assert_eq!(super::parent_zone("a.b.example"), "b.example.");
    }
}
