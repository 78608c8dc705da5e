//! The console's own state: sources added in the console (tokens encrypted by `web::crypto`
//! before they get here) and the admin's password hash.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, now_ms};

/// A console source as stored. `streams`, `schedules` and `filters` are JSON.
#[derive(Debug, Clone)]
pub struct ConsoleSourceRow {
    pub name: String,
    pub endpoint: String,
    pub region: String,
    pub allow_custom: bool,
    pub token_last4: String,
    pub enabled: bool,
    pub budget_share: f64,
    pub hourly_limit: u32,
    pub per_second: u32,
    pub streams: String,
    pub schedules: String,
    pub filters: String,
    pub updated_at: i64,
    pub token_ct: Vec<u8>,
    /// The token hygiene settings (migration 8; `None` = the default).
    pub hygiene: ConsoleHygiene,
}

/// A console source's token name, rotation age (days) and reserve for other tools.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ConsoleHygiene {
    pub token_name: Option<String>,
    pub rotate_after_days: Option<i64>,
    pub reserve_for_others: Option<f64>,
}

/// A source to add.
#[derive(Debug, Clone)]
pub struct NewConsoleSource {
    pub name: String,
    pub endpoint: String,
    pub region: String,
    pub allow_custom: bool,
    pub token_last4: String,
    /// JSON array of stream names.
    pub streams: String,
    pub token_ct: Vec<u8>,
}

/// The settings an edit changes. `streams`, `schedules` and `filters` are JSON.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub endpoint: String,
    pub region: String,
    pub enabled: bool,
    pub budget_share: f64,
    pub streams: String,
    pub schedules: String,
    pub filters: String,
    pub hygiene: ConsoleHygiene,
}

const COLS: &str = "name, endpoint, region, allow_custom, token_last4, enabled, budget_share,
    hourly_limit, per_second, streams, schedules, filters, updated_at, token_ct,
    token_name, rotate_after_days, reserve_for_others";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConsoleSourceRow> {
    Ok(ConsoleSourceRow {
        name: r.get(0)?,
        endpoint: r.get(1)?,
        region: r.get(2)?,
        allow_custom: r.get(3)?,
        token_last4: r.get(4)?,
        enabled: r.get(5)?,
        budget_share: r.get(6)?,
        hourly_limit: r.get(7)?,
        per_second: r.get(8)?,
        streams: r.get(9)?,
        schedules: r.get(10)?,
        filters: r.get(11)?,
        updated_at: r.get(12)?,
        token_ct: r.get(13)?,
        hygiene: ConsoleHygiene {
            token_name: r.get(14)?,
            rotate_after_days: r.get(15)?,
            reserve_for_others: r.get(16)?,
        },
    })
}

