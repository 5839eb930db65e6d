//! A TCP fault proxy (toxiproxy-like) in front of every lab endpoint.
//!
//! Clients (drctl, the services, the workload, even PostgreSQL's own
//! replication) reach lab servers only through these proxies, so a network
//! fault injected here is seen by everyone at once, as a real one would be:
//! - `down`: the address stops answering (new connections are reset at
//!   once, live ones are cut): a zone outage or a dead process;
//! - `latency`: every chunk of bytes waits this long, both ways;
//! - `loss`: a share of chunks stall for a retransmission timeout (200 ms),
//!   which is what packet loss looks like above TCP;
//! - `reset`: live connections are cut and new ones reset.
//!
//! Faults apply to live connections too: each connection watches an epoch
//! that a cut bumps.
//!
//! Zone partitions are decided here too, from the caller's address: lab
//! clients in zone Z connect from 127.0.Z.x (the workload writers, the
//! split-brain probes, PostgreSQL's replication through its zone's egress
//! proxy), everything else (drctl, the front doors) is the controller's
//! side, zone 0. A [`Partitions`] shared by every proxy says which
//! (caller zone, target zone) links are cut; a cut link is refused at once
//! (a firewall's REJECT, so drills measure drctl rather than TCP timeouts)
//! and its live connections are cut.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long a lost chunk stalls: Linux's minimum TCP retransmission timeout.
pub const LOSS_STALL: Duration = Duration::from_millis(200);

/// The faults currently applied to one proxy; shared with the lab's control API.
#[derive(Debug)]
pub struct ProxyFaults {
    down: AtomicBool,
    reset: AtomicBool,
    latency_us: AtomicU64,
    /// Loss rate in millionths.
    loss_ppm: AtomicU64,
    cut: watch::Sender<u64>,
}

impl ProxyFaults {
    fn new() -> Self {
        ProxyFaults {
            down: AtomicBool::new(false),
            reset: AtomicBool::new(false),
            latency_us: AtomicU64::new(0),
            loss_ppm: AtomicU64::new(0),
            cut: watch::channel(0).0,
        }
    }

    /// Cuts every live connection.
    pub fn cut(&self) {
        self.cut.send_modify(|e| *e += 1);
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.cut();
        }
    }

    pub fn set_reset(&self, reset: bool) {
        self.reset.store(reset, Ordering::SeqCst);
        if reset {
            self.cut();
        }
    }

    pub fn set_latency(&self, d: Duration) {
        self.latency_us.store(d.as_micros() as u64, Ordering::SeqCst);
    }

    pub fn set_loss(&self, rate: f64) {
        self.loss_ppm.store((rate.clamp(0.0, 1.0) * 1e6) as u64, Ordering::SeqCst);
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.down.store(false, Ordering::SeqCst);
        self.reset.store(false, Ordering::SeqCst);
        self.latency_us.store(0, Ordering::SeqCst);
        self.loss_ppm.store(0, Ordering::SeqCst);
    }

    /// A short description of the faults in force ("" when none).
    pub fn describe(&self) -> String {
        let mut out = Vec::new();
        if self.down.load(Ordering::SeqCst) {
            out.push("down".to_string());
        }
        if self.reset.load(Ordering::SeqCst) {
            out.push("reset".to_string());
        }
        let l = self.latency_us.load(Ordering::SeqCst);
        if l > 0 {
            out.push(format!("latency {}ms", l / 1000));
        }
        let p = self.loss_ppm.load(Ordering::SeqCst);
        if p > 0 {
            out.push(format!("loss {:.0}%", p as f64 / 1e4));
        }
        out.join(", ")
    }
}

/// The zone partitions in force, shared by every proxy of a lab.
#[derive(Debug)]
pub struct Partitions {
    cuts: std::sync::Mutex<Vec<Cut>>,
    epoch: watch::Sender<u64>,
}

#[derive(Debug, Clone)]
struct Cut {
    id: u64,
    zones: Vec<u8>,
    /// Only the controller's side (zone 0) loses sight of the zones.
    one_way: bool,
}

impl Default for Partitions {
    fn default() -> Self {
        Partitions { cuts: Default::default(), epoch: watch::channel(0).0 }
    }
}

