//! The admin login: an argon2 password hash in the store, in-memory sessions with a CSRF
//! token each, a double-submit cookie for the login and setup forms, and a per-IP limit on
//! failed logins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::HeaderMap;

use super::crypto::random_hex;
use crate::store::{Store, StoreError};

pub const SESSION_COOKIE: &str = "kc_session";
pub const PRE_COOKIE: &str = "kc_pre";
/// Sessions end after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// Failed logins allowed per IP per window.
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub csrf: String,
    last_seen: Instant,
}

#[derive(Debug, Default)]
pub struct Auth {
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// Cookies get `Secure` when the console is served over TLS (or behind a TLS proxy).
    pub secure_cookies: bool,
    /// A bearer key for `/api/` and `/metrics` (env `KANDJI_COLLECTOR_API_KEY`).
    pub api_key: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these maps leaves them consistent (plain inserts/removes).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Constant-time string equality (CSRF tokens, API keys).
pub fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The stored password hash, if an admin password was set.
pub async fn stored_hash(store: &Store) -> Result<Option<String>, StoreError> {
    store.admin_password_hash().await
}

pub async fn set_password(store: &Store, password: &str) -> Result<(), AuthError> {
    let pw = password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|e| AuthError::Hash(e.to_string()))??;
    store.set_admin_password_hash(hash).await?;
    Ok(())
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Auth {
    pub fn new(secure_cookies: bool, api_key: Option<String>) -> Auth {
        Auth {
            secure_cookies,
            api_key: api_key.filter(|k| !k.is_empty()),
            ..Auth::default()
        }
    }

    pub fn cookie_header(&self, name: &str, value: &str, max_age: Option<u64>) -> String {
        let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
        if let Some(a) = max_age {
            c.push_str(&format!("; Max-Age={a}"));
        }
        if self.secure_cookies {
            c.push_str("; Secure");
        }
        c
    }

    pub fn create_session(&self) -> Session {
        let s = Session {
            id: random_hex(32),
            csrf: random_hex(32),
            last_seen: Instant::now(),
        };
        let mut map = lock(&self.sessions);
        map.retain(|_, v| v.last_seen.elapsed() < SESSION_IDLE);
        map.insert(s.id.clone(), s.clone());
        s
    }

    pub fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut map = lock(&self.sessions);
        match map.get_mut(id) {
            Some(s) if s.last_seen.elapsed() < SESSION_IDLE => {
                s.last_seen = Instant::now();
                Some(s.clone())
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn end_session(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }

    /// Ends every session (after a password change).
    pub fn end_all_sessions(&self) {
        lock(&self.sessions).clear();
    }

    /// Whether `ip` may try to log in now.
    pub fn login_allowed(&self, ip: IpAddr) -> bool {
        let map = lock(&self.failures);
        match map.get(&ip) {
            Some((since, n)) => since.elapsed() >= FAILURE_WINDOW || *n < MAX_FAILURES,
            None => true,
        }
    }

    pub fn login_failed(&self, ip: IpAddr) {
        let mut map = lock(&self.failures);
        let e = map.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= FAILURE_WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
    }

    pub fn login_succeeded(&self, ip: IpAddr) {
        lock(&self.failures).remove(&ip);
    }

    /// A bearer API key matches.
    pub fn bearer_ok(&self, headers: &HeaderMap) -> bool {
        let Some(key) = &self.api_key else {
            return false;
        };
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|got| ct_eq(got.trim(), key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_verifies() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn rate_limit_blocks_after_failures() {
        let a = Auth::new(false, None);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(a.login_allowed(ip));
            a.login_failed(ip);
        }
        assert!(!a.login_allowed(ip));
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(a.login_allowed(other));
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "ab"));
    }
}
