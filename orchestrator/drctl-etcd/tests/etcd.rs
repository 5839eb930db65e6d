//! The etcd backend against a real three-member etcd cluster on loopback:
//! the store's whole contract, leader fencing, and the election.

use drctl_etcd::{open, open_controller};
use drctl_runtime::{CancellationToken, Leader, Leadership};
use drctl_state::journal::{exec_state, ExecutionRow};
use drctl_state::Error;
use drctl_testkit::{EtcdCluster, TcpProxy};
use std::time::{Duration, Instant, SystemTime};

fn me(id: &str) -> Leader {
    Leader { id: id.into(), url: format!("http://{id}.example:8080") }
}

fn exec(id: &str) -> ExecutionRow {
    ExecutionRow {
        id: id.into(),
        declared_at: SystemTime::now(),
        finished_at: None,
        state: exec_state::RUNNING.into(),
        reason: "drill".into(),
        plan: "{}".into(),
        options: "{}".into(),
    }
}

#[test]
fn etcd_keeps_the_store_contract() {
    let etcd = EtcdCluster::start(3);
    let state = open(&etcd.url("contract")).unwrap();
    drctl_state::conformance::check(&*state);
    // Another prefix is another, empty, installation on the same cluster.
    let other = open(&etcd.url("elsewhere")).unwrap();
    assert!(other.executions().unwrap().is_empty());
    assert_eq!(state.location(), format!("{}", etcd.url("contract")));
}

#[test]
fn the_store_survives_losing_one_member_of_three() {
    let mut etcd = EtcdCluster::start(3);
    let state = open(&etcd.url("quorum")).unwrap();
    state.create_execution(&exec("e1"), &[], &["db".into()]).unwrap();
    etcd.kill(0);
    state.set_execution_state("e1", exec_state::SUCCEEDED, Some(SystemTime::now())).unwrap();
    assert_eq!(state.execution("e1").unwrap().state, "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_a_deposed_one_cannot_write() {
    let etcd = EtcdCluster::start(3);
    let url = etcd.url("election");
    let ttl = Duration::from_secs(2);
    let (a_state, a) = open_controller(&url, me("a"), ttl, Default::default()).unwrap();
    let (b_state, b) = open_controller(&url, me("b"), ttl, Default::default()).unwrap();
    // Followers' leader-only writes are refused before anyone leads.
    assert!(matches!(a_state.create_execution(&exec("x"), &[], &[]), Err(Error::NotLeader(_))));

    let stop = CancellationToken::new();
    let a_lost = a.lead(stop.clone()).await.expect("a leads");
    assert_eq!(a.leader().await, Some(me("a")));
    a_state.create_execution(&exec("e1"), &[], &[]).unwrap();
    // b waits while a leads.
    let b_try = tokio::time::timeout(Duration::from_secs(3), b.lead(stop.clone())).await;
    assert!(b_try.is_err(), "b must not lead while a renews its lease");
    assert!(matches!(b_state.set_execution_state("e1", "failed", None), Err(Error::NotLeader(_))));
    // Operator writes go through any controller.
    b_state.request_abort("e1").unwrap();

    a.resign().await;
    assert!(a_lost.is_cancelled() || tokio::time::timeout(Duration::from_secs(2), a_lost.cancelled()).await.is_ok());
    let started = Instant::now();
    let _b_lost = b.lead(stop.clone()).await.expect("b leads after a resigns");
    assert!(started.elapsed() < Duration::from_secs(2), "a resignation hands over at once: {:?}", started.elapsed());
    assert_eq!(b.leader().await.map(|l| l.id), Some("b".into()));
    let err = a_state.set_execution_state("e1", exec_state::FAILED, None).unwrap_err();
    assert!(matches!(err, Error::NotLeader(_)), "{err}");
    b_state.set_execution_state("e1", exec_state::ABORTED, Some(SystemTime::now())).unwrap();
    assert_eq!(b_state.execution("e1").unwrap().state, "aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_etcd_stops_before_another_leads() {
    let etcd = EtcdCluster::start(3);
    // a reaches etcd only through a proxy that the test cuts.
    let proxy = TcpProxy::start(etcd.ports[0]);
    let a_url = format!("etcd://127.0.0.1:{}/cut", proxy.port);
    let ttl = Duration::from_secs(3);
    let (_a_state, a) = open_controller(&a_url, me("a"), ttl, Default::default()).unwrap();
    let (b_state, b) = open_controller(&etcd.url("cut"), me("b"), ttl, Default::default()).unwrap();
    let stop = CancellationToken::new();
    let a_lost = a.lead(stop.clone()).await.expect("a leads");
    let cut_at = Instant::now();
    proxy.cut();
    let b_leads = {
        let b = b.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let t = b.lead(stop).await;
            (Instant::now(), t.is_some())
        })
    };
    tokio::time::timeout(ttl + Duration::from_secs(2), a_lost.cancelled()).await.expect("a stops leading");
    let a_stopped = Instant::now();
    let (b_at, led) = tokio::time::timeout(ttl + Duration::from_secs(5), b_leads).await.unwrap().unwrap();
    assert!(led);
    assert!(
        a_stopped < b_at,
        "a stopped acting ({:?} after the cut) before b led ({:?})",
        a_stopped - cut_at,
        b_at - cut_at
    );
    assert!(b_at - cut_at < ttl + Duration::from_secs(2), "takeover took {:?}", b_at - cut_at);
    b_state.create_execution(&exec("after"), &[], &[]).unwrap();
}

