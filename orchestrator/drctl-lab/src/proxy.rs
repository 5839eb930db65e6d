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
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let faults = Arc::new(ProxyFaults::new());
        let f = faults.clone();
        let task = tokio::spawn(async move {
            let mut seed = listen.port() as u64 * 7919 + 1;
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if f.down.load(Ordering::SeqCst) || f.reset.load(Ordering::SeqCst) {
                    let _ = client.set_zero_linger();
                    drop(client);
                    continue;
                }
                tokio::spawn(pipe(client, upstream, f.clone(), seed));
            }
        });
        Ok(Proxy { listen, upstream, faults, task })
    }
}

async fn pipe(client: TcpStream, upstream: SocketAddr, faults: Arc<ProxyFaults>, seed: u64) {
    let Ok(Ok(server)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(upstream)).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut epoch = faults.cut.subscribe();
    epoch.mark_unchanged();
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = copy(cr, sw, faults.clone(), seed);
    let down = copy(sr, cw, faults.clone(), seed ^ 0x9e37_79b9_7f4a_7c15);
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = epoch.changed() => {}
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
