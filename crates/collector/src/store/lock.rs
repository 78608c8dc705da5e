//! The single-instance lock: an exclusive `flock` on `kandji.sqlite3.lock` beside the store,
//! held for as long as the store is open for writing. The kernel drops it when the process
//! ends, however it ends (a `kill -9` leaves no stale lock: the file stays, the lock does not).
//! The file names its holder (pid, command, console URL) so a second writer can say who.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// Who holds a store: what the lock file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    pub command: String,
    /// The console the holder serves, if it serves one (`http://127.0.0.1:8080/`).
    pub console: Option<String>,
}

impl Holder {
    fn parse(text: &str) -> Holder {
        let mut h = Holder::default();
        for line in text.lines() {
            match line.split_once('=') {
                Some(("pid", v)) => h.pid = v.trim().parse().ok(),
                Some(("command", v)) => h.command = v.trim().to_string(),
                Some(("console", v)) if !v.trim().is_empty() => {
                    h.console = Some(v.trim().to_string())
                }
                _ => {}
            }
        }
        h
    }

    fn render(&self) -> String {
        format!(
            "pid={}\ncommand={}\nconsole={}\n",
            self.pid.map(|p| p.to_string()).unwrap_or_default(),
            self.command,
            self.console.as_deref().unwrap_or_default()
        )
    }
}

/// The held lock. Dropping it releases the lock.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    path: PathBuf,
    holder: Holder,
}

/// The lock file of the store at `db`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    db.with_file_name(name)
}

/// What this process is, for the lock file: `kandji-collector run`.
pub fn this_command() -> String {
    let args: Vec<String> = std::env::args().collect();
    let exe = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kandji-collector".into());
    // The verb is the first argument that is not an option or an option's value.
    let mut verb = None;
    let mut skip = false;
    for a in args.iter().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        if let Some(opt) = a.strip_prefix("--") {
            skip = !opt.contains('=') && matches!(opt, "config" | "data-dir" | "log");
            continue;
        }
        if a == "-c" {
            skip = true;
            continue;
        }
        verb = Some(a.clone());
        break;
    }
    match verb {
        Some(v) => format!("{exe} {v}"),
        None => exe,
    }
}

impl StoreLock {
    /// Takes the lock of the store at `db`, or says who holds it.
    pub fn acquire(db: &Path) -> Result<StoreLock, StoreError> {
        let path = lock_path(db);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                message: format!("cannot open the lock file: {e}"),
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = Holder::parse(&text);
                return Err(StoreError::Locked {
                    path: db.to_path_buf(),
                    pid: holder.pid,
                    command: if holder.command.is_empty() {
                        "kandji-collector".into()
                    } else {
                        holder.command
                    },
                    console: holder.console,
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(StoreError::Open {
                    path,
                    message: format!("cannot lock the store: {e}"),
                });
            }
        }
        let holder = Holder {
            pid: Some(std::process::id()),
            command: this_command(),
            console: None,
        };
        let mut lock = StoreLock { file, path, holder };
        lock.write_holder();
        Ok(lock)
    }

    /// Records the console URL this process serves, for a second process to find.
    pub fn set_console(&mut self, url: &str) {
        self.holder.console = Some(url.to_string());
        self.write_holder();
    }

    fn write_holder(&mut self) {
        let text = self.holder.render();
        let r = self
            .file
            .set_len(0)
            .and_then(|_| self.file.seek(SeekFrom::Start(0)))
            .and_then(|_| self.file.write_all(text.as_bytes()))
            .and_then(|_| self.file.flush());
        if let Err(error) = r {
            tracing::warn!(path = %self.path.display(), %error, "cannot write the lock file's holder");
        }
    }
}

/// Who holds the store at `db` now, if anyone (a lock file alone, left by a process that
/// ended, holds nothing).
pub fn holder(db: &Path) -> Option<Holder> {
    let path = lock_path(db);
    let mut file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Some(Holder::parse(&text))
        }
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder_and_a_released_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kandji.sqlite3");
        let mut first = StoreLock::acquire(&db).unwrap();
        first.set_console("http://127.0.0.1:9/");
        match StoreLock::acquire(&db) {
            Err(StoreError::Locked {
                pid, console, path, ..
            }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(console.as_deref(), Some("http://127.0.0.1:9/"));
                assert_eq!(path, db);
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        assert!(holder(&db).is_some());
        drop(first);
        assert!(holder(&db).is_none());
        StoreLock::acquire(&db).unwrap();
    }
}