/// Standard base64 (etcd's JSON gateway speaks it), for reading raw keys.
fn b64(data: &[u8], decode: bool) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if !decode {
        let mut out = Vec::new();
        for c in data.chunks(3) {
            let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                out.push(if i <= c.len() { A[(n >> (18 - 6 * i) & 63) as usize] } else { b'=' });
            }
        }
        return out;
    }
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for &ch in data.iter().filter(|&&c| c != b'=') {
        let Some(v) = A.iter().position(|&a| a == ch) else { continue };
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn etcd_holds_no_erasure_identifier_in_clear() {
    use std::io::{Read, Write};
    let etcd = EtcdCluster::start(1);
    let state = open(&etcd.url("ledger")).unwrap();
    let now = SystemTime::now();
    let r = state
        .create_erasure(&drctl_state::ErasureRequest {
            id: String::new(),
            requested_at: now,
            due_at: now + Duration::from_secs(86_400),
            who: "cli:test".into(),
            reason: "ticket 99".into(),
            subject: Some("person-5e2a-identifier".into()),
            erased_at: None,
            forgotten_at: None,
            copies: vec![],
        })
        .unwrap();
    assert_eq!(state.erasure(&r.id).unwrap().unwrap().subject.as_deref(), Some("person-5e2a-identifier"));
    // Every key and value under the prefix, as etcd itself returns them.
    let body = format!(
        "{{\"key\":\"{}\",\"range_end\":\"{}\"}}",
        String::from_utf8(b64(b"/", false)).unwrap(),
        String::from_utf8(b64(b"0", false)).unwrap()
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", etcd.ports[0])).unwrap();
    write!(
        s,
        "POST /v3/kv/range HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let json: serde_json::Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or("{}")).unwrap();
    let kvs = json["kvs"].as_array().cloned().unwrap_or_default();
    let mut ledger = 0;
    for kv in &kvs {
        let key = String::from_utf8_lossy(&b64(kv["key"].as_str().unwrap_or_default().as_bytes(), true)).to_string();
        let value = b64(kv["value"].as_str().unwrap_or_default().as_bytes(), true);
        ledger += usize::from(key.contains("erasure/"));
        assert!(!value.windows(11).any(|w| w == b"person-5e2a"), "{key} holds the identifier in clear");
        assert!(!value.windows(9).any(|w| w == b"ticket 99"), "{key} holds the reason in clear");
    }
    assert_eq!(ledger, 1, "the request is in etcd: {kvs:?}");
}