impl Partitions {
    /// Cuts the zones off: from every other zone and the controller, or
    /// (`one_way`) from the controller only.
    pub fn add(&self, id: u64, zones: Vec<u8>, one_way: bool) {
        self.cuts.lock().unwrap_or_else(|p| p.into_inner()).push(Cut { id, zones, one_way });
        self.epoch.send_modify(|e| *e += 1);
    }

    pub fn remove(&self, id: u64) {
        self.cuts.lock().unwrap_or_else(|p| p.into_inner()).retain(|c| c.id != id);
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Whether a caller in zone `caller` (0: the controller's side) can
    /// reach zone `target` now.
    pub fn blocks(&self, caller: u8, target: u8) -> bool {
        caller != target
            && self.cuts.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|c| {
                if c.one_way {
                    caller == 0 && c.zones.contains(&target)
                } else {
                    c.zones.contains(&caller) || c.zones.contains(&target)
                }
            })
    }

    /// The zones cut off now (either way).
    pub fn zones(&self) -> Vec<u8> {
        let mut z: Vec<u8> =
            self.cuts.lock().unwrap_or_else(|p| p.into_inner()).iter().flat_map(|c| c.zones.clone()).collect();
        z.sort_unstable();
        z.dedup();
        z
    }
}

/// The lab zone of an address: 127.0.Z.x is zone Z; anything else is the
/// controller's side, 0.
pub fn zone_of(addr: std::net::IpAddr) -> u8 {
    match addr {
        std::net::IpAddr::V4(v4) if v4.octets()[0] == 127 && v4.octets()[1] == 0 => v4.octets()[2],
        _ => 0,
    }
}

/// Where a proxy stands: the zone it serves, the partitions it obeys, and
/// the source address it connects upstream from (an egress proxy speaks
/// for its zone).
#[derive(Debug, Clone, Default)]
pub struct Route {
    pub partitions: Option<Arc<Partitions>>,
    pub source: Option<std::net::IpAddr>,
}

/// A running proxy.
pub struct Proxy {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub faults: Arc<ProxyFaults>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.faults.cut();
        self.task.abort();
    }
}

impl Proxy {
    /// Listens on `listen` and forwards to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<Proxy> {
        Self::start_with(listen, upstream, Route::default()).await
    }

    /// Like [`start`](Self::start), obeying the route's partitions (the
    /// proxy serves the zone of its `listen` address).
    pub async fn start_with(listen: SocketAddr, upstream: SocketAddr, route: Route) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let faults = Arc::new(ProxyFaults::new());
        let f = faults.clone();
        let target = zone_of(listen.ip());
        let task = tokio::spawn(async move {
            let mut seed = listen.port() as u64 * 7919 + 1;
            loop {
                let Ok((client, peer)) = listener.accept().await else { continue };
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let caller = zone_of(peer.ip());
                let cut_off = route.partitions.as_ref().is_some_and(|p| p.blocks(caller, target));
                if f.down.load(Ordering::SeqCst) || f.reset.load(Ordering::SeqCst) || cut_off {
                    let _ = client.set_zero_linger();
                    drop(client);
                    continue;
                }
                let link = Link { caller, target, route: route.clone() };
                tokio::spawn(pipe(client, upstream, f.clone(), seed, link));
            }
        });
        Ok(Proxy { listen, upstream, faults, task })
    }
}

/// One connection's path through the lab's network.
struct Link {
    caller: u8,
    target: u8,
    route: Route,
}

async fn connect_upstream(upstream: SocketAddr, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    match source {
        None => TcpStream::connect(upstream).await,
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(upstream).await
        }
    }
}

