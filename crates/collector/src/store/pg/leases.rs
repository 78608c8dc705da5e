//! Source leases: which replica collects which source.
//!
//! A `leases` row per source holds its owner, its expiry and its **fencing token**. The token
//! grows by one every time the lease changes hands, and never otherwise, so "the token I was
//! given is still the row's token" means "nobody else has owned this source since" — which
//! is what every commit checks (`write.rs`).
//!
//! Each replica calls [`PgStore::rebalance`] on a tick (a third of the TTL). It heartbeats
//! (a replica's leases live as long as its heartbeat: renewal never writes a lease row, which
//! a commit in flight may hold locked), learns what it holds and what it lost, and computes
//! its **target**: the live
//! replicas sorted by id, `sources / replicas` each and one more for the first
//! `sources % replicas`, so the targets add up to the sources and the spread is even to one.
//! Below its target it takes free or expired leases (`FOR UPDATE SKIP LOCKED`, so replicas
//! taking at once never block each other); above it, it reports the excess in
//! [`Rebalance::over`], and the caller gives each back with [`PgStore::release`] once its page
//! in flight has committed. A dead replica's leases expire after the TTL and its heartbeat
//! with them, so the others' targets grow and they take its sources.

use super::{PgStore, StoreError};

/// A lease this replica holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub source: String,
    pub owner: String,
    pub token: i64,
    pub expires_at: i64,
}

/// A lease row as stored (for status and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub source: String,
    pub owner: Option<String>,
    pub token: i64,
    pub expires_at: i64,
}

/// One replica's identity and lease length.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Unique per process (host, pid and a random part): two processes never share one.
    pub id: String,
    pub ttl_ms: i64,
}

impl Replica {
    pub fn new(id: impl Into<String>, ttl_ms: i64) -> Replica {
        Replica {
            id: id.into(),
            ttl_ms,
        }
    }
}

/// What one [`PgStore::rebalance`] found.
#[derive(Debug, Clone, Default)]
pub struct Rebalance {
    /// Every lease held after the tick (renewed and newly acquired), by source.
    pub held: Vec<Lease>,
    /// Leases taken this tick.
    pub acquired: Vec<String>,
    /// Sources held before the tick that another replica has taken: stop them now.
    pub lost: Vec<String>,
    /// Leases above this replica's target: give each back after its page in flight.
    pub over: Vec<Lease>,
    /// This replica's fair share.
    pub target: usize,
    /// Live replicas, this one included.
    pub replicas: usize,
}

