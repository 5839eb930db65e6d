//! The few etcd v3 calls drctl makes, over gRPC, on code generated once.
//!
//! drctl needs the KV service (range, transactions) and the Lease service
//! (grant, revoke, keep-alive) and nothing else. A general etcd client
//! crate generates its gRPC code in a build script, which needs `protoc`
//! on every machine that builds drctl; here the code is generated once
//! from etcd's `.proto` files (`proto/`, by `scripts/etcd-codegen.sh`) and
//! committed in `pb/`, so a build needs only Rust. The transport is
//! tonic's, as before: one channel balanced over every member, so a call
//! goes to a member that answers while a quorum does.

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::SinkExt;
use tonic::transport::channel::Change;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// etcd's messages and service clients, as `scripts/etcd-codegen.sh` wrote them.
#[allow(clippy::all, clippy::pedantic, dead_code, missing_docs, rustdoc::all)]
pub(crate) mod pb {
    pub mod authpb {
        include!("pb/authpb.rs");
    }
    pub mod mvccpb {
        include!("pb/mvccpb.rs");
    }
    pub mod etcdserverpb {
        include!("pb/etcdserverpb.rs");
    }
}

use pb::etcdserverpb::{
    compare, kv_client::KvClient, lease_client::LeaseClient, request_op, Compare, DeleteRangeRequest,
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest, PutRequest, RangeRequest,
    RangeResponse, RequestOp, TxnRequest, TxnResponse,
};

