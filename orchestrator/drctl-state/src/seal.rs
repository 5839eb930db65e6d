//! Keys kept outside the state store, and what they seal inside it.
//!
//! Why: the state store is the file that gets copied: into backups, onto
//! another machine, into a bug report. Whoever holds that file alone must
//! not learn a subscriber's address, forge a webhook signature, follow an
//! unsubscribe link, or rewrite the audit log without it showing. So the
//! secrets the controller must keep (webhook signing secrets) and the
//! personal data it holds (subscribers' addresses) are sealed with
//! AES-256-GCM under a key that lives beside the store, never in it; tokens
//! of any kind are kept as hashes only; and the audit log is chained with
//! HMAC under a second key kept in the same place.
//!
//! A [`Keyring`] is a small text file, one `ID HEX` line per key, the last
//! one current. Rotating appends a key: what was sealed under an older one
//! still opens (a sealed value names its key's id), new values use the
//! newest. [`Sealer`] is the reusable part: `seal` / `open` bytes, and a
//! keyed `index` of a value for finding it without keeping it in clear.
//!
//! Where the keys live ([`KeyPaths`]): for `sqlite://PATH` a folder
//! `PATH-keys` beside the file (0700, files 0600), for etcd `.drctl/etcd-keys`
//! in the working folder; `DRCTL_KEY_DIR` names another folder, and
//! `DRCTL_KEY` (hex keys, comma-separated, last current) replaces the data
//! key file. Both are created, with a fresh random key, on first use.

use crate::error::{Error, Result};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What every sealed value starts with: a value without it was written in
/// clear (before sealing existed) and is read as it is.
const MAGIC: &[u8] = b"drctl-sealed-1:";
const NONCE_LEN: usize = 12;

/// One or more 256-bit keys, each with an id; the last is current.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("Keyring").field("ids", &self.ids()).finish()
    }
}

/// A key's id: the first 8 hex digits of its SHA-256 (names it without revealing it).
fn key_id(key: &[u8; 32]) -> String {
    let d = Sha256::digest([b"drctl key id:".as_slice(), key].concat());
    hex(&d[..4])
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Keyring {
    /// A ring of one fresh random key.
    pub fn generate() -> Result<Keyring> {
        let key = random_bytes("a key")?;
        Ok(Keyring { keys: vec![(key_id(&key), key)] })
    }

    /// Reads `ID HEX` lines (or bare `HEX`, or comma-separated `HEX`); `what` names the source in errors.
    pub fn parse(text: &str, what: &str) -> Result<Keyring> {
        let mut keys = Vec::new();
        for (n, line) in text.split(['\n', ',']).enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let hex = line.split_whitespace().last().unwrap_or_default();
            let key = parse_hex32(hex).ok_or_else(|| {
                Error::Invalid(format!(
                    "{what}: entry {} is not a 256-bit key in hex (64 hex digits; make one with `openssl rand -hex 32`)",
                    n + 1
                ))
            })?;
            keys.push((key_id(&key), key));
        }
        if keys.is_empty() {
            return Err(Error::Invalid(format!("{what} holds no key (make one with `openssl rand -hex 32`)")));
        }
        Ok(Keyring { keys })
    }

    fn render(&self) -> String {
        self.keys.iter().map(|(id, k)| format!("{id} {}\n", hex(k))).collect()
    }

    /// The ring in `path`, made (with one fresh key, 0600, its folder
    /// 0700) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Keyring> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                private_file(path)?;
                Keyring::parse(&text, &path.display().to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ring = Keyring::generate()?;
                if let Some(dir) = path.parent() {
                    private_dir(dir)?;
                }
                write_private_new(path, ring.render().as_bytes())?;
                // Another process may have made it first: theirs wins.
                Keyring::parse(&std::fs::read_to_string(path).map_err(|e| io(path, e))?, &path.display().to_string())
            }
            Err(e) => Err(io(path, e)),
        }
    }

    /// Appends a fresh key to the ring in `path` (made when absent); returns the new ring.
    pub fn rotate(path: &Path) -> Result<Keyring> {
        let mut ring = Keyring::load_or_create(path)?;
        let fresh = Keyring::generate()?;
        ring.keys.extend(fresh.keys);
        let tmp = path.with_extension("rotating");
        let _ = std::fs::remove_file(&tmp);
        write_private_new(&tmp, ring.render().as_bytes())?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
        Ok(ring)
    }

    /// The ids of the keys, oldest first.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|(id, _)| id.clone()).collect()
    }

    pub fn current(&self) -> (&str, &[u8; 32]) {
        let (id, k) = self.keys.last().expect("a ring is never empty");
        (id, k)
    }

    pub fn keys(&self) -> impl Iterator<Item = (&str, &[u8; 32])> {
        self.keys.iter().map(|(id, k)| (id.as_str(), k))
    }

    fn get(&self, id: &str) -> Option<&[u8; 32]> {
        self.keys.iter().find(|(i, _)| i == id).map(|(_, k)| k)
    }
}

