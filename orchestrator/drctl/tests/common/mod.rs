//! Helpers the binary's end-to-end tests share: running `drctl` in a
//! folder, a controller on a free port, waiting for a condition, and
//! headless Chromium.
#![allow(dead_code)]

use drctl_testkit::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `drctl` run in `dir`, its state in `dir/state.db`.
pub fn drctl(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drctl"));
    c.current_dir(dir).env("DRCTL_STATE", format!("sqlite://{}/state.db", dir.display()));
    c
}

/// `drctl` with none of the caller's environment that would choose its
/// state store or its AWS keys: a test says what it wants.
pub fn drctl_clean() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drctl"));
    c.env_remove("DRCTL_STATE").env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    c
}

/// An empty folder of this test process's own, `name` telling tests apart.
pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("drctl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Waits until something accepts connections on `port` (30 s at most).
pub fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn show(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A `drctl serve` process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `drctl serve -f drctl.yaml` in `dir` on a free port, once it listens.
pub fn start(dir: &Path, extra: &[&str], scheme: &str) -> Server {
    start_on(dir, free_port(), extra, scheme)
}

pub fn start_on(dir: &Path, port: u16, extra: &[&str], scheme: &str) -> Server {
    let child = drctl(dir)
        .args(["serve", "-f", "drctl.yaml", "--sample-every", "300ms", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(Stdio::null())
        // Kept for a failing test's reader (serve.log in the test's folder).
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let base = format!("{scheme}://127.0.0.1:{port}");
    wait_listening(port, "drctl serve");
    Server { child, base, port }
}

pub fn token(dir: &Path, name: &str, role: &str) -> String {
    let out = drctl(dir).args(["token", "create", "--name", name, "--role", role]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap()
}

/// Polls `f` until it holds; fails the test after `secs`.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The page as Chromium renders it (DOM after parsing), plus a screenshot.
pub fn render(browser: &Path, url: &str, shot: &Path) -> String {
    let profile = std::env::temp_dir().join(format!(
        "drctl-chromium-{}-{}",
        std::process::id(),
        shot.file_stem().unwrap().to_string_lossy()
    ));
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let out = Command::new(browser)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--window-size=1000,1600")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(shot.exists() && std::fs::metadata(shot).unwrap().len() > 10_000, "screenshot: {}", show(&out));
    let dom = Command::new(browser)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(profile);
    String::from_utf8_lossy(&dom.stdout).to_string()
}

/// Chromium, or `None` with a note (a failure when CI requires it).
pub fn chromium_or_skip() -> Option<PathBuf> {
    match chromium() {
        Some(b) => Some(b),
        None if std::env::var_os("DRCTL_REQUIRE_CHROMIUM").is_some() => {
            panic!("chromium is required (DRCTL_REQUIRE_CHROMIUM)")
        }
        None => {
            eprintln!("skipping the Chromium check: no chromium on this machine (.ci/run installs it)");
            None
        }
    }
}