/// Why a call to etcd failed: the crate's one error type for its calls
/// (drctl-state's error is what the crate's users see).
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// etcd (or the channel on its behalf) answered with a gRPC status.
    #[error("{}", .0.message())]
    Status(#[from] tonic::Status),
    /// The connection could not be set up (a bad address or TLS file).
    #[error("{}", with_causes(.0))]
    Transport(#[from] tonic::transport::Error),
    /// A lease keep-alive stream closed, or its lease is gone.
    #[error("{0}")]
    KeepAlive(&'static str),
}

impl RpcError {
    /// Failures worth another try: etcd answers "unavailable" while it
    /// elects a leader of its own, and a call on the connection to a
    /// member that just died fails ("canceled" when the connection closed
    /// under it); the balanced channel sends the next try to another.
    pub fn transient(&self) -> bool {
        match self {
            RpcError::Status(s) => matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unknown
                    | tonic::Code::Cancelled
            ),
            RpcError::Transport(_) => true,
            RpcError::KeepAlive(_) => false,
        }
    }
}

/// tonic's transport errors say only "transport error"; the why is in
/// their sources.
fn with_causes(e: &tonic::transport::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// TLS to the members: the CA that signed their certificates and, for
/// client certificates, ours (all PEM).
#[derive(Clone)]
pub struct Tls {
    pub ca: Vec<u8>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// How the channel is set up.
pub struct Options {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// HTTP/2 pings: how often, and how long an answer may take.
    pub keep_alive: (Duration, Duration),
    pub tls: Option<Tls>,
}

/// A handle on the cluster; clones share the channel.
#[derive(Clone)]
pub struct Client {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    /// The balanced channel's member list lives as long as its sender.
    _members: Arc<tokio::sync::mpsc::Sender<Change<tonic::codegen::http::Uri, Endpoint>>>,
}

impl Client {
    /// Sets up a channel over `members` (`host:port` each). Connections
    /// are made on first use, so a member down here is no error.
    pub async fn connect(members: &[String], opts: Options) -> Result<Client, RpcError> {
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let (channel, tx) = Channel::balance_channel(members.len().max(1) * 8);
        for m in members {
            let mut ep = Endpoint::from_shared(format!("{scheme}://{m}"))?
                .connect_timeout(opts.connect_timeout)
                .timeout(opts.timeout)
                .http2_keep_alive_interval(opts.keep_alive.0)
                .keep_alive_timeout(opts.keep_alive.1)
                .keep_alive_while_idle(true);
            if let Some(tls) = &opts.tls {
                let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca));
                if let Some((cert, key)) = &tls.identity {
                    cfg = cfg.identity(Identity::from_pem(cert, key));
                }
                ep = ep.tls_config(cfg)?;
            }
            // The receiver is in `channel`, alive here: sending cannot fail.
            let _ = tx.send(Change::Insert(ep.uri().clone(), ep)).await;
        }
        Ok(Client { kv: KvClient::new(channel.clone()), lease: LeaseClient::new(channel), _members: Arc::new(tx) })
    }

    /// The value at `key`, if any.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<RangeResponse, RpcError> {
        let req = RangeRequest { key: key.into(), ..Default::default() };
        Ok(self.kv.clone().range(req).await?.into_inner())
    }

    /// Every key in `[start, end)`, in key order.
    pub async fn range(&self, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Result<RangeResponse, RpcError> {
        let req = RangeRequest { key: start.into(), range_end: end.into(), ..Default::default() };
        Ok(self.kv.clone().range(req).await?.into_inner())
    }

    pub async fn txn(&self, txn: TxnRequest) -> Result<TxnResponse, RpcError> {
        Ok(self.kv.clone().txn(txn).await?.into_inner())
    }

    /// A new lease of `ttl` seconds; its id.
    pub async fn lease_grant(&self, ttl: i64) -> Result<i64, RpcError> {
        Ok(self.lease.clone().lease_grant(LeaseGrantRequest { ttl, id: 0 }).await?.into_inner().id)
    }

    pub async fn lease_revoke(&self, id: i64) -> Result<(), RpcError> {
        self.lease.clone().lease_revoke(LeaseRevokeRequest { id }).await?;
        Ok(())
    }

    /// Opens a keep-alive stream for lease `id`, renewing it once: the
    /// stream and the seconds the lease has left (0: it is gone).
    pub async fn keep_alive(&self, id: i64) -> Result<(Keeper, i64), RpcError> {
        let (mut tx, rx) = mpsc::channel::<LeaseKeepAliveRequest>(4);
        // etcd answers (headers included) only once it has a request: send
        // the first before waiting for the call to open.
        tx.send(LeaseKeepAliveRequest { id }).await.map_err(|_| RpcError::KeepAlive("keep-alive stream closed"))?;
        let answers = self.lease.clone().lease_keep_alive(rx).await?.into_inner();
        let mut keeper = Keeper { id, tx, answers };
        let ttl = keeper.answer().await?;
        Ok((keeper, ttl))
    }
}

/// An open keep-alive stream for one lease.
pub struct Keeper {
    id: i64,
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    answers: tonic::Streaming<LeaseKeepAliveResponse>,
}

impl Keeper {
    /// Renews the lease once: the seconds it has left (0: it is gone).
    pub async fn renew(&mut self) -> Result<i64, RpcError> {
        self.tx
            .send(LeaseKeepAliveRequest { id: self.id })
            .await
            .map_err(|_| RpcError::KeepAlive("keep-alive stream closed"))?;
        self.answer().await
    }

    async fn answer(&mut self) -> Result<i64, RpcError> {
        match self.answers.message().await? {
            Some(m) => Ok(m.ttl),
            None => Err(RpcError::KeepAlive("etcd closed the keep-alive stream")),
        }
    }
}

/// Compares for a transaction.
pub fn version_is(key: &str, version: i64) -> Compare {
    compare_on(key, compare::CompareTarget::Version, compare::TargetUnion::Version(version))
}

pub fn mod_revision_is(key: &str, revision: i64) -> Compare {
    compare_on(key, compare::CompareTarget::Mod, compare::TargetUnion::ModRevision(revision))
}

pub fn create_revision_is(key: &str, revision: i64) -> Compare {
    compare_on(key, compare::CompareTarget::Create, compare::TargetUnion::CreateRevision(revision))
}

fn compare_on(key: &str, target: compare::CompareTarget, value: compare::TargetUnion) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(value),
    }
}

/// Operations for a transaction.
pub fn put(key: impl Into<Vec<u8>>, value: Vec<u8>, lease: i64) -> RequestOp {
    let put = PutRequest { key: key.into(), value, lease, ..Default::default() };
    RequestOp { request: Some(request_op::Request::RequestPut(put)) }
}

/// Deletes `key`, or every key in `[key, end)` with `end`.
pub fn delete(key: impl Into<Vec<u8>>, end: Option<Vec<u8>>) -> RequestOp {
    let del = DeleteRangeRequest { key: key.into(), range_end: end.unwrap_or_default(), ..Default::default() };
    RequestOp { request: Some(request_op::Request::RequestDeleteRange(del)) }
}

pub fn get(key: impl Into<Vec<u8>>) -> RequestOp {
    let get = RangeRequest { key: key.into(), ..Default::default() };
    RequestOp { request: Some(request_op::Request::RequestRange(get)) }
}
