//! The lab's sample services: one HTTP instance per zone whose `/health`
//! checks the service's own dependencies (a writable PostgreSQL primary,
//! its zone's S3 bucket, the services it calls), and a front door per
//! service that sends each connection where the lab's DNS record points,
//! as a load balancer following DNS would. The topology's health URL is
//! the front door: what users see.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Something an instance needs to be healthy.
#[derive(Clone)]
pub enum Dependency {
    /// A libpq connection string; `target_session_attrs=read-write` finds the primary.
    Postgres { name: String, conninfo: String },
    /// A bucket, through the same S3 client drctl uses.
    S3 { name: String, bucket: drctl_aws::s3::Bucket },
    /// Another service's front door.
    Http { name: String, url: String },
}

struct Instance {
    service: String,
    zone: String,
    deps: Vec<Dependency>,
    http: reqwest::Client,
}

const CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

async fn check(dep: &Dependency, http: &reqwest::Client) -> Result<(), String> {
    match dep {
        Dependency::Postgres { conninfo, .. } => {
            let work = async {
                let client =
                    drctl_providers::postgres::connect(conninfo, CHECK_TIMEOUT).await.map_err(|e| e.to_string())?;
                client.simple_query("SELECT 1").await.map(|_| ()).map_err(|e| e.to_string())
            };
            tokio::time::timeout(CHECK_TIMEOUT, work).await.map_err(|_| "no answer".to_string())?
        }
        Dependency::S3 { bucket, .. } => {
            let work = bucket.client.head_bucket().bucket(&bucket.name).send();
            match tokio::time::timeout(CHECK_TIMEOUT, work).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(drctl_aws::explain(&e)),
                Err(_) => Err("no answer".into()),
            }
        }
        Dependency::Http { url, .. } => match http.get(url).timeout(CHECK_TIMEOUT).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
            Err(e) => Err(if e.is_timeout() { "no answer".into() } else { "unreachable".into() }),
        },
    }
}

fn dep_name(d: &Dependency) -> &str {
    match d {
        Dependency::Postgres { name, .. } | Dependency::S3 { name, .. } | Dependency::Http { name, .. } => name,
    }
}

async fn health(State(inst): State<Arc<Instance>>) -> (StatusCode, String) {
    let results = futures::future::join_all(inst.deps.iter().map(|d| check(d, &inst.http))).await;
    let bad: Vec<String> = inst
        .deps
        .iter()
        .zip(results)
        .filter_map(|(d, r)| r.err().map(|why| format!("{}: {why}", dep_name(d))))
        .collect();
    if bad.is_empty() {
        (StatusCode::OK, format!("{} in {}: ok\n", inst.service, inst.zone))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("{} in {}: {}\n", inst.service, inst.zone, bad.join("; ")))
    }
}

async fn hello(State(inst): State<Arc<Instance>>) -> String {
    format!("{} served from {}\n", inst.service, inst.zone)
}

/// A running HTTP server task, stopped on drop.
pub struct Task(pub tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts one instance of a service in a zone.
pub async fn start_instance(
    addr: SocketAddr,
    service: &str,
    zone: &str,
    deps: Vec<Dependency>,
) -> std::io::Result<Task> {
    let inst = Arc::new(Instance {
        service: service.into(),
        zone: zone.into(),
        deps,
        http: reqwest::Client::builder().no_proxy().build().expect("an HTTP client"),
    });
    let app = axum::Router::new().route("/health", get(health)).route("/", get(hello)).with_state(inst);
    let listener = TcpListener::bind(addr).await?;
    Ok(Task(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })))
}

/// Starts a front door on `addr` for the DNS record `record`: each
/// connection goes to the first address the lab's DNS answers, on `port`.
pub async fn start_front_door(addr: SocketAddr, dns: String, record: String, port: u16) -> std::io::Result<Task> {
    let listener = TcpListener::bind(addr).await?;
    Ok(Task(tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { continue };
            let (dns, record) = (dns.clone(), record.clone());
            tokio::spawn(async move {
                let target = drctl_providers::dns::query_a(&dns, &record, Duration::from_secs(1)).await;
                let Some(ip) = target.ok().and_then(|a| a.first().copied()) else { return };
                let connect = TcpStream::connect(SocketAddr::from((ip, port)));
                if let Ok(Ok(mut server)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    })))
}
