//! The lab's PostgreSQL servers: the system's own binaries, run as direct
//! children of the lab (as the `postgres` user when the lab runs as root,
//! since initdb refuses root) with a parent-death signal, so that even a
//! lab killed with SIGKILL leaves no server behind.

use crate::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where PostgreSQL's server binaries are (see [`drctl_pgserver::find_bin`]).
pub fn find_bin() -> Result<PathBuf, Error> {
    drctl_pgserver::find_bin().map_err(Error::Missing)
}

/// Ownership for a folder PostgreSQL will write to.
pub fn hand_over(dir: &Path) -> Result<(), Error> {
    drctl_pgserver::hand_over(dir)
        .map_err(|e| Error::Io(format!("cannot give {} to the postgres user: {e}", dir.display())))
}

/// A server tool, killed with the lab even when the lab is SIGKILLed.
fn command(bin: &Path, tool: &str) -> Command {
    drctl_pgserver::command(bin, tool, drctl_pgserver::Lifetime::DiesWithParent)
}

fn run(mut c: Command, what: &str) -> Result<(), Error> {
    let out = c.output().map_err(|e| Error::Process(format!("{what}: cannot run: {e}")))?;
    if !out.status.success() {
        return Err(Error::Process(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// Starts a server from a thread that lives as long as the process.
///
/// The parent-death signal fires when the *thread* that forked the child
/// exits, not the process: a server started from one of tokio's blocking
/// threads was killed when that thread idled out (10 s without work),
/// for instance while the lab took its first backup. One spawner thread
/// for the whole process ties the servers' lives to the lab's process.
fn spawn_for_life(c: Command) -> std::io::Result<Child> {
    type Job = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> = std::sync::OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        // Owned by the process: it waits for jobs until the process ends.
        std::thread::Builder::new()
            .name("drctl-lab-spawner".into())
            .spawn(move || {
                for (mut c, reply) in rx {
                    let _ = reply.send(c.spawn());
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the lab's spawner thread"));
        std::sync::Mutex::new(tx)
    });
    let (reply, answer) = std::sync::mpsc::channel();
    tx.lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((c, reply))
        .map_err(|_| std::io::Error::other("the lab's spawner thread is gone"))?;
    answer.recv().map_err(|_| std::io::Error::other("the lab's spawner thread is gone"))?
}

/// One PostgreSQL server of the lab.
pub struct PgServer {
    pub name: String,
    pub data: PathBuf,
    /// Where the server itself listens (the lab's proxy sits in front of it).
    pub addr: SocketAddr,
    bin: PathBuf,
    child: Option<Child>,
}

impl PgServer {
    /// initdb a new primary. `archive`: with `archive_mode = on` (WAL
    /// archiving needs it from the start; drctl sets `archive_command`).
    pub fn init_primary(bin: &Path, name: &str, data: PathBuf, addr: SocketAddr, archive: bool) -> Result<Self, Error> {
        let mut c = command(bin, "initdb");
        c.arg("-D").arg(&data).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"]);
        run(c, "initdb")?;
        let conf = "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\nsynchronous_commit = on\n\
                    wal_receiver_status_interval = 1s\nhot_standby_feedback = on\nwal_sender_timeout = 5s\n\
                    wal_receiver_timeout = 5s\nwal_retrieve_retry_interval = 250ms\nmax_connections = 60\nshared_buffers = 32MB\n";
        append(&data.join("postgresql.conf"), conf)?;
        if archive {
            append(&data.join("postgresql.conf"), "archive_mode = on\n")?;
        }
        append(&data.join("pg_hba.conf"), "host all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n")?;
        Ok(PgServer { name: name.into(), data, addr, bin: bin.into(), child: None })
    }

    /// A streaming standby of the server reachable at `primary` (through its proxy).
    pub fn init_standby(
        bin: &Path,
        name: &str,
        data: PathBuf,
        addr: SocketAddr,
        primary: SocketAddr,
    ) -> Result<Self, Error> {
        basebackup(bin, &data, primary)?;
        Ok(PgServer { name: name.into(), data, addr, bin: bin.into(), child: None })
    }

    /// Starts the server and waits until it accepts connections.
    /// `read_only` starts it fenced (a node back from an outage whose
    /// datastore failed over meanwhile must not take writes).
    pub fn start(&mut self, read_only: bool) -> Result<(), Error> {
        if self.running() {
            return Ok(());
        }
        // Each server its own socket folder (outside the data folder, which
        // pg_basebackup copies): the lab's servers share a port number.
        let sockets = self.data.with_extension("sock");
        std::fs::create_dir_all(&sockets)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", sockets.display())))?;
        hand_over(&sockets)?;
        let log = std::fs::File::create(self.data.with_extension("log"))
            .map_err(|e| Error::Io(format!("cannot write the PostgreSQL log: {e}")))?;
        // Owned by the server's user: `pg_ctl -l` appends to the same file
        // when a restore restarts the member in its place.
        hand_over(&self.data.with_extension("log"))?;
        let mut c = command(&self.bin, "postgres");
        c.arg("-D")
            .arg(&self.data)
            .arg("-c")
            .arg(format!("listen_addresses={}", self.addr.ip()))
            .arg("-c")
            .arg(format!("port={}", self.addr.port()))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", sockets.display()));
        if read_only {
            c.args(["-c", "default_transaction_read_only=on"]);
        }
        c.stdout(Stdio::null()).stderr(log);
        let child = spawn_for_life(c).map_err(|e| Error::Process(format!("cannot start postgres: {e}")))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(Error::Process(format!(
                    "postgres ({}) exited at start ({status}); see {}",
                    self.name,
                    self.data.with_extension("log").display()
                )));
            }
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                // Accepting TCP is not accepting queries yet: ask pg_isready.
                let ok = command(&self.bin, "pg_isready")
                    .args(["-h", &self.addr.ip().to_string(), "-p", &self.addr.port().to_string(), "-q"])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if ok {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Error::Process(format!("postgres ({}) did not accept connections within 30s", self.name)))
    }

    /// Throws this server's data away and makes it a streaming standby of
    /// `primary` (a fresh base backup), as an operator rebuilds an old
    /// primary after a failover. Its writes that never reached the new
    /// primary are gone with it, as they are on the real day.
    pub fn rebuild_as_standby(&mut self, primary: SocketAddr) -> Result<(), Error> {
        self.stop();
        std::fs::remove_dir_all(&self.data)
            .map_err(|e| Error::Io(format!("cannot remove {}: {e}", self.data.display())))?;
        basebackup(&self.bin, &self.data, primary)?;
        self.start(false)
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The server binaries' folder it runs with.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the postmaster (a power loss: no shutdown checkpoint); its
    /// backends exit when they notice.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops with an immediate shutdown and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGQUIT);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops a server the lab did not start itself but that runs from `data`
/// (one a `restore --replace` started with `pg_ctl` in a member's place,
/// or a member it rebuilt): the lab leaves nothing running.
pub fn stop_foreign(bin: &Path, data: &Path) {
    if !data.join("postmaster.pid").exists() {
        return;
    }
    let mut c = drctl_pgserver::command(bin, "pg_ctl", drctl_pgserver::Lifetime::Independent);
    c.arg("-D").arg(data).args(["-m", "immediate", "-w", "-t", "20", "stop"]);
    let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// A base backup of `primary` into `data`, set up to stream from it (`-R`).
fn basebackup(bin: &Path, data: &Path, primary: SocketAddr) -> Result<(), Error> {
    let mut c = command(bin, "pg_basebackup");
    c.arg("-D").arg(data).args([
        "-h",
        &primary.ip().to_string(),
        "-p",
        &primary.port().to_string(),
        "-U",
        "postgres",
        "-R",
        "-X",
        "stream",
        "--no-sync",
        "-c",
        "fast",
    ]);
    run(c, "pg_basebackup")?;
    Ok(())
}

fn append(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))
}