async fn pipe(client: TcpStream, upstream: SocketAddr, faults: Arc<ProxyFaults>, seed: u64, link: Link) {
    let Ok(Ok(server)) =
        tokio::time::timeout(Duration::from_secs(2), connect_upstream(upstream, link.route.source)).await
    else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut epoch = faults.cut.subscribe();
    epoch.mark_unchanged();
    let mut partitions = link.route.partitions.as_ref().map(|p| p.epoch.subscribe());
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = copy(cr, sw, faults.clone(), seed);
    let down = copy(sr, cw, faults.clone(), seed ^ 0x9e37_79b9_7f4a_7c15);
    // A partition ends this connection only when it cuts this link.
    let partitioned = async {
        let (Some(rx), Some(p)) = (partitions.as_mut(), link.route.partitions.as_ref()) else {
            return std::future::pending::<()>().await;
        };
        loop {
            if rx.changed().await.is_err() {
                return std::future::pending::<()>().await;
            }
            if p.blocks(link.caller, link.target) {
                return;
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = epoch.changed() => {}
        _ = partitioned => {}
    }
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    faults: Arc<ProxyFaults>,
    mut seed: u64,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let latency = faults.latency_us.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_micros(latency)).await;
        }
        let loss = faults.loss_ppm.load(Ordering::Relaxed);
        if loss > 0 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if seed % 1_000_000 < loss {
                tokio::time::sleep(LOSS_STALL).await;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> std::io::Result<Duration> {
        let mut s = TcpStream::connect(addr).await?;
        let t = Instant::now();
        s.write_all(b"ping").await?;
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await?;
        Ok(t.elapsed())
    }

    #[tokio::test]
    async fn forwards_delays_and_cuts() {
        let up = echo_server().await;
        let p = Proxy::start("127.0.0.1:0".parse().unwrap(), up).await.unwrap();
        assert!(round_trip(p.listen).await.unwrap() < Duration::from_millis(50));

        p.faults.set_latency(Duration::from_millis(100));
        let rt = round_trip(p.listen).await.unwrap();
        assert!(rt >= Duration::from_millis(200), "both directions delayed: {rt:?}");

        p.faults.heal();
        let mut live = TcpStream::connect(p.listen).await.unwrap();
        live.write_all(b"a").await.unwrap();
        let mut b = [0u8; 1];
        live.read_exact(&mut b).await.unwrap();
        p.faults.set_down(true);
        assert!(round_trip(p.listen).await.is_err(), "new connections fail while down");
        let _ = live.write_all(b"b").await;
        let r = tokio::time::timeout(Duration::from_secs(2), live.read(&mut b)).await.unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "the live connection was cut: {r:?}");

        p.faults.heal();
        assert!(round_trip(p.listen).await.is_ok(), "healed");
    }

    /// A partition cuts the links that cross it, by the caller's zone,
    /// and leaves the zone's own links alone; one way cuts only the controller.
    #[tokio::test]
    async fn partitions_cut_links_by_the_callers_zone() {
        async fn from(src: [u8; 4], to: SocketAddr) -> std::io::Result<Duration> {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((src, 0)))?;
            let mut s = socket.connect(to).await?;
            let t = Instant::now();
            s.write_all(b"ping").await?;
            let mut b = [0u8; 4];
            s.read_exact(&mut b).await?;
            Ok(t.elapsed())
        }
        let up = echo_server().await;
        let parts = Arc::new(Partitions::default());
        let route = Route { partitions: Some(parts.clone()), source: None };
        let az1 = Proxy::start_with("127.0.1.250:0".parse().unwrap(), up, route).await.unwrap();
        let live = tokio::net::TcpSocket::new_v4().unwrap();
        live.bind("127.0.2.250:0".parse().unwrap()).unwrap();
        let mut live = live.connect(az1.listen).await.unwrap();
        parts.add(1, vec![1], false);
        assert!(from([127, 0, 1, 251], az1.listen).await.is_ok(), "inside the zone, it still works");
        assert!(from([127, 0, 2, 251], az1.listen).await.is_err(), "from another zone: cut");
        assert!(from([127, 0, 0, 1], az1.listen).await.is_err(), "from the controller: cut");
        let _ = live.write_all(b"x").await;
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(2), live.read(&mut b)).await.unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "a live link across the cut was cut: {r:?}");
        parts.remove(1);
        parts.add(2, vec![1], true);
        assert!(from([127, 0, 2, 251], az1.listen).await.is_ok(), "one way: other zones still reach it");
        assert!(from([127, 0, 0, 1], az1.listen).await.is_err(), "one way: the controller does not");
        parts.remove(2);
        assert!(from([127, 0, 0, 1], az1.listen).await.is_ok(), "healed");
    }

    #[tokio::test]
    async fn loss_stalls_some_chunks() {
        let up = echo_server().await;
        let p = Proxy::start("127.0.0.1:0".parse().unwrap(), up).await.unwrap();
        p.faults.set_loss(1.0);
        let rt = round_trip(p.listen).await.unwrap();
        assert!(rt >= LOSS_STALL * 2, "every chunk stalled: {rt:?}");
        assert_eq!(p.faults.describe(), "loss 100%");
    }
}
