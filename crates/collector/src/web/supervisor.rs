//! The run loop's supervisor: one runtime per source (config sources and console sources),
//! started, restarted and stopped as the console adds, edits and deletes sources, with a
//! per-stream `Notify` for "sync now" and run metrics (the engine records budget samples).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::crypto::TokenCipher;
use crate::config::Source;
use crate::engine::SourceRuntime;
use crate::store::{Store, StoreError};
use crate::streams::StreamName;

/// One running (or disabled) source.
pub struct Running {
    pub rt: Arc<SourceRuntime>,
    pub read_only: bool,
    pub notifies: BTreeMap<StreamName, Arc<Notify>>,
    fingerprint: String,
    stop: watch::Sender<bool>,
    handle: Option<JoinHandle<()>>,
}

/// A source the supervisor could not start (bad stored endpoint, undecryptable token).
#[derive(Debug, Clone)]
pub struct Broken {
    pub name: String,
    pub message: String,
}

pub struct Supervisor {
    pub store: Store,
    pub cipher: Arc<TokenCipher>,
    pub config_sources: Vec<Source>,
    running: Mutex<BTreeMap<String, Running>>,
    broken: Mutex<Vec<Broken>>,
    changed: Notify,
    /// Set once the first reconcile ran (readiness).
    ready: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps stay consistent across a panic (whole-value inserts and removes).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn fingerprint(s: &Source, version: &str) -> String {
    format!(
        "{version}|{}|{}|{}|{}|{}|{:?}|{:?}|{:?}",
        s.base.as_str(),
        s.enabled,
        s.budget_share,
        s.hourly_limit,
        s.per_second,
        s.streams,
        s.intervals,
        s.filters
    )
}

impl Supervisor {
    pub fn new(store: Store, cipher: Arc<TokenCipher>, config_sources: Vec<Source>) -> Supervisor {
        Supervisor {
            store,
            cipher,
            config_sources,
            running: Mutex::new(BTreeMap::new()),
            broken: Mutex::new(Vec::new()),
            changed: Notify::new(),
            ready: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Tells the run loop the console changed a source.
    pub fn poke(&self) {
        self.changed.notify_one();
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn is_config_source(&self, name: &str) -> bool {
        self.config_sources.iter().any(|s| s.name == name)
    }

    /// The runtimes, for the dashboard and metrics.
    pub fn runtimes(&self) -> Vec<(Arc<SourceRuntime>, bool)> {
        lock(&self.running)
            .values()
            .map(|r| (r.rt.clone(), r.read_only))
            .collect()
    }

    pub fn runtime(&self, name: &str) -> Option<Arc<SourceRuntime>> {
        lock(&self.running).get(name).map(|r| r.rt.clone())
    }

    pub fn broken(&self) -> Vec<Broken> {
        lock(&self.broken).clone()
    }

    /// "Sync now": wakes the stream's loop (all streams when `stream` is None). Returns false
    /// when the source is not running.
    pub fn sync_now(&self, source: &str, stream: Option<StreamName>) -> bool {
        let map = lock(&self.running);
        let Some(r) = map.get(source) else {
            return false;
        };
        if !r.rt.source.enabled {
            return false;
        }
        for (s, n) in &r.notifies {
            if stream.is_none_or(|x| x == *s) {
                n.notify_one();
            }
        }
        true
    }

    /// Runs until shutdown: reconciles on every change and every 30 s.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(error) = self.reconcile().await {
                tracing::warn!(%error, "reconciling sources failed");
            }
            self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
        }
        let stopping: Vec<Running> = std::mem::take(&mut *lock(&self.running))
            .into_values()
            .collect();
        for r in &stopping {
            let _ = r.stop.send(true);
        }
        for mut r in stopping {
            if let Some(h) = r.handle.take() {
                let _ = h.await;
            }
        }
    }

    /// Starts, restarts and stops runtimes to match the config and the console's sources.
    pub async fn reconcile(&self) -> Result<(), StoreError> {
        let mut desired: Vec<(Source, String, bool)> = self
            .config_sources
            .iter()
            .map(|s| (s.clone(), fingerprint(s, "config"), true))
            .collect();
        let mut broken = Vec::new();
        for cs in super::sources::list(&self.store).await? {
            if self.is_config_source(&cs.name) {
                continue;
            }
            match cs.resolve(&self.cipher) {
                Ok(s) => {
                    let fp = fingerprint(&s, &cs.updated_at.to_string());
                    desired.push((s, fp, false));
                }
                Err(e) => {
                    tracing::warn!(source = %cs.name, error = %e, "console source cannot start");
                    broken.push(Broken {
                        name: cs.name.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
        *lock(&self.broken) = broken;
        let mut to_stop = Vec::new();
        let mut to_start = Vec::new();
        {
            let mut map = lock(&self.running);
            let names: Vec<String> = map.keys().cloned().collect();
            for name in names {
                let keep = desired.iter().any(|(s, fp, _)| {
                    s.name == name && map.get(&name).is_some_and(|r| &r.fingerprint == fp)
                });
                if !keep && let Some(r) = map.remove(&name) {
                    to_stop.push(r);
                }
            }
            for (s, fp, ro) in desired {
                if !map.contains_key(&s.name) {
                    to_start.push((s, fp, ro));
                }
            }
        }
        for mut r in to_stop {
            tracing::info!(source = %r.rt.name(), "stopping source runtime");
            let _ = r.stop.send(true);
            if let Some(h) = r.handle.take() {
                let _ = h.await;
            }
        }
        for (s, fp, ro) in to_start {
            let name = s.name.clone();
            let (stop_tx, stop_rx) = watch::channel(false);
            let rt = match SourceRuntime::new(s, self.store.clone(), stop_rx.clone()) {
                Ok(rt) => Arc::new(rt),
                Err(e) => {
                    lock(&self.broken).push(Broken {
                        name,
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            let notifies: BTreeMap<StreamName, Arc<Notify>> = rt
                .source
                .streams
                .iter()
                .map(|s| (*s, Arc::new(Notify::new())))
                .collect();
            let handle = if rt.source.enabled {
                tracing::info!(source = %name, streams = rt.source.streams.len(), "starting source runtime");
                Some(tokio::spawn(crate::engine::source_loop(
                    rt.clone(),
                    notifies.clone(),
                    stop_rx,
                )))
            } else {
                let _ = mark_disabled(&self.store, &name, &rt.source.streams).await;
                None
            };
            lock(&self.running).insert(
                name,
                Running {
                    rt,
                    read_only: ro,
                    notifies,
                    fingerprint: fp,
                    stop: stop_tx,
                    handle,
                },
            );
        }
        Ok(())
    }
}

async fn mark_disabled(
    store: &Store,
    source: &str,
    streams: &[StreamName],
) -> Result<(), StoreError> {
    let streams: Vec<&'static str> = streams.iter().map(|s| s.as_str()).collect();
    store.disable_streams(source, streams).await
}
