//! Key-encryption keys (KEKs). A [`Keyring`] wraps and unwraps archives' file keys; the
//! [`FileKeyring`] keeps its KEKs in `DATA_DIR/keyring.json` (mode 0600, created on first
//! use), and a KMS or HSM can take its place behind the same trait.
//!
//! Rotation makes a new KEK active; the old ones stay, retired, able to unwrap until no
//! archive header names them, and are then destroyed. Key bytes never reach a log: every type
//! that holds them redacts its `Debug`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::archive::{FileKey, KEY_LEN};

/// File name of the keyring inside the data directory.
pub const KEYRING_FILE: &str = "keyring.json";
const LOCK_FILE: &str = "keyring.lock";
const FORMAT_TAG: &str = "idv-keyring-v1";
const WRAP_NONCE_LEN: usize = 12;

/// A keyring operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// No KEK with this id is in the keyring.
    #[error(
        "key-encryption key {kek_id} is not in this keyring (was it destroyed, or is this another data directory?)"
    )]
    UnknownKek {
        /// The id asked for.
        kek_id: String,
    },
    /// The wrapped key does not authenticate under the KEK.
    #[error("the file key does not unwrap with key-encryption key {kek_id}")]
    UnwrapFailed {
        /// The KEK tried.
        kek_id: String,
    },
    /// A KEK that archives still need cannot be destroyed.
    #[error("key-encryption key {kek_id} is the active key and cannot be destroyed")]
    KekInUse {
        /// The KEK.
        kek_id: String,
    },
    /// The keyring file can be read by others.
    #[error(
        "keyring {path} has mode {mode:o}; it must be readable by its owner only (chmod 600 {path})"
    )]
    InsecurePermissions {
        /// The keyring file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The keyring file is not a valid keyring.
    #[error("keyring {path} is corrupt: {reason}")]
    Corrupt {
        /// The keyring file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing the keyring failed.
    #[error("keyring I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A KEK's public facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekInfo {
    /// Its id, as archive headers name it.
    pub id: String,
    /// When it was made.
    pub created_at: OffsetDateTime,
    /// Whether new archives are wrapped under it.
    pub active: bool,
}

/// Wraps and unwraps archives' file keys under key-encryption keys.
#[async_trait::async_trait]
pub trait Keyring: Send + Sync + std::fmt::Debug {
    /// The KEK new archives are wrapped under.
    async fn active_kek(&self) -> Result<String, KeyringError>;
    /// Wraps `key` under `kek_id`, bound to `context` (see `archive::wrap_context`).
    async fn wrap(
        &self,
        kek_id: &str,
        context: &[u8],
        key: &FileKey,
    ) -> Result<Vec<u8>, KeyringError>;
    /// Unwraps a key wrapped by [`Keyring::wrap`] with the same KEK and context.
    async fn unwrap(
        &self,
        kek_id: &str,
        context: &[u8],
        wrapped: &[u8],
    ) -> Result<FileKey, KeyringError>;
    /// Makes a new KEK active and returns its id; older KEKs keep unwrapping.
    async fn rotate(&self) -> Result<String, KeyringError>;
    /// Destroys a retired KEK once no archive needs it.
    async fn destroy_kek(&self, kek_id: &str) -> Result<(), KeyringError>;
    /// Every KEK in the keyring, oldest first.
    async fn keks(&self) -> Result<Vec<KekInfo>, KeyringError>;
}

#[derive(Serialize, Deserialize)]
struct KeyringFile {
    format: String,
    active: String,
    keks: Vec<StoredKek>,
}

#[derive(Serialize, Deserialize)]
struct StoredKek {
    id: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// Hex of the 32 key bytes.
    key: Zeroizing<String>,
}

impl StoredKek {
    fn generate(id: String) -> Self {
        let key = FileKey::generate(); // any 32 random bytes; reuses the zeroizing type
        Self {
            id,
            created_at: OffsetDateTime::now_utc(),
            key: Zeroizing::new(hex::encode(key.expose())),
        }
    }

    fn cipher(&self, path: &Path) -> Result<Aes256Gcm, KeyringError> {
        let bytes = Zeroizing::new(
            hex::decode(self.key.as_str()).map_err(|_| corrupt(path, "key is not hex"))?,
        );
        if bytes.len() != KEY_LEN {
            return Err(corrupt(path, "key is not 32 bytes"));
        }
        Ok(Aes256Gcm::new_from_slice(&bytes).expect("32-byte key"))
    }
}

/// KEKs in a 0600 JSON file in the data directory.
pub struct FileKeyring {
    path: PathBuf,
    lock_path: PathBuf,
    state: Mutex<KeyringFile>,
}

impl std::fmt::Debug for FileKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKeyring")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileKeyring {
    /// Opens `data_dir/keyring.json`, creating it (mode 0600, with one KEK) on first use.
    ///
    /// # Errors
    /// I/O errors, a corrupt file, or a file others can read.
    pub fn open(data_dir: &Path) -> Result<Self, KeyringError> {
        fs::create_dir_all(data_dir).map_err(|e| io_err(data_dir, e))?;
        let path = data_dir.join(KEYRING_FILE);
        let lock_path = data_dir.join(LOCK_FILE);
        let state = {
            let _lock = lock(&lock_path)?;
            if path.exists() {
                load(&path)?
            } else {
                let first = StoredKek::generate("kek-0001".into());
                let file = KeyringFile {
                    format: FORMAT_TAG.into(),
                    active: first.id.clone(),
                    keks: vec![first],
                };
                store(&path, &file)?;
                tracing::info!(path = %path.display(), "created keyring with key-encryption key kek-0001");
                file
            }
        };
        Ok(Self {
            path,
            lock_path,
            state: Mutex::new(state),
        })
    }

    /// Runs `change` on the freshest on-disk state under the cross-process lock and saves it.
    fn modify<T>(
        &self,
        change: impl FnOnce(&mut KeyringFile) -> Result<T, KeyringError>,
    ) -> Result<T, KeyringError> {
        let _lock = lock(&self.lock_path)?;
        let mut fresh = load(&self.path)?;
        let out = change(&mut fresh)?;
        store(&self.path, &fresh)?;
        *self.state.lock().expect("keyring state lock poisoned") = fresh;
        Ok(out)
    }

    /// Runs `read` on the in-memory state, reloading once if a KEK is missing (another
    /// process may have rotated since we loaded).
    fn with_kek<T>(
        &self,
        kek_id: &str,
        read: impl Fn(&StoredKek) -> Result<T, KeyringError>,
    ) -> Result<T, KeyringError> {
        {
            let state = self.state.lock().expect("keyring state lock poisoned");
            if let Some(kek) = state.keks.iter().find(|k| k.id == kek_id) {
                return read(kek);
            }
        }
        let fresh = load(&self.path)?;
        let mut state = self.state.lock().expect("keyring state lock poisoned");
        *state = fresh;
        let kek =
            state
                .keks
                .iter()
                .find(|k| k.id == kek_id)
                .ok_or_else(|| KeyringError::UnknownKek {
                    kek_id: kek_id.into(),
                })?;
        read(kek)
    }
}