impl Store {
    pub async fn console_sources(&self) -> Result<Vec<ConsoleSourceRow>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.console_sources().await;
        }
        self.read(|c| {
            let mut st = c.prepare(&format!("SELECT {COLS} FROM console_sources ORDER BY name"))?;
            let rows = st.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn console_source(&self, name: &str) -> Result<Option<ConsoleSourceRow>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.console_source(name).await;
        }
        let name = name.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {COLS} FROM console_sources WHERE name = ?1"),
                [name],
                row,
            )
            .optional()?)
        })
        .await
    }

    /// Adds a console source; `false` when one with that name exists (nothing changes).
    pub async fn insert_console_source(&self, s: NewConsoleSource) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.insert_console_source(s).await;
        }
        self.exec("adding a console source", move |w| {
            let now = now_ms();
            let n = w.conn.execute(
                "INSERT INTO console_sources (name, endpoint, region, allow_custom, token_last4,
                   streams, created_at, updated_at, token_ct)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)
                 ON CONFLICT (name) DO NOTHING",
                params![
                    s.name,
                    s.endpoint,
                    s.region,
                    s.allow_custom,
                    s.token_last4,
                    s.streams,
                    now,
                    s.token_ct
                ],
            )?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn update_console_source(
        &self,
        name: &str,
        s: SourceSettings,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.update_console_source(name, s).await;
        }
        let name = name.to_string();
        self.exec("editing a console source", move |w| {
            w.conn.execute(
                "UPDATE console_sources SET enabled = ?2, budget_share = ?3, streams = ?4,
                   schedules = ?5, filters = ?6, updated_at = ?7, endpoint = ?8, region = ?9,
                   token_name = ?10, rotate_after_days = ?11, reserve_for_others = ?12
                 WHERE name = ?1",
                params![
                    name,
                    s.enabled,
                    s.budget_share,
                    s.streams,
                    s.schedules,
                    s.filters,
                    now_ms(),
                    s.endpoint,
                    s.region,
                    s.hygiene.token_name,
                    s.hygiene.rotate_after_days,
                    s.hygiene.reserve_for_others
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn set_console_source_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.set_console_source_enabled(name, enabled).await;
        }
        let name = name.to_string();
        self.exec("editing a console source", move |w| {
            w.conn.execute(
                "UPDATE console_sources SET enabled = ?2, updated_at = ?3 WHERE name = ?1",
                params![name, enabled, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Replaces a console source's encrypted token.
    pub async fn rotate_console_token(
        &self,
        name: &str,
        token_ct: Vec<u8>,
        token_last4: String,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.rotate_console_token(name, token_ct, token_last4).await;
        }
        let name = name.to_string();
        self.exec("rotating a token", move |w| {
            w.conn.execute(
                "UPDATE console_sources SET token_ct = ?2, token_last4 = ?3, updated_at = ?4
                 WHERE name = ?1",
                params![name, token_ct, token_last4, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Deletes a console source's settings and marks its streams disabled; its collected
    /// data stays in the store.
    pub async fn delete_console_source(&self, name: &str) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.delete_console_source(name).await;
        }
        let name = name.to_string();
        self.exec("deleting a console source", move |w| {
            let tx = w.conn.transaction()?;
            tx.execute("DELETE FROM console_sources WHERE name = ?1", [&name])?;
            tx.execute(
                "UPDATE stream_status SET state = 'disabled' WHERE source = ?1",
                [&name],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Deletes everything collected from `source`, in one transaction: every row of every
    /// table with a `source` column (inventory, events and their search index, checkpoints,
    /// status, samples, outbox, offsets, dead letters, snapshots…), and its app installs
    /// (keyed by device, with the shared versions' install counts kept right). The console's
    /// own settings are [`Store::delete_console_source`]'s. Returns the rows deleted.
    pub async fn purge_source(&self, source: &str) -> Result<u64, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.purge_source(source).await;
        }
        let source = source.to_string();
        self.exec("purging a source's data", move |w| {
            let tx = w.conn.transaction()?;
            let mut n = 0u64;
            tx.execute(
                "UPDATE app_versions SET installs = installs - (
                   SELECT count(*) FROM app_installs i JOIN app_devices d ON d.id = i.dev
                   WHERE d.source = ?1 AND i.ver = app_versions.id AND i.removed_at IS NULL)
                 WHERE id IN (SELECT i.ver FROM app_installs i
                              JOIN app_devices d ON d.id = i.dev WHERE d.source = ?1)",
                [&source],
            )?;
            n += tx.execute(
                "DELETE FROM app_installs WHERE dev IN (SELECT id FROM app_devices WHERE source = ?1)",
                [&source],
            )? as u64;
            let tables: Vec<String> = {
                let mut st = tx.prepare(
                    "SELECT m.name FROM sqlite_master m
                     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
                       AND m.name NOT LIKE 'events_fts%' AND m.name != 'console_sources'
                       AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) p WHERE p.name = 'source')
                     ORDER BY m.name",
                )?;
                st.query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            };
            for t in tables {
                // `t` comes from the schema itself, quoted as an identifier.
                n += tx.execute(
                    &format!("DELETE FROM \"{}\" WHERE source = ?1", t.replace('"', "\"\"")),
                    [&source],
                )? as u64;
            }
            tx.commit()?;
            // The write path caches app device ids (and stages): the purged ones are gone.
            w.rolled_back();
            Ok(n)
        })
        .await
    }

    /// The admin's password hash, if one was set.
    pub async fn admin_password_hash(&self) -> Result<Option<String>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.admin_password_hash().await;
        }
        self.read(|c| {
            Ok(c.query_row(
                "SELECT password_hash FROM console_admin WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    pub async fn set_admin_password_hash(&self, hash: String) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.set_admin_password_hash(hash).await;
        }
        self.exec("setting the admin password", move |w| {
            w.conn.execute(
                "INSERT INTO console_admin (id, password_hash, updated_at) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET password_hash = excluded.password_hash,
                   updated_at = excluded.updated_at",
                params![hash, now_ms()],
            )?;
            Ok(())
        })
        .await
    }
}
