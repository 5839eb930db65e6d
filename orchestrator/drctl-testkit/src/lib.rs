//! Real components for tests, started on demand and stopped on drop.
//!
//! drctl's providers are tested against the real thing: PostgreSQL's own
//! server binaries (a primary and a streaming standby made with
//! `pg_basebackup`) and moto's server for the AWS APIs, reached through the
//! real AWS SDK. This crate starts them on free loopback ports, as the
//! `postgres` user when the tests run as root (initdb refuses root), and
//! removes everything when the handle is dropped, so a test leaves no
//! process or folder behind even when it fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn unique_dir(prefix: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir =
        std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

fn runs_as_postgres() -> bool {
    drctl_pgserver::run_as().is_some()
}

/// Where PostgreSQL's server binaries are, found as the lab finds them.
pub fn pg_bin() -> Option<PathBuf> {
    drctl_pgserver::find_bin().ok()
}

/// Runs a PostgreSQL tool as the lab runs it (as `postgres` when we are root).
fn pg_cmd(bin: &Path, tool: &str, args: &[&str]) -> Command {
    let mut c = drctl_pgserver::command(bin, tool, drctl_pgserver::Lifetime::Independent);
    c.args(args);
    c
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL primary and a streaming standby on loopback.
pub struct PgPair {
    pub dir: PathBuf,
    pub primary_port: u16,
    pub standby_port: u16,
    bin: PathBuf,
    /// The slowed replication link, when the pair was started with one.
    _link: Option<DelayedLink>,
    /// The replication link that can be cut, when the pair was started with one.
    cuttable: Option<TcpProxy>,
}

impl PgPair {
    /// Starts both servers; panics with a clear message when PostgreSQL is not installed.
    pub fn start() -> PgPair {
        Self::start_with_link(None)
    }

    /// Starts both servers with the standby streaming through a link that
    /// delays every byte by `delay` each way (a slow network between zones).
    pub fn start_with_link_delay(delay: Duration) -> PgPair {
        Self::start_with_link(Some(delay))
    }

    /// Starts both servers with the standby streaming through a link that
    /// [`PgPair::cut_link`] cuts (a network partition between the zones:
    /// the primary goes on committing, the standby receives nothing).
    pub fn start_with_cuttable_link() -> PgPair {
        Self::start_with(None, true)
    }

    /// Cuts the standby's replication link: its connection is reset and
    /// it cannot connect again until [`PgPair::restore_link`].
    pub fn cut_link(&self) {
        self.cuttable.as_ref().expect("started with start_with_cuttable_link").cut();
    }

    pub fn restore_link(&self) {
        self.cuttable.as_ref().expect("started with start_with_cuttable_link").restore();
    }

    fn start_with_link(delay: Option<Duration>) -> PgPair {
        Self::start_with(delay, false)
    }

    fn start_with(delay: Option<Duration>, cuttable: bool) -> PgPair {
        let bin = drctl_pgserver::find_bin().unwrap_or_else(|why| panic!("{why}"));
        let dir = unique_dir("drctl-pg");
        drctl_pgserver::hand_over(&dir).expect("hand the cluster's folder to postgres");
        let primary = dir.join("primary");
        let standby = dir.join("standby");
        let primary_port = free_port();
        let standby_port = free_port();
        let p = primary.to_str().unwrap();
        run(pg_cmd(&bin, "initdb", &["-D", p, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]), "initdb");
        let conf = format!(
            "port = {primary_port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nwal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\nsynchronous_commit = on\nwal_receiver_status_interval = 1s\nhot_standby_feedback = on\nwal_keep_size = 512MB\n",
            dir.display()
        );
        append(&primary.join("postgresql.conf"), &conf);
        append(&primary.join("pg_hba.conf"), "host replication all 127.0.0.1/32 trust\n");
        let link = delay.map(|d| DelayedLink::start(primary_port, d));
        let mut pair =
            PgPair { dir: dir.clone(), primary_port, standby_port, bin: bin.clone(), _link: None, cuttable: None };
        pair.ctl(&primary, "start");
        run(
            pg_cmd(
                &bin,
                "pg_basebackup",
                &[
                    "-D",
                    standby.to_str().unwrap(),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &primary_port.to_string(),
                    "-U",
                    "postgres",
                    "-R",
                    "-X",
                    "stream",
                    "--no-sync",
                ],
            ),
            "pg_basebackup",
        );
        append(&standby.join("postgresql.conf"), &format!("port = {standby_port}\n"));
        if let Some(link) = &link {
            append(
                &standby.join("postgresql.auto.conf"),
                &format!("primary_conninfo = 'host=127.0.0.1 port={} user=postgres'\n", link.port),
            );
        }
        pair._link = link;
        if cuttable {
            let proxy = TcpProxy::start(primary_port);
            append(
                &standby.join("postgresql.auto.conf"),
                &format!("primary_conninfo = 'host=127.0.0.1 port={} user=postgres'\n", proxy.port),
            );
            pair.cuttable = Some(proxy);
        }
        pair.ctl(&standby, "start");
        pair
    }

    fn ctl(&self, data: &Path, action: &str) {
        let log = self.dir.join(format!("{}.log", data.file_name().unwrap().to_string_lossy()));
        run(
            pg_cmd(
                &self.bin,
                "pg_ctl",
                &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "-t", "60", action],
            ),
            &format!("pg_ctl {action}"),
        );
    }

    /// Turns TLS on at the primary with a certificate `ca` issues (valid
    /// for 127.0.0.1), and makes it refuse unencrypted sessions to its
    /// databases, as RDS for PostgreSQL 15 does (`rds.force_ssl`).
    /// Replication keeps its own rule, so the standby streams as before.
    pub fn require_tls(&self, ca: &TestCa) {
        ca.issue("pg-server.pem", "pg-server.key", "127.0.0.1", "serverAuth");
        let data = self.dir.join("primary");
        for (from, to) in [("pg-server.pem", "server.crt"), ("pg-server.key", "server.key")] {
            std::fs::copy(ca.dir.join(from), data.join(to)).expect("copy the server's certificate");
        }
        for file in ["server.crt", "server.key"] {
            drctl_pgserver::hand_over(&data.join(file)).expect("hand the certificate to postgres");
        }
        let mut c = Command::new("chmod");
        c.arg("600").arg(data.join("server.key"));
        run(c, "chmod");
        let hba = data.join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        std::fs::write(&hba, format!("hostnossl all all 127.0.0.1/32 reject\n{old}")).expect("write pg_hba.conf");
        // One statement per call: ALTER SYSTEM refuses a transaction block.
        for sql in [
            "ALTER SYSTEM SET ssl_cert_file = 'server.crt'",
            "ALTER SYSTEM SET ssl_key_file = 'server.key'",
            "ALTER SYSTEM SET ssl = on",
            "SELECT pg_reload_conf()",
        ] {
            self.psql(self.primary_port, sql);
        }
    }

    pub fn primary_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.primary_port)
    }

    pub fn standby_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.standby_port)
    }

    /// A two-zone topology with this pair as `orders-db` (tier-0: RPO 5s,
    /// RTO 2m) and a `checkout` service depending on it. `datastore_extra`
    /// is appended to orders-db (e.g. a `failover:` line), `checkout_extra`
    /// inside checkout's flow mapping (e.g. `, failover: { ... }`).
    pub fn shop_topology(&self, datastore_extra: &str, checkout_extra: &str) -> String {
        format!(
            "version: 1\nname: shop\nzones:\n  - {{ name: az1, region: r1 }}\n  - {{ name: az2, region: r1 }}\n\
             objectives:\n  tier-0: {{ rpo: 5s, rto: 2m }}\n\
             datastores:\n  - name: orders-db\n    kind: postgres\n    primary: {{ zone: az1, url: \"{}\" }}\n    replicas: [ {{ zone: az2, url: \"{}\" }} ]\n{datastore_extra}\
             services:\n  - {{ name: checkout, tier: tier-0, zones: [az1, az2], depends_on: [orders-db]{checkout_extra} }}\n",
            self.primary_url(),
            self.standby_url()
        )
    }

    /// Runs SQL with psql against a port (for test setup; the code under test uses its own client).
    pub fn psql(&self, port: u16, sql: &str) -> String {
        let out = pg_cmd(
            &self.bin,
            "psql",
            &["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-Atqc", sql],
        )
        .output()
        .expect("psql runs");
        assert!(out.status.success(), "psql `{sql}`: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs SQL with psql; `Err` with psql's message when it fails (a
    /// fenced or stopped server), for tests that expect refusals.
    pub fn try_psql(&self, port: u16, sql: &str) -> Result<String, String> {
        try_psql(&self.bin, port, sql)
    }

    /// Undoes a drctl fence on the primary behind drctl's back (restores the
    /// `pg_hba.conf` it kept and reloads), as a hasty operator might.
    pub fn unfence_primary(&self) {
        let data = self.dir.join("primary");
        std::fs::copy(data.join("pg_hba.conf.drctl-unfenced"), data.join("pg_hba.conf")).expect("the kept pg_hba.conf");
        self.ctl(&data, "reload");
    }

    /// Where the server binaries are (to run psql from another thread).
    pub fn bin(&self) -> PathBuf {
        self.bin.clone()
    }

    /// A `fence` command (argv, no shell of drctl's) that powers the
    /// primary off, as IPMI or a cloud API would, after writing its
    /// `DRCTL_*` environment to `env_file`.
    pub fn power_off_primary_command(&self, env_file: &Path) -> Vec<String> {
        let ctl = self.bin.join("pg_ctl");
        let data = self.dir.join("primary");
        let stop = if runs_as_postgres() {
            format!("runuser -u postgres -- {} -D {} -m immediate stop", ctl.display(), data.display())
        } else {
            format!("{} -D {} -m immediate stop", ctl.display(), data.display())
        };
        vec![
            "sh".into(),
            "-c".into(),
            format!(
                "env | grep ^DRCTL_ | sort > {}; {stop} >/dev/null 2>&1 || true; echo powered off",
                env_file.display()
            ),
        ]
    }

    /// Waits until the standby has replayed everything the primary has
    /// written so far: the condition itself, not a sleep standing in for it.
    pub fn wait_replayed(&self) {
        let target = self.psql(self.primary_port, "SELECT pg_current_wal_lsn()");
        // Generous: a test that has just written tens of MB (and backed
        // them up) on a loaded 2-core machine may take a while to replay.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn");
            if self.psql(self.standby_port, &sql) == "t" {
                return;
            }
            assert!(Instant::now() < deadline, "the standby did not replay up to {target} within 120 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the old primary again after [`PgPair::kill_primary`], as it
    /// was: writable, and not a standby of anything (power restored).
    pub fn restart_primary(&self) {
        self.ctl(&self.dir.join("primary"), "start");
    }

    /// Stops the primary abruptly (a zone outage for the primary).
    pub fn kill_primary(&self) {
        let _ =
            pg_cmd(&self.bin, "pg_ctl", &["-D", self.dir.join("primary").to_str().unwrap(), "-m", "immediate", "stop"])
                .output();
    }
}

/// Runs SQL with the psql in `bin` against a loopback port as `postgres`.
pub fn try_psql(bin: &Path, port: u16, sql: &str) -> Result<String, String> {
    let out = pg_cmd(
        bin,
        "psql",
        &["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-Atqc", sql],
    )
    .output()
    .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).expect("open conf");
    f.write_all(text.as_bytes()).expect("write conf");
}

impl Drop for PgPair {
    fn drop(&mut self) {
        for data in ["standby", "primary"] {
            let _ =
                pg_cmd(&self.bin, "pg_ctl", &["-D", self.dir.join(data).to_str().unwrap(), "-m", "immediate", "stop"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP link that delays every chunk by a fixed time each way, without
/// throttling (chunks queue with their due time): a slow network between
/// zones, for replication.
pub struct DelayedLink {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DelayedLink {
    pub fn start(upstream: u16, delay: Duration) -> DelayedLink {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind the link");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let halt = stop.clone();
        std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                        for (from, to) in [(client.try_clone(), server.try_clone()), (Ok(server), Ok(client))] {
                            let (Ok(from), Ok(to)) = (from, to) else { continue };
                            Self::direction(from, to, delay);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        DelayedLink { port, stop }
    }

    fn direction(mut from: std::net::TcpStream, mut to: std::net::TcpStream, delay: Duration) {
        use std::io::{Read, Write};
        let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for (due, bytes) in rx {
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if to.write_all(&bytes).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Both);
        });
    }
}

impl Drop for DelayedLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The moto release the tests are known to pass with.
pub const MOTO_REQUIREMENT: &str = "moto[server]==5.2.5";

/// moto's AWS API server on a free loopback port.
pub struct Moto {
    pub port: u16,
    child: Child,
}

/// Finds `moto_server`: `$MOTO_SERVER`, PATH, or a virtualenv made (once) under
/// the target folder with `pip install 'moto[server]'`.
pub fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("moto_server")).find(|p| p.exists()))
    {
        return p;
    }
    venv("moto-venv", &[MOTO_REQUIREMENT]).join("bin/moto_server")
}

/// The Python packages the notification tests talk to drctl with: a real
/// SMTP server and the Standard Webhooks reference library.
pub const NOTIFY_REQUIREMENTS: [&str; 2] = ["aiosmtpd==1.4.6", "standardwebhooks==1.3.0"];

/// A Python with [`NOTIFY_REQUIREMENTS`] installed (a virtualenv made once
/// under the target folder).
pub fn notify_python() -> PathBuf {
    venv("notify-venv", &NOTIFY_REQUIREMENTS).join("bin/python")
}

/// A virtualenv under the target folder with `requirements` installed,
/// made once: one test process installs, the others wait for it.
pub fn venv(name: &str, requirements: &[&str]) -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target").join(name);
    let done = venv.join(".drctl-installed");
    let want = requirements.join("\n");
    if std::fs::read_to_string(&done).is_ok_and(|d| d == want) {
        return venv;
    }
    let lock = venv.with_extension("lock");
    let started = Instant::now();
    while std::fs::create_dir(&lock).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "waited 10 minutes for another process to install {name}"
        );
        if std::fs::read_to_string(&done).is_ok_and(|d| d == want) {
            return venv;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if !std::fs::read_to_string(&done).is_ok_and(|d| d == want) {
        if !venv.join("bin/pip").exists() {
            run(
                {
                    let mut c = Command::new("python3");
                    c.args(["-m", "venv"]).arg(&venv);
                    c
                },
                "python3 -m venv",
            );
        }
        run(
            {
                let mut c = Command::new(venv.join("bin/pip"));
                c.args(["install", "-q"]).args(requirements);
                c
            },
            &format!("pip install {}", requirements.join(" ")),
        );
        std::fs::write(&done, &want).expect("mark the virtualenv installed");
    }
    let _ = std::fs::remove_dir(&lock);
    venv
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_with_env(&[])
    }

    /// With moto's own settings, e.g. `INITIAL_NO_AUTH_ACTION_COUNT` (IAM
    /// enforced after that many requests).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let port = free_port();
        let child = Command::new(moto_server())
            .envs(env.iter().copied())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Moto { port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on port {port} within 30s");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (the endpoint disappears, as in an outage).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP forwarder in front of a server, that can be cut (an outage: the
/// listener closes and live connections are shut down) and restored on the
/// same port, so tests can make an endpoint disappear mid-operation.
pub struct TcpProxy {
    pub port: u16,
    upstream: u16,
    inner: std::sync::Arc<ProxyInner>,
    /// The accept loop of the current generation; it owns the listener.
    accepting: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct ProxyInner {
    up: std::sync::atomic::AtomicBool,
    generation: AtomicU32,
    conns: std::sync::Mutex<Vec<std::net::TcpStream>>,
}

impl TcpProxy {
    pub fn start(upstream: u16) -> TcpProxy {
        let port = free_port();
        let inner = std::sync::Arc::new(ProxyInner {
            up: std::sync::atomic::AtomicBool::new(false),
            generation: AtomicU32::new(0),
            conns: std::sync::Mutex::new(Vec::new()),
        });
        let proxy = TcpProxy { port, upstream, inner, accepting: std::sync::Mutex::new(None) };
        proxy.restore();
        proxy
    }

    /// Starts accepting again on the same port. While the proxy was cut the
    /// port was free, and another test's `free_port` may hold it for a
    /// moment: wait for it (5 s at most) rather than fail at once.
    pub fn restore(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("rebind the proxy port {}: {e}", self.port),
            }
        };
        listener.set_nonblocking(true).expect("nonblocking");
        self.inner.up.store(true, Ordering::SeqCst);
        let generation = self.inner.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let inner = self.inner.clone();
        let upstream = self.upstream;
        let accepting = std::thread::spawn(move || {
            while inner.up.load(Ordering::SeqCst) && inner.generation.load(Ordering::SeqCst) == generation {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                        let mut conns = inner.conns.lock().unwrap();
                        for s in [&client, &server] {
                            if let Ok(c) = s.try_clone() {
                                conns.push(c);
                            }
                        }
                        drop(conns);
                        for (mut from, mut to) in
                            [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                        {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut from, &mut to);
                                let _ = to.shutdown(std::net::Shutdown::Both);
                            });
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        *self.accepting.lock().unwrap() = Some(accepting);
    }

    /// The outage: no new connections, and every open one is reset.
    pub fn cut(&self) {
        self.inner.up.store(false, Ordering::SeqCst);
        // The accept loop notices within a poll and drops its listener: wait
        // for it, so the port is free (and refuses) when this returns and no
        // connection it accepted last escapes the reset below.
        if let Some(accepting) = self.accepting.lock().unwrap().take() {
            let _ = accepting.join();
        }
        for c in self.inner.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Where etcd's server binary is: `$ETCD_BIN`, PATH, or Debian's `etcd-server` package.
pub fn etcd_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ETCD_BIN") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("etcd")).find(|p| p.exists()))
        .or_else(|| Some(PathBuf::from("/usr/bin/etcd")).filter(|p| p.exists()))
}

/// A real etcd cluster of N members on loopback, each with its own data
/// folder; stopped and removed on drop.
pub struct EtcdCluster {
    /// Client port of each member.
    pub ports: Vec<u16>,
    peer_ports: Vec<u16>,
    members: Vec<Option<Child>>,
    dir: PathBuf,
}

impl EtcdCluster {
    pub fn start(n: usize) -> EtcdCluster {
        let bin = etcd_bin().expect("etcd is installed (Debian: apt-get install etcd-server; or set ETCD_BIN)");
        // A free port can be taken by another test between being found and
        // being bound: a cluster that lost that race starts again on others.
        for attempt in 1..=3 {
            let dir = unique_dir("drctl-etcd");
            let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
            let peer_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
            let mut c = EtcdCluster { ports, peer_ports, members: Vec::new(), dir };
            for i in 0..n {
                let child = c.spawn(&bin, i);
                c.members.push(Some(child));
            }
            let port_taken = (0..n).any(|i| !c.wait_healthy_unless_port_taken(i));
            if !port_taken {
                return c;
            }
            assert!(attempt < 3, "etcd could not bind free ports three times");
            drop(c);
        }
        unreachable!("returned or asserted above")
    }

    fn spawn(&self, bin: &Path, i: usize) -> Child {
        let initial: Vec<String> =
            self.peer_ports.iter().enumerate().map(|(j, p)| format!("m{j}=http://127.0.0.1:{p}")).collect();
        let log = std::fs::File::create(self.dir.join(format!("m{i}.log"))).expect("etcd log");
        Command::new(bin)
            .arg("--name")
            .arg(format!("m{i}"))
            .arg("--data-dir")
            .arg(self.dir.join(format!("m{i}")))
            .arg("--listen-client-urls")
            .arg(format!("http://127.0.0.1:{}", self.ports[i]))
            .arg("--advertise-client-urls")
            .arg(format!("http://127.0.0.1:{}", self.ports[i]))
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{}", self.peer_ports[i]))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{}", self.peer_ports[i]))
            .arg("--initial-cluster")
            .arg(initial.join(","))
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg(self.dir.file_name().unwrap_or_default())
            // Loopback: short heartbeats elect a new etcd leader fast.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts")
    }

    /// Waits until a member answers `/health` with a quorum behind it;
    /// `false` when it could not bind its ports (taken since they were found).
    fn wait_healthy_unless_port_taken(&self, i: usize) -> bool {
        // Any member that could not bind leaves the others without a quorum.
        let log = || {
            (0..self.ports.len())
                .map(|j| std::fs::read_to_string(self.dir.join(format!("m{j}.log"))).unwrap_or_default())
                .collect::<String>()
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if log().contains("address already in use") {
                return false;
            }
            if self.members[i].is_none() || self.answers_health(i) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if log().contains("address already in use") {
            return false;
        }
        self.wait_healthy(i);
        true
    }

    fn answers_health(&self, i: usize) -> bool {
        use std::io::{Read, Write};
        std::net::TcpStream::connect(("127.0.0.1", self.ports[i]))
            .ok()
            .and_then(|mut s| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                s.write_all(b"GET /health HTTP/1.0\r\n\r\n").ok()?;
                let mut body = String::new();
                s.read_to_string(&mut body).ok()?;
                Some(body.contains("\"health\":\"true\""))
            })
            .unwrap_or(false)
    }

    /// Waits until a member answers `/health` with a quorum behind it.
    fn wait_healthy(&self, i: usize) {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = std::net::TcpStream::connect(("127.0.0.1", self.ports[i])).ok().and_then(|mut s| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                s.write_all(b"GET /health HTTP/1.0\r\n\r\n").ok()?;
                let mut body = String::new();
                s.read_to_string(&mut body).ok()?;
                Some(body.contains("\"health\":\"true\""))
            });
            if ok == Some(true) {
                return;
            }
            let log = std::fs::read_to_string(self.dir.join(format!("m{i}.log"))).unwrap_or_default();
            assert!(Instant::now() < deadline, "etcd member m{i} was not healthy within 30s:\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `etcd://127.0.0.1:P1,...` with the prefix.
    pub fn url(&self, prefix: &str) -> String {
        let hosts: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("etcd://{}/{prefix}", hosts.join(","))
    }

    /// SIGKILLs a member (its zone is lost).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway certificate authority made with `openssl` in `dir`
/// (`ca.pem`, `ca.key`), issuing certificates for 127.0.0.1.
pub struct TestCa {
    pub dir: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        let ca = TestCa { dir: dir.to_path_buf() };
        ca.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=drctl test CA",
        ]);
        ca
    }

    fn openssl(&self, args: &[&str]) {
        let o = Command::new("openssl").current_dir(&self.dir).args(args).output().expect("openssl runs");
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// Issues `cert`/`key` (file names in the folder) for `cn`, valid for
    /// 127.0.0.1, with `usage` (`serverAuth`, `clientAuth`). webpki refuses
    /// a CA as a server's own certificate, hence one signed by the CA.
    pub fn issue(&self, cert: &str, key: &str, cn: &str, usage: &str) {
        let csr = format!("{cert}.csr");
        let ext = format!("{cert}.cnf");
        self.openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ]);
        std::fs::write(
            self.dir.join(&ext),
            format!("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
        )
        .expect("write the extensions");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "1",
            "-extfile",
            &ext,
        ]);
    }
}
