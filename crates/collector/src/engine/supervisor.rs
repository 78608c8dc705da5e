//! The one supervisor of a process's sources, for `run --no-console`, `demo` and the
//! console alike: one runtime per source of its [`SourceCatalog`], started, restarted and
//! stopped as the catalog changes (the console adds, edits and deletes sources), with a
//! per-stream `Notify` for "sync now".
//!
//! Each source runs under a child of the supervisor's cancellation token; stopping one
//! source cancels its child only, and shutdown cancels them all and waits for every source
//! to return (the page in flight committed or not started).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::SourceRuntime;
use crate::store::{Store, StoreError};
use crate::streams::StreamName;
use crate::streams::source::Source;

/// A source the catalog holds: its settings, a version that changes whenever they do, and
/// whether the console may edit it (config-file sources are read-only there).
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub source: Source,
    pub version: String,
    pub read_only: bool,
}

/// What a catalog lists: the sources to run, and those it could not make runnable.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub sources: Vec<CatalogEntry>,
    pub broken: Vec<Broken>,
}

/// Where the supervisor's sources come from: the config file alone, or the config file and
/// the console's stored sources (`web::catalog`).
pub trait SourceCatalog: Send + Sync + 'static {
    fn load(&self) -> Pin<Box<dyn Future<Output = Result<Catalog, StoreError>> + Send + '_>>;
}

/// The config file's sources, which never change while the process runs.
pub struct ConfigCatalog(pub Vec<Source>);

impl SourceCatalog for ConfigCatalog {
    fn load(&self) -> Pin<Box<dyn Future<Output = Result<Catalog, StoreError>> + Send + '_>> {
        let sources = self
            .0
            .iter()
            .map(|s| CatalogEntry {
                source: s.clone(),
                version: "config".into(),
                read_only: true,
            })
            .collect();
        Box::pin(async move {
            Ok(Catalog {
                sources,
                broken: Vec::new(),
            })
        })
    }
}

/// One running (or disabled) source.
pub struct Running {
    pub rt: Arc<SourceRuntime>,
    pub read_only: bool,
    pub notifies: BTreeMap<StreamName, Arc<Notify>>,
    fingerprint: String,
    stop: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

/// A source the supervisor could not start (bad stored endpoint, undecryptable token).
#[derive(Debug, Clone)]
pub struct Broken {
    pub name: String,
    pub message: String,
}

/// Which sources this process collects, when replicas share the store (`engine::replicas`):
/// the ones it holds the lease of.
pub type Ownership = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// "Sync now" for a source this process does not collect: passed on to the replica that does.
pub type RemoteSync = Arc<dyn Fn(&str, Option<StreamName>) + Send + Sync>;

pub struct Supervisor {
    pub store: Store,
    catalog: Arc<dyn SourceCatalog>,
    /// The parent of every source's token.
    root: CancellationToken,
    running: Mutex<BTreeMap<String, Running>>,
    broken: Mutex<Vec<Broken>>,
    changed: Notify,
    /// Set once the first reconcile ran (readiness).
    ready: std::sync::atomic::AtomicBool,
    /// One reconcile at a time: the run loop and the console (a token rotation, a purge) both
    /// reconcile, and two at once could each start a runtime for the same source.
    reconciling: tokio::sync::Mutex<()>,
    /// Set by `engine::replicas`: only owned sources run here.
    ownership: Mutex<Option<Ownership>>,
    remote: Mutex<Option<RemoteSync>>,
    /// Where every runtime posts its health changes ([`Supervisor::set_alerts`]).
    alerts: Mutex<Option<crate::health::AlertWebhook>>,
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
        (
            &s.filters,
            &s.hygiene.token_name,
            s.hygiene.rotate_after,
            s.hygiene.reserve_for_others
        )
    )
}

impl Supervisor {
    /// Sets the alert webhook every runtime started from now on posts its health changes to.
    pub fn set_alerts(&self, alerts: Option<crate::health::AlertWebhook>) {
        *lock(&self.alerts) = alerts;
    }

    pub fn new(store: Store, catalog: Arc<dyn SourceCatalog>) -> Supervisor {
        Supervisor {
            store,
            catalog,
            root: CancellationToken::new(),
            running: Mutex::new(BTreeMap::new()),
            broken: Mutex::new(Vec::new()),
            changed: Notify::new(),
            ready: std::sync::atomic::AtomicBool::new(false),
            reconciling: tokio::sync::Mutex::new(()),
            ownership: Mutex::new(None),
            remote: Mutex::new(None),
            alerts: Mutex::new(None),
        }
    }

    /// Shares the catalog's sources with other replicas: only those `owns` says are this
    /// process's run here, and "sync now" for the others goes to `remote`.
    pub fn share(&self, owns: Ownership, remote: RemoteSync) {
        *lock(&self.ownership) = Some(owns);
        *lock(&self.remote) = Some(remote);
    }

    /// Every source the catalog lists (whoever collects it).
    pub async fn catalog_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .catalog
            .load()
            .await?
            .sources
            .into_iter()
            .map(|e| e.source.name)
            .collect())
    }

    /// Tells the run loop the console changed a source.
    pub fn poke(&self) {
        self.changed.notify_one();
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Relaxed)
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
        if self.sync_now_here(source, stream) {
            return true;
        }
        let remote = lock(&self.remote).clone();
        match remote {
            Some(r) => {
                r(source, stream);
                true
            }
            None => false,
        }
    }

    /// "Sync now" for a source running in this process only.
    pub fn sync_now_here(&self, source: &str, stream: Option<StreamName>) -> bool {
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

    /// Runs until `shutdown` is cancelled: reconciles on every change and every 30 s; then
    /// cancels every source and waits for each to return.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.reconcile().await {
                tracing::warn!(%error, "reconciling sources failed");
            }
            self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                () = shutdown.cancelled() => {}
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        self.root.cancel();
        let stopping: Vec<Running> = std::mem::take(&mut *lock(&self.running))
            .into_values()
            .collect();
        for mut r in stopping {
            if let Some(h) = r.handle.take() {
                let _ = h.await;
            }
        }
    }

    /// Starts, restarts and stops runtimes to match the config and the console's sources.
    /// One at a time; a caller waits for one in flight, then runs its own (so on return the
    /// catalog as it was at the call is in force, and the runtimes it stopped have stopped).
    pub async fn reconcile(&self) -> Result<(), StoreError> {
        let _one = self.reconciling.lock().await;
        let catalog = self.catalog.load().await?;
        let owns = lock(&self.ownership).clone();
        let desired: Vec<(Source, String, bool)> = catalog
            .sources
            .into_iter()
            .filter(|e| owns.as_ref().is_none_or(|f| f(&e.source.name)))
            .map(|e| {
                let fp = fingerprint(&e.source, &e.version);
                (e.source, fp, e.read_only)
            })
            .collect();
        *lock(&self.broken) = catalog.broken;
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
            r.stop.cancel();
            if let Some(h) = r.handle.take() {
                let _ = h.await;
            }
        }
        for (s, fp, ro) in to_start {
            let name = s.name.clone();
            let stop = self.root.child_token();
            let rt = match SourceRuntime::new(s, self.store.clone(), stop.clone()) {
                Ok(mut rt) => {
                    rt.alerts = lock(&self.alerts).clone();
                    Arc::new(rt)
                }
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
                Some(tokio::spawn(super::source_loop(
                    rt.clone(),
                    notifies.clone(),
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
                    stop,
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
