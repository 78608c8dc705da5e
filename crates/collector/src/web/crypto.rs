//! Tokens at rest: XChaCha20-Poly1305 with a 32-byte key in a local key file (mode 0600,
//! created on first run beside the store). The source name is the associated data, so a
//! ciphertext cannot be moved to another source's row.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key file {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    #[error("a stored token could not be decrypted (wrong key file or corrupted row)")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
}

/// Random bytes from the OS, hex-encoded (session ids, CSRF tokens, demo passwords).
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The cipher for tokens at rest.
pub struct TokenCipher {
    cipher: XChaCha20Poly1305,
    path: PathBuf,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCipher")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TokenCipher {
    /// Loads the key file, creating it (0600) with a fresh random key if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<TokenCipher, CryptoError> {
        let err = |message: String| CryptoError::KeyFile {
            path: path.to_path_buf(),
            message,
        };
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            let mut key = [0u8; KEY_LEN];
            OsRng.fill_bytes(&mut key);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(path).map_err(|e| err(e.to_string()))?;
            f.write_all(&key).map_err(|e| err(e.to_string()))?;
            f.sync_all().map_err(|e| err(e.to_string()))?;
            tracing::info!(path = %path.display(), "created the token encryption key file");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| err(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the key file is readable by others; chmod 600 it");
            }
        }
        let key = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        if key.len() != KEY_LEN {
            return Err(err(format!(
                "holds {} bytes, a key is {KEY_LEN}",
                key.len()
            )));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|e| err(e.to_string()))?;
        Ok(TokenCipher {
            cipher,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `nonce || ciphertext` of the token, bound to `aad` (the source name).
    pub fn encrypt(&self, token: &SecretString, aad: &str) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: token.expose_secret().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn decrypt(&self, blob: &[u8], aad: &str) -> Result<SecretString, CryptoError> {
        if blob.len() <= NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let pt = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        let s = String::from_utf8(pt).map_err(|_| CryptoError::Decrypt)?;
        Ok(SecretString::from(s))
    }
}

/// The last 4 characters of a token, the only part ever shown again.
pub fn last4(token: &SecretString) -> String {
    let t = token.expose_secret();
    let n = t.chars().count();
    t.chars().skip(n.saturating_sub(4)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_aad_binding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.key");
        let c = TokenCipher::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let tok = SecretString::from("secret-token-abcd".to_string());
        let blob = c.encrypt(&tok, "acme").unwrap();
        assert!(!blob.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            c.decrypt(&blob, "acme").unwrap().expose_secret(),
            "secret-token-abcd"
        );
        assert!(c.decrypt(&blob, "other").is_err());
        // The same key file decrypts after a restart.
        let c2 = TokenCipher::load_or_create(&path).unwrap();
        assert!(c2.decrypt(&blob, "acme").is_ok());
        assert_eq!(last4(&tok), "abcd");
    }
}