/// 32 bytes from the operating system's randomness, for `what` (in the error).
pub(crate) fn random_bytes(what: &str) -> Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| Error::Invalid(format!("no randomness for {what}: {e}")))?;
    Ok(bytes)
}

/// Bytes as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Backend(format!("{}: {e}", path.display()))
}

/// Makes `dir` (0700) when absent; an existing one is left as it is.
pub fn private_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| Error::CreateDir { path: dir.to_path_buf(), source })
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir { path: dir.to_path_buf(), source })
}

/// Sets an existing file to 0600 (owner only).
pub fn private_file(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| io(path, e))?;
            }
            _ => {}
        }
    }
    let _ = path;
    Ok(())
}

/// Creates `path` 0600 with `bytes`, unless it exists (then nothing is written).
fn write_private_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    match open.open(path) {
        Ok(mut f) => {
            f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| io(path, e))?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(path, e)),
    }
}

/// Creates `path` 0600 (empty) when absent and makes an existing one 0600.
pub fn touch_private(path: &Path) -> Result<()> {
    write_private_new(path, b"")?;
    private_file(path)
}

/// Seals and opens bytes under a [`Keyring`]; see the module documentation.
#[derive(Clone, Debug)]
pub struct Sealer {
    ring: Arc<Keyring>,
}

impl Sealer {
    pub fn new(ring: Keyring) -> Sealer {
        Sealer { ring: Arc::new(ring) }
    }

    /// A sealer with a fresh key nobody keeps (an in-memory store).
    pub fn ephemeral() -> Sealer {
        Sealer::new(Keyring::generate().expect("the operating system gives no randomness"))
    }

    pub fn keyring(&self) -> &Keyring {
        &self.ring
    }

    /// `plain` sealed under the current key: `MAGIC`, the key id, `:`, a
    /// random nonce, the AES-256-GCM ciphertext and tag.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let (id, key) = self.ring.current();
        let mut nonce = [0u8; NONCE_LEN];
        // The OS's randomness failing is not something to carry on through.
        getrandom::getrandom(&mut nonce).expect("the operating system gives no randomness");
        let cipher = Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(key));
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(id.as_bytes());
        head.push(b':');
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad: &head })
            .expect("AES-GCM seals any length drctl stores");
        let mut out = head;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Whether `bytes` were sealed (rather than written in clear).
    pub fn is_sealed(bytes: &[u8]) -> bool {
        bytes.starts_with(MAGIC)
    }

    /// The plain bytes of a sealed value; a value written in clear is
    /// returned as it is.
    pub fn open(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        let Some(rest) = bytes.strip_prefix(MAGIC) else { return Ok(bytes.to_vec()) };
        let colon = rest
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| Error::Corrupt("a sealed value has no key id".into()))?;
        let id = std::str::from_utf8(&rest[..colon])
            .map_err(|_| Error::Corrupt("a sealed value's key id is not text".into()))?;
        let key = self.ring.get(id).ok_or_else(|| {
            Error::Corrupt(format!(
                "a value is sealed under key `{id}`, which this controller does not hold (keys: {}): give it the key file the others use",
                self.ring.ids().join(", ")
            ))
        })?;
        let body = &rest[colon + 1..];
        if body.len() < NONCE_LEN {
            return Err(Error::Corrupt("a sealed value is cut short".into()));
        }
        let head = &bytes[..MAGIC.len() + colon + 1];
        Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(key))
            .decrypt(Nonce::from_slice(&body[..NONCE_LEN]), Payload { msg: &body[NONCE_LEN..], aad: head })
            .map_err(|_| Error::Corrupt(format!("a value sealed under key `{id}` does not open: damaged or altered")))
    }

    /// A keyed hash of `value` for `purpose` (hex), for finding a record by
    /// a value it keeps only sealed (a subscriber's address). Under the
    /// oldest key, so it stays the same when keys rotate.
    pub fn index(&self, purpose: &str, value: &[u8]) -> String {
        use hmac::{KeyInit, Mac};
        let (_, key) = self.ring.keys().next().expect("a ring is never empty");
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(value);
        hex(&mac.finalize().into_bytes())
    }
}