#[async_trait::async_trait]
impl Keyring for FileKeyring {
    async fn active_kek(&self) -> Result<String, KeyringError> {
        Ok(self
            .state
            .lock()
            .expect("keyring state lock poisoned")
            .active
            .clone())
    }

    async fn wrap(
        &self,
        kek_id: &str,
        context: &[u8],
        key: &FileKey,
    ) -> Result<Vec<u8>, KeyringError> {
        self.with_kek(kek_id, |kek| {
            let cipher = kek.cipher(&self.path)?;
            let mut nonce = Nonce::<Aes256Gcm>::default();
            getrandom::fill(&mut nonce).expect("the OS random number generator failed");
            let sealed = cipher
                .encrypt(
                    &nonce,
                    Payload {
                        msg: key.expose(),
                        aad: context,
                    },
                )
                .expect("a 32-byte key is far below AES-GCM's limit");
            let mut out = nonce.to_vec();
            out.extend_from_slice(&sealed);
            Ok(out)
        })
    }

    async fn unwrap(
        &self,
        kek_id: &str,
        context: &[u8],
        wrapped: &[u8],
    ) -> Result<FileKey, KeyringError> {
        self.with_kek(kek_id, |kek| {
            let failed = || KeyringError::UnwrapFailed {
                kek_id: kek_id.into(),
            };
            if wrapped.len() <= WRAP_NONCE_LEN {
                return Err(failed());
            }
            let (nonce, sealed) = wrapped.split_at(WRAP_NONCE_LEN);
            let nonce = Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| failed())?;
            let plain = Zeroizing::new(
                kek.cipher(&self.path)?
                    .decrypt(
                        &nonce,
                        Payload {
                            msg: sealed,
                            aad: context,
                        },
                    )
                    .map_err(|_| failed())?,
            );
            FileKey::from_slice(&plain).ok_or_else(failed)
        })
    }

    async fn rotate(&self) -> Result<String, KeyringError> {
        let id = self.modify(|file| {
            let next = file
                .keks
                .iter()
                .filter_map(|k| k.id.strip_prefix("kek-")?.parse::<u32>().ok())
                .max()
                .unwrap_or(0)
                + 1;
            let kek = StoredKek::generate(format!("kek-{next:04}"));
            let id = kek.id.clone();
            file.keks.push(kek);
            file.active = id.clone();
            Ok(id)
        })?;
        tracing::info!(kek_id = %id, "rotated: new archives are wrapped under the new key-encryption key");
        Ok(id)
    }

    async fn destroy_kek(&self, kek_id: &str) -> Result<(), KeyringError> {
        self.modify(|file| {
            if file.active == kek_id {
                return Err(KeyringError::KekInUse {
                    kek_id: kek_id.into(),
                });
            }
            let before = file.keks.len();
            file.keks.retain(|k| k.id != kek_id);
            if file.keks.len() == before {
                return Err(KeyringError::UnknownKek {
                    kek_id: kek_id.into(),
                });
            }
            Ok(())
        })?;
        tracing::info!(kek_id, "destroyed retired key-encryption key");
        Ok(())
    }

    async fn keks(&self) -> Result<Vec<KekInfo>, KeyringError> {
        let state = self.state.lock().expect("keyring state lock poisoned");
        Ok(state
            .keks
            .iter()
            .map(|k| KekInfo {
                id: k.id.clone(),
                created_at: k.created_at,
                active: k.id == state.active,
            })
            .collect())
    }
}

