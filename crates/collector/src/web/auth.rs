//! The admin login: an argon2 password hash in the store, in-memory sessions with a CSRF
//! token each, a double-submit cookie for the login and setup forms, and a per-account
//! throttle on password checks: an attempt reserves its place before the (slow) argon2 check,
//! so parallel guesses count, and failures past the free few space the next attempts out with
//! exponential delays rather than a lockout (the right password gets in once the delay
//! passes; nobody behind the same proxy can keep the admin out for good).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
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
/// Password checks allowed back to back; after them each failure doubles the wait before the
/// next check (1 s, 2 s, 4 s … up to [`MAX_DELAY`]).
pub const MAX_FAILURES: u32 = 5;
/// The longest wait between two checks.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// Failures are forgotten after this long without an attempt.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(900);

/// The per-account throttle (the console has one account, the admin).
#[derive(Debug, Default)]
struct Throttle {
    /// Attempts since the last success, counted when reserved (before their check ends).
    failures: u32,
    /// No check before this.
    next_at: Option<tokio::time::Instant>,
    last_at: Option<tokio::time::Instant>,
}

/// The wait before the next check after `failures` reserved ones.
fn delay_after(failures: u32) -> Option<Duration> {
    (failures >= MAX_FAILURES).then(|| {
        let doublings = (failures - MAX_FAILURES).min(16);
        Duration::from_secs(1u64 << doublings).min(MAX_DELAY)
    })
}

/// A login attempt's place, or how long to wait for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Check,
    Wait(Duration),
}

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
    throttle: Mutex<Throttle>,
    /// Password checks run (tests count them).
    pub checks: AtomicU64,
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

    /// Reserves a password check, counted as a failure until [`Auth::login_succeeded`]: the
    /// first [`MAX_FAILURES`] go at once, and each one after them sets the wait before the
    /// next. A reservation refused says how long to wait.
    pub fn reserve_login(&self) -> Attempt {
        let now = tokio::time::Instant::now();
        let mut t = lock(&self.throttle);
        if t.last_at
            .is_some_and(|l| now.duration_since(l) >= FAILURE_WINDOW)
        {
            *t = Throttle::default();
        }
        if let Some(at) = t.next_at
            && now < at
        {
            return Attempt::Wait(at - now);
        }
        t.failures += 1;
        t.last_at = Some(now);
        if let Some(delay) = delay_after(t.failures) {
            t.next_at = Some(now + delay);
        }
        self.checks.fetch_add(1, Ordering::Relaxed);
        Attempt::Check
    }

    /// The reserved check found a wrong password: the wait runs from now (a slow check does
    /// not eat into it).
    pub fn login_failed(&self) {
        let now = tokio::time::Instant::now();
        let mut t = lock(&self.throttle);
        if let Some(delay) = delay_after(t.failures) {
            t.next_at = Some(t.next_at.map_or(now + delay, |at| at.max(now + delay)));
        }
    }

    /// The reserved check found the right password: the throttle starts over.
    pub fn login_succeeded(&self) {
        *lock(&self.throttle) = Throttle::default();
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

    #[tokio::test(start_paused = true)]
    async fn checks_are_reserved_then_spaced_out_exponentially_and_a_success_resets() {
        let a = Auth::new(false, None);
        // The free few at once (reserved before any check ends: parallel guesses count).
        for _ in 0..MAX_FAILURES {
            assert_eq!(a.reserve_login(), Attempt::Check);
        }
        // Then a wait, whatever the address: 1 s, then 2 s, 4 s …
        assert_eq!(a.reserve_login(), Attempt::Wait(Duration::from_secs(1)));
        for wait in [1, 2, 4, 8] {
            tokio::time::advance(Duration::from_secs(wait)).await;
            assert_eq!(a.reserve_login(), Attempt::Check, "after {wait} s");
            assert!(matches!(a.reserve_login(), Attempt::Wait(_)));
        }
        // Capped at a minute, and the right password gets in once it passes.
        for _ in 0..10 {
            tokio::time::advance(MAX_DELAY).await;
            assert_eq!(a.reserve_login(), Attempt::Check);
        }
        assert_eq!(a.reserve_login(), Attempt::Wait(MAX_DELAY));
        tokio::time::advance(MAX_DELAY).await;
        assert_eq!(a.reserve_login(), Attempt::Check);
        a.login_succeeded();
        for _ in 0..MAX_FAILURES {
            assert_eq!(a.reserve_login(), Attempt::Check);
        }
        // Failures are forgotten after a quiet window.
        tokio::time::advance(FAILURE_WINDOW).await;
        assert_eq!(a.reserve_login(), Attempt::Check);
        assert_eq!(
            a.checks.load(Ordering::Relaxed),
            u64::from(MAX_FAILURES) * 2 + 4 + 10 + 1 + 1
        );
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "ab"));
    }
}