/// Where a store's keys live; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPaths {
    pub dir: PathBuf,
}

impl KeyPaths {
    /// `DRCTL_KEY_DIR` when set, else `default`.
    fn chosen(default: PathBuf) -> KeyPaths {
        match std::env::var_os("DRCTL_KEY_DIR").filter(|v| !v.is_empty()) {
            Some(d) => KeyPaths { dir: PathBuf::from(d) },
            None => KeyPaths { dir: default },
        }
    }

    /// The keys of the SQLite file at `db`: the folder `DB-keys` beside it.
    pub fn for_sqlite(db: &Path) -> KeyPaths {
        let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push("-keys");
        KeyPaths::chosen(db.with_file_name(name))
    }

    /// The keys of a store on etcd: `.drctl/etcd-keys` (every controller
    /// and CLI sharing the store needs the same files).
    pub fn for_etcd() -> KeyPaths {
        KeyPaths::chosen(PathBuf::from(".drctl/etcd-keys"))
    }

    /// The data key ring.
    pub fn data_key(&self) -> PathBuf {
        self.dir.join("data.key")
    }

    /// The audit log's key ring.
    pub fn audit_key(&self) -> PathBuf {
        self.dir.join("audit.key")
    }

    /// The audit log's heads, one `SEQ HASH` line per entry appended.
    pub fn audit_head(&self) -> PathBuf {
        self.dir.join("audit-head")
    }

    /// The data sealer: `DRCTL_KEY` when set, else the key file (made on first use).
    pub fn sealer(&self) -> Result<Sealer> {
        if let Some(k) = std::env::var("DRCTL_KEY").ok().filter(|k| !k.trim().is_empty()) {
            return Ok(Sealer::new(Keyring::parse(&k, "DRCTL_KEY")?));
        }
        Ok(Sealer::new(Keyring::load_or_create(&self.data_key())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_and_hide_their_content() {
        let s = Sealer::new(Keyring::generate().unwrap());
        let sealed = s.seal(b"someone@example.com");
        assert!(!sealed.windows(7).any(|w| w == b"someone"));
        assert_eq!(s.open(&sealed).unwrap(), b"someone@example.com");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(s.open(&tampered).is_err());
        let other = Sealer::new(Keyring::generate().unwrap());
        assert!(other.open(&sealed).is_err(), "another key does not open it");
        assert_eq!(s.open(b"{\"plain\":1}").unwrap(), b"{\"plain\":1}", "values in clear read as they are");
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_indexes_stable() {
        let dir = std::env::temp_dir().join(format!("drctl-sealkeys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("keys/data.key");
        let before = Sealer::new(Keyring::load_or_create(&path).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(dir.join("keys")).unwrap().permissions().mode() & 0o777, 0o700);
        }
        let old = before.seal(b"old");
        let after = Sealer::new(Keyring::rotate(&path).unwrap());
        assert_eq!(after.keyring().ids().len(), 2);
        assert_ne!(after.keyring().current().0, before.keyring().current().0);
        assert_eq!(after.open(&old).unwrap(), b"old");
        assert_eq!(after.index("addr", b"a@b"), before.index("addr", b"a@b"));
        let again = Sealer::new(Keyring::load_or_create(&path).unwrap());
        assert_eq!(again.keyring().ids(), after.keyring().ids());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_key_says_how_to_make_one() {
        let err = Keyring::parse("nothex", "DRCTL_KEY").unwrap_err().to_string();
        assert!(err.contains("openssl rand -hex 32"), "{err}");
    }
}
