//! Replicas: several `run` processes on one PostgreSQL store, each collecting the sources it
//! holds the lease of (`store/pg/leases.rs`).
//!
//! [`run`] wraps the [`Supervisor`]. Every tick (a third of the lease TTL) it registers the
//! catalog's sources, heartbeats, renews its leases and takes its fair share of the free or
//! expired ones, then reconciles: sources it gained start, sources it lost stop (their late
//! commits are fenced anyway). A source above its share (a replica joined) is stopped first —
//! the page in flight commits, or is fetched again by the next owner from the checkpoint —
//! and only then given back, so no page is written by two replicas and none is dropped.
//!
//! Every replica serves the console from the shared store. "Sync now" and console edits
//! reach the others through `LISTEN`/`NOTIFY` (`store/pg/listen.rs`): an edit makes every
//! replica reconcile, a sync wakes the stream on the replica that holds the source.
//!
//! An orderly exit stops every source, then gives back every lease and the heartbeat at once
//! (the others take the sources on their next tick); a `kill -9` leaves them to expire.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Supervisor;
use crate::store::StoreError;
use crate::store::pg::{LeaseMode, PgStore, Replica, Signal};
use crate::streams::StreamName;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the supervisor until `shutdown`: as a replica when its store is PostgreSQL opened in
/// [`LeaseMode::Replica`], else as it always ran.
pub async fn run(sup: Arc<Supervisor>, shutdown: CancellationToken) {
    let pg = sup.store.pg().cloned();
    let Some((pg, me)) = pg.and_then(|pg| match pg.mode().clone() {
        LeaseMode::Replica(me) => Some((pg, me)),
        LeaseMode::Solo { .. } => None,
    }) else {
        sup.run(shutdown).await;
        return;
    };
    let owned: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    {
        let owned = owned.clone();
        let notify = pg.clone();
        sup.share(
            Arc::new(move |s: &str| lock(&owned).contains(s)),
            Arc::new(move |source: &str, stream: Option<StreamName>| {
                let pg = notify.clone();
                let signal = Signal::Sync {
                    source: source.to_string(),
                    stream: stream.map(|s| s.as_str().to_string()),
                };
                tokio::spawn(async move {
                    if let Err(error) = pg.notify(&signal).await {
                        tracing::warn!(%error, "passing \"sync now\" to the owning replica failed");
                    }
                });
            }),
        );
    }
    tracing::info!(replica = %me.id, ttl_ms = me.ttl_ms, "running as a replica");
    let sup_stop = shutdown.child_token();
    let sup_task = tokio::spawn(sup.clone().run(sup_stop.clone()));
    let mut signals = pg.listen(shutdown.child_token());
    let listener = {
        let sup = sup.clone();
        tokio::spawn(async move {
            while let Some(s) = signals.recv().await {
                match s {
                    Signal::Changed => sup.poke(),
                    Signal::Sync { source, stream } => {
                        let stream = stream.as_deref().and_then(StreamName::parse);
                        sup.sync_now_here(&source, stream);
                    }
                }
            }
        })
    };
    let tick = Duration::from_millis((me.ttl_ms / 3).max(500) as u64);
    // Announce, and wait one tick before taking sources: replicas started together then see
    // each other, instead of the first taking everything and giving most of it back.
    let joined = async {
        loop {
            match pg.db_now().await {
                Ok(now) => match pg.join(&me, now).await {
                    Ok(()) => return,
                    Err(error) => tracing::warn!(%error, "joining the replicas failed; retrying"),
                },
                Err(error) => tracing::warn!(%error, "the store does not answer; retrying"),
            }
            tokio::time::sleep(tick).await;
        }
    };
    tokio::select! {
        () = joined => {}
        () = shutdown.cancelled() => {}
    }
    tokio::select! {
        () = tokio::time::sleep(tick) => {}
        () = shutdown.cancelled() => {}
    }
    // Starting and stopping sources runs beside the ticks: stopping one waits for its page in
    // flight, and the heartbeat must not wait with it.
    let mut applying: Option<tokio::task::JoinHandle<()>> = None;
    while !shutdown.is_cancelled() {
        let busy = applying.as_ref().is_some_and(|h| !h.is_finished());
        match lease_tick(&sup, &pg, &me, &owned, busy).await {
            Ok(Some(over)) => {
                let (sup, pg, me) = (sup.clone(), pg.clone(), me.clone());
                applying = Some(tokio::spawn(async move {
                    if let Err(error) = apply(&sup, &pg, &me, over).await {
                        tracing::warn!(replica = %me.id, %error, "applying the lease changes failed; the next tick tries again");
                    }
                }));
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(replica = %me.id, %error, "lease tick failed; the leases held stay until they expire");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = shutdown.cancelled() => {}
        }
    }
    // Stop every source (pages in flight commit), then give everything back at once.
    if let Some(h) = applying {
        let _ = h.await;
    }
    sup_stop.cancel();
    let _ = sup_task.await;
    listener.abort();
    match pg.leave(&me).await {
        Ok(()) => tracing::info!(replica = %me.id, "left the replicas; leases given back"),
        Err(error) => {
            tracing::warn!(replica = %me.id, %error, "giving the leases back failed; they expire")
        }
    }
    pg.set_held(&[]);
}

/// One tick of the lease loop: heartbeat and take the fair share. Returns the leases to give
/// back when this replica's sources must change (`apply` then starts and stops them), or
/// `None`. While `busy` (the last change still applying), ownership is left as it is.
async fn lease_tick(
    sup: &Supervisor,
    pg: &PgStore,
    me: &Replica,
    owned: &Mutex<BTreeSet<String>>,
    busy: bool,
) -> Result<Option<Vec<crate::store::pg::Lease>>, StoreError> {
    let names = sup.catalog_names().await?;
    pg.register_sources(&names).await?;
    let before = pg.held();
    let now = pg.db_now().await?;
    let r = pg.rebalance_holding(me, now, Some(&before)).await?;
    pg.set_held(&r.held);
    for s in &r.acquired {
        tracing::info!(replica = %me.id, source = %s, "lease taken");
    }
    for s in &r.lost {
        tracing::warn!(replica = %me.id, source = %s, "lease lost to another replica; stopping the source");
    }
    if busy {
        return Ok(None);
    }
    let keep: BTreeSet<String> = r
        .held
        .iter()
        .filter(|l| !r.over.iter().any(|o| o.source == l.source))
        .map(|l| l.source.clone())
        .collect();
    let mut o = lock(owned);
    if *o == keep && r.over.is_empty() {
        return Ok(None);
    }
    *o = keep;
    Ok(Some(r.over))
}

/// Starts what was taken and stops what was lost or is to be given back (waiting for each to
/// stop: a page in flight commits first), then gives back the leases above the share.
async fn apply(
    sup: &Supervisor,
    pg: &PgStore,
    me: &Replica,
    over: Vec<crate::store::pg::Lease>,
) -> Result<(), StoreError> {
    sup.reconcile().await?;
    for l in &over {
        if pg.release(l).await? {
            tracing::info!(replica = %me.id, source = %l.source, "lease given back (rebalancing)");
        }
        pg.drop_held(&l.source);
    }
    Ok(())
}
