//! The per-archive key schedule. Two random 32-byte secrets meet here:
//!
//! * the [`FileKey`], which travels in the archive header wrapped by a key-encryption key
//!   (so rotating the KEK rewraps headers and never touches the payload), and
//! * the [`RetentionKey`], which lives only in the metadata database (so erasing it at the
//!   end of retention makes every copy of the archive unreadable, backups included).
//!
//! HKDF-SHA256 mixes both under the archive id and derives one key per purpose under its own
//! label, so the payload, the manifest and the header MAC never share a key.

use hkdf::Hkdf;
use sha2::Sha256;
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length in bytes of every secret in the schedule.
pub const KEY_LEN: usize = 32;

const LABEL_PAYLOAD: &[u8] = b"idv/archive/v1/payload";
const LABEL_MANIFEST: &[u8] = b"idv/archive/v1/manifest";
const LABEL_HEADER: &[u8] = b"idv/archive/v1/header-mac";

macro_rules! secret_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; KEY_LEN]);

        impl $name {
            /// A fresh key from the operating system's CSPRNG.
            ///
            /// # Panics
            /// If the OS has no randomness to give, which leaves nothing safe to do.
            #[must_use]
            pub fn generate() -> Self {
                let mut bytes = [0u8; KEY_LEN];
                getrandom::fill(&mut bytes).expect("the OS random number generator failed");
                Self(bytes)
            }

            /// Takes ownership of key bytes read from storage.
            #[must_use]
            pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
                Self(bytes)
            }

            /// Key bytes from a slice, `None` unless it is exactly [`KEY_LEN`] long.
            #[must_use]
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; KEY_LEN]>::try_from(bytes).ok().map(Self)
            }

            /// The raw key bytes, for wrapping or storing. Never log them.
            #[must_use]
            pub fn expose(&self) -> &[u8; KEY_LEN] {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret_key!(
    /// The half of an archive's key that travels in its header, wrapped by a KEK.
    FileKey
);
secret_key!(
    /// The half of an archive's key kept in the metadata database; destroying it is
    /// crypto-shredding.
    RetentionKey
);

/// The keys one archive is sealed with, derived from its [`FileKey`] and [`RetentionKey`].
pub struct ArchiveKeys {
    pub(crate) payload: Zeroizing<[u8; KEY_LEN]>,
    pub(crate) manifest: Zeroizing<[u8; KEY_LEN]>,
    pub(crate) header_mac: Zeroizing<[u8; KEY_LEN]>,
}

impl ArchiveKeys {
    /// `PRK = HKDF-Extract(salt = archive id, IKM = file key ‖ retention key)`, then one
    /// `HKDF-Expand` per purpose (see `docs/FORMAT.md`).
    #[must_use]
    pub fn derive(archive_id: Uuid, file: &FileKey, retention: &RetentionKey) -> Self {
        let mut ikm = Zeroizing::new([0u8; 2 * KEY_LEN]);
        ikm[..KEY_LEN].copy_from_slice(file.expose());
        ikm[KEY_LEN..].copy_from_slice(retention.expose());
        let hkdf = Hkdf::<Sha256>::new(Some(archive_id.as_bytes()), ikm.as_slice());
        let expand = |label: &[u8]| {
            let mut okm = Zeroizing::new([0u8; KEY_LEN]);
            hkdf.expand(label, okm.as_mut_slice())
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            okm
        };
        Self {
            payload: expand(LABEL_PAYLOAD),
            manifest: expand(LABEL_MANIFEST),
            header_mac: expand(LABEL_HEADER),
        }
    }
}

impl std::fmt::Debug for ArchiveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArchiveKeys(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_purpose_gets_its_own_key_and_both_halves_matter() {
        let id = Uuid::from_u128(7);
        let (file, retention) = (
            FileKey::from_bytes([1; 32]),
            RetentionKey::from_bytes([2; 32]),
        );
        let keys = ArchiveKeys::derive(id, &file, &retention);
        assert_ne!(*keys.payload, *keys.manifest);
        assert_ne!(*keys.payload, *keys.header_mac);

        let other_retention = ArchiveKeys::derive(id, &file, &RetentionKey::from_bytes([3; 32]));
        assert_ne!(*keys.payload, *other_retention.payload);
        let other_archive = ArchiveKeys::derive(Uuid::from_u128(8), &file, &retention);
        assert_ne!(*keys.payload, *other_archive.payload);
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let key = FileKey::from_bytes([0xAB; 32]);
        assert_eq!(format!("{key:?}"), "FileKey(<redacted>)");
    }
}
