//! TLS to etcd: a real etcd that serves only https and requires client
//! certificates, reached with `DRCTL_ETCD_CA`, `DRCTL_ETCD_CERT` and
//! `DRCTL_ETCD_KEY`. Its own test binary: the variables are process-wide.

use drctl_testkit::{etcd_bin, free_port, TestCa};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_store_reaches_an_etcd_that_requires_tls_and_client_certificates() {
    let dir = std::env::temp_dir().join(format!("drctl-etcd-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = TestCa::new(&dir);
    ca.issue("server.pem", "server.key", "127.0.0.1", "serverAuth");
    ca.issue("client.pem", "client.key", "drctl", "clientAuth");
    let (port, peer) = (free_port(), free_port());
    let mut etcd = Command::new(etcd_bin().expect("etcd is installed"))
        .current_dir(&dir)
        .args(["--name", "tls", "--data-dir", "data"])
        .args(["--listen-client-urls", &format!("https://127.0.0.1:{port}")])
        .args(["--advertise-client-urls", &format!("https://127.0.0.1:{port}")])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-cluster", &format!("tls=http://127.0.0.1:{peer}")])
        .args([
            "--cert-file",
            "server.pem",
            "--key-file",
            "server.key",
            "--trusted-ca-file",
            "ca.pem",
            "--client-cert-auth",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("etcd://127.0.0.1:{port}/tls");

    // With the CA and a client certificate: the whole store contract holds.
    let deadline = Instant::now() + Duration::from_secs(30);
    std::env::set_var("DRCTL_ETCD_CA", dir.join("ca.pem"));
    std::env::set_var("DRCTL_ETCD_CERT", dir.join("client.pem"));
    std::env::set_var("DRCTL_ETCD_KEY", dir.join("client.key"));
    let state = loop {
        match drctl_etcd::open(&url) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "etcd over TLS did not answer: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    drctl_state::conformance::check(&*state);

    // A client without its certificate is turned away by etcd.
    std::env::remove_var("DRCTL_ETCD_CERT");
    let half = drctl_etcd::open(&url).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(half.contains("DRCTL_ETCD_CERT and DRCTL_ETCD_KEY"), "{half}");
    std::env::remove_var("DRCTL_ETCD_KEY");
    assert!(drctl_etcd::open(&url).is_err(), "etcd requires a client certificate");
    let _ = etcd.kill();
    let _ = etcd.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