fn load(path: &Path) -> Result<KeyringFile, KeyringError> {
    let meta = fs::metadata(path).map_err(|e| io_err(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyringError::InsecurePermissions {
            path: path.display().to_string(),
            mode,
        });
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| io_err(path, e))?);
    let file: KeyringFile =
        serde_json::from_str(&text).map_err(|e| corrupt(path, &e.to_string()))?;
    if file.format != FORMAT_TAG {
        return Err(corrupt(path, "unknown keyring format"));
    }
    if !file.keks.iter().any(|k| k.id == file.active) {
        return Err(corrupt(path, "the active key is missing"));
    }
    for kek in &file.keks {
        kek.cipher(path)?;
    }
    Ok(file)
}

/// Writes the keyring atomically: a 0600 temporary file, fsync, rename, fsync the directory.
fn store(path: &Path, file: &KeyringFile) -> Result<(), KeyringError> {
    let tmp = path.with_extension("json.tmp");
    let text = Zeroizing::new(serde_json::to_string_pretty(file).expect("keyring serialises"));
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    out.write_all(text.as_bytes())
        .map_err(|e| io_err(&tmp, e))?;
    out.sync_all().map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, e))?;
    }
    Ok(())
}

/// An exclusive advisory lock held for the life of the returned file.
fn lock(lock_path: &Path) -> Result<File, KeyringError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(lock_path)
        .map_err(|e| io_err(lock_path, e))?;
    file.lock().map_err(|e| io_err(lock_path, e))?;
    Ok(file)
}

fn io_err(path: &Path, source: std::io::Error) -> KeyringError {
    KeyringError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn corrupt(path: &Path, reason: &str) -> KeyringError {
    KeyringError::Corrupt {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keyring_is_created_0600_and_never_prints_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ring = FileKeyring::open(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(KEYRING_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(ring.active_kek().await.unwrap(), "kek-0001");
        let text = fs::read_to_string(dir.path().join(KEYRING_FILE)).unwrap();
        let file: KeyringFile = serde_json::from_str(&text).unwrap();
        assert!(!format!("{ring:?}").contains(file.keks[0].key.as_str()));
    }

    #[tokio::test]
    async fn wrap_is_bound_to_kek_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let ring = FileKeyring::open(dir.path()).unwrap();
        let key = FileKey::generate();
        let wrapped = ring.wrap("kek-0001", b"ctx-a", &key).await.unwrap();
        let back = ring.unwrap("kek-0001", b"ctx-a", &wrapped).await.unwrap();
        assert_eq!(back.expose(), key.expose());
        assert!(matches!(
            ring.unwrap("kek-0001", b"ctx-b", &wrapped).await,
            Err(KeyringError::UnwrapFailed { .. })
        ));
        let other = tempfile::tempdir().unwrap();
        let foreign = FileKeyring::open(other.path()).unwrap();
        assert!(matches!(
            foreign.unwrap("kek-0001", b"ctx-a", &wrapped).await,
            Err(KeyringError::UnwrapFailed { .. })
        ));
    }

    #[tokio::test]
    async fn rotation_keeps_old_keks_until_destroyed_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ring = FileKeyring::open(dir.path()).unwrap();
        let key = FileKey::generate();
        let old = ring.wrap("kek-0001", b"c", &key).await.unwrap();
        assert_eq!(ring.rotate().await.unwrap(), "kek-0002");
        // Another process sees the rotation.
        let again = FileKeyring::open(dir.path()).unwrap();
        assert_eq!(again.active_kek().await.unwrap(), "kek-0002");
        assert!(again.unwrap("kek-0001", b"c", &old).await.is_ok());
        assert!(matches!(
            ring.destroy_kek("kek-0002").await,
            Err(KeyringError::KekInUse { .. })
        ));
        ring.destroy_kek("kek-0001").await.unwrap();
        let reopened = FileKeyring::open(dir.path()).unwrap();
        assert!(matches!(
            reopened.unwrap("kek-0001", b"c", &old).await,
            Err(KeyringError::UnknownKek { .. })
        ));
        assert_eq!(reopened.keks().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_world_readable_keyring_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(FileKeyring::open(dir.path()).unwrap());
        let path = dir.path().join(KEYRING_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            FileKeyring::open(dir.path()),
            Err(KeyringError::InsecurePermissions { mode: 0o644, .. })
        ));
    }
}