impl PgStore {
    /// Makes sure every source has a lease row (a new one is free).
    pub async fn register_sources(&self, sources: &[String]) -> Result<(), StoreError> {
        let client = self.lease_client().await?;
        client
            .execute(
                "INSERT INTO leases (source) SELECT unnest($1::TEXT[]) ON CONFLICT (source) DO NOTHING",
                &[&sources],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// All lease rows, by source.
    pub async fn leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        let client = self.lease_client().await?;
        let rows = client
            .query(
                "SELECT l.source, l.owner, l.fencing_token,
                        greatest(l.expires_at, coalesce(r.expires_at, 0))
                 FROM leases l LEFT JOIN replicas r ON r.replica = l.owner
                 ORDER BY l.source",
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .map(|r| LeaseRow {
                source: r.get(0),
                owner: r.get(1),
                token: r.get(2),
                expires_at: r.get(3),
            })
            .collect())
    }

    /// The replicas whose heartbeat has not expired at `now`, by id.
    pub async fn live_replicas(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let client = self.lease_client().await?;
        Ok(client
            .query(
                "SELECT replica FROM replicas WHERE expires_at > $1 ORDER BY replica",
                &[&now],
            )
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Announces a replica (a heartbeat, no leases). A replica joins, waits one tick, and
    /// only then rebalances: replicas started together then all see each other before any
    /// takes a source, instead of the first taking everything and giving most of it back.
    pub async fn join(&self, me: &Replica, now: i64) -> Result<(), StoreError> {
        let client = self.lease_client().await?;
        let expires = now + me.ttl_ms;
        client
            .execute(
                "INSERT INTO replicas (replica, started_at, heartbeat_at, expires_at)
                 VALUES ($1, $2, $2, $3)
                 ON CONFLICT (replica) DO UPDATE SET heartbeat_at = $2, expires_at = $3",
                &[&me.id, &now, &expires],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// One tick of a replica: heartbeat, renew, take up to the target, report the excess.
    pub async fn rebalance(&self, me: &Replica, now: i64) -> Result<Rebalance, StoreError> {
        self.rebalance_holding(me, now, None).await
    }

    /// [`PgStore::rebalance`], also reporting which of `before` (the sources this replica
    /// believed it held) it has lost.
    pub async fn rebalance_holding(
        &self,
        me: &Replica,
        now: i64,
        before: Option<&[Lease]>,
    ) -> Result<Rebalance, StoreError> {
        let expires = now + me.ttl_ms;
        let mut client = self.lease_client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO replicas (replica, started_at, heartbeat_at, expires_at)
             VALUES ($1, $2, $2, $3)
             ON CONFLICT (replica) DO UPDATE SET heartbeat_at = $2, expires_at = $3",
            &[&me.id, &now, &expires],
        )
        .await
        .map_err(|e| self.err(e))?;
        // What the table says is ours. Renewal is the heartbeat above: a replica's leases
        // live as long as its heartbeat does, so a tick never writes (or waits on) a lease row
        // that a commit in flight holds locked.
        let renewed = tx
            .query(
                "SELECT source, fencing_token FROM leases WHERE owner = $1",
                &[&me.id],
            )
            .await
            .map_err(|e| self.err(e))?;
        let mut held: Vec<Lease> = renewed
            .iter()
            .map(|r| Lease {
                source: r.get(0),
                owner: me.id.clone(),
                token: r.get(1),
                expires_at: expires,
            })
            .collect();
        let lost: Vec<String> = before
            .unwrap_or_default()
            .iter()
            .filter(|b| {
                !held
                    .iter()
                    .any(|h| h.source == b.source && h.token == b.token)
            })
            .map(|b| b.source.clone())
            .collect();
        let live: Vec<String> = tx
            .query(
                "SELECT replica FROM replicas WHERE expires_at > $1 ORDER BY replica",
                &[&now],
            )
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let sources: i64 = tx
            .query_one("SELECT count(*) FROM leases", &[])
            .await
            .map_err(|e| self.err(e))?
            .get(0);
        let replicas = live.len().max(1);
        let rank = live.iter().position(|r| r == &me.id).unwrap_or(0);
        let sources = sources.max(0) as usize;
        let target = sources / replicas + usize::from(rank < sources % replicas);
        let mut acquired = Vec::new();
        if held.len() < target {
            let want = (target - held.len()) as i64;
            let taken = tx
                .query(
                    "UPDATE leases SET owner = $1, fencing_token = fencing_token + 1,
                        acquired_at = $2, expires_at = $3
                     WHERE source IN (
                        SELECT l.source FROM leases l
                        WHERE l.owner IS NULL
                           OR (l.expires_at <= $2 AND NOT EXISTS (
                                 SELECT 1 FROM replicas r
                                 WHERE r.replica = l.owner AND r.expires_at > $2))
                        ORDER BY l.source LIMIT $4
                        FOR UPDATE SKIP LOCKED)
                     RETURNING source, fencing_token",
                    &[&me.id, &now, &expires, &want],
                )
                .await
                .map_err(|e| self.err(e))?;
            for r in &taken {
                let source: String = r.get(0);
                acquired.push(source.clone());
                held.push(Lease {
                    source,
                    owner: me.id.clone(),
                    token: r.get(1),
                    expires_at: expires,
                });
            }
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        held.sort_by(|a, b| a.source.cmp(&b.source));
        // Give back the newest sources by name first, so the choice is stable tick to tick.
        let over = held.iter().skip(target).cloned().collect();
        Ok(Rebalance {
            held,
            acquired,
            lost,
            over,
            target,
            replicas,
        })
    }

    /// Gives a lease back (after its page in flight committed). A lease already lost is a
    /// no-op. Returns whether this replica still held it.
    pub async fn release(&self, lease: &Lease) -> Result<bool, StoreError> {
        let client = self.lease_client().await?;
        let n = client
            .execute(
                "UPDATE leases SET owner = NULL, expires_at = 0
                 WHERE source = $1 AND owner = $2 AND fencing_token = $3",
                &[&lease.source, &lease.owner, &lease.token],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Takes `source`'s lease for `owner` if nobody holds it, its holder's lease has expired, or
    /// `owner` already holds it (a new token whenever the owner changes). `None`: someone else
    /// holds it. The database's clock decides expiry.
    pub(crate) async fn take_if_free(
        &self,
        source: &str,
        owner: &str,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        let client = self.lease_client().await?;
        client
            .execute(
                "INSERT INTO leases (source) VALUES ($1) ON CONFLICT (source) DO NOTHING",
                &[&source],
            )
            .await
            .map_err(|e| self.err(e))?;
        let row = client
            .query_opt(
                "WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT AS ms)
                 UPDATE leases SET
                    fencing_token = CASE WHEN owner IS DISTINCT FROM $2 THEN fencing_token + 1
                                         ELSE fencing_token END,
                    acquired_at = CASE WHEN owner IS DISTINCT FROM $2 THEN (SELECT ms FROM now)
                                       ELSE acquired_at END,
                    owner = $2,
                    expires_at = (SELECT ms FROM now) + $3
                 WHERE source = $1
                   AND (owner IS NULL OR owner = $2
                        OR (expires_at <= (SELECT ms FROM now) AND NOT EXISTS (
                              SELECT 1 FROM replicas r
                              WHERE r.replica = leases.owner
                                AND r.expires_at > (SELECT ms FROM now))))
                 RETURNING fencing_token, expires_at",
                &[&source, &owner, &ttl_ms],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| Lease {
            source: source.to_string(),
            owner: owner.to_string(),
            token: r.get(0),
            expires_at: r.get(1),
        }))
    }

    /// Gives back every lease this process took in [`super::LeaseMode::Solo`] (a `sync --once`
    /// that ends), so a replica need not wait for them to expire.
    pub async fn release_all(&self) -> Result<(), StoreError> {
        for l in self.held() {
            self.release(&l).await?;
            self.drop_held(&l.source);
        }
        Ok(())
    }

    /// A replica's orderly exit: its heartbeat and all its leases go at once, so the others
    /// take its sources on their next tick instead of after the TTL.
    pub async fn leave(&self, me: &Replica) -> Result<(), StoreError> {
        let client = self.lease_client().await?;
        client
            .execute(
                "UPDATE leases SET owner = NULL, expires_at = 0 WHERE owner = $1",
                &[&me.id],
            )
            .await
            .map_err(|e| self.err(e))?;
        client
            .execute("DELETE FROM replicas WHERE replica = $1", &[&me.id])
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
