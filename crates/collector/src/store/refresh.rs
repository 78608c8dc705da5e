//! The refresh queue: devices whose compliance should be read again (the audit feed, Prism
//! deltas and check-ins put them there; the compliance stream drains it with its pages).

use rusqlite::params;

use super::{Store, StoreError};

impl Store {
    /// The devices the compliance stream reads this run, most urgent first, at most `cap`:
    /// queued devices (`true`), then devices never read or whose check-in moved since their
    /// last read, then the least recently read (a rotation).
    pub async fn compliance_candidates(
        &self,
        source: &str,
        cap: usize,
    ) -> Result<Vec<(String, bool)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.compliance_candidates(source, cap).await;
        }
        let source = source.to_string();
        self.read(move |c| {
            let mut out: Vec<(String, bool)> = Vec::new();
            let push = |id: String, queued: bool, out: &mut Vec<(String, bool)>| {
                if out.len() < cap && !out.iter().any(|(d, _)| *d == id) {
                    out.push((id, queued));
                }
            };
            let mut q = c.prepare(
                "SELECT q.device_id FROM refresh_queue q
                 JOIN devices d ON d.source = q.source AND d.key = q.device_id AND d.removed_at IS NULL
                 WHERE q.source = ?1 ORDER BY q.queued_at, q.device_id LIMIT ?2",
            )?;
            for id in q.query_map(params![source, cap as i64], |r| r.get::<_, String>(0))? {
                push(id?, true, &mut out);
            }
            let mut moved = c.prepare(
                "SELECT d.key, (SELECT r.read_at FROM device_reads r
                                 WHERE r.source = d.source AND r.device_id = d.key
                                   AND r.stream = 'compliance') AS read_at
                 FROM devices d WHERE d.source = ?1 AND d.removed_at IS NULL
                 ORDER BY (read_at IS NOT NULL), read_at, d.key LIMIT ?2",
            )?;
            let candidates: Vec<(String, Option<i64>)> = moved
                .query_map(params![source, (cap * 4) as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            // Never read first, then check-in after our last read, then the oldest reads.
            let mut checkin = c.prepare_cached(
                "SELECT last_check_in FROM devices WHERE source = ?1 AND key = ?2",
            )?;
            let mut moved_ids = Vec::new();
            let mut rotation = Vec::new();
            for (id, read_at) in candidates {
                match read_at {
                    None => moved_ids.push(id),
                    Some(read_at) => {
                        let ci: Option<i64> =
                            checkin.query_row(params![source, id], |r| r.get(0))?;
                        if ci.is_some_and(|ci| ci > read_at) {
                            moved_ids.push(id);
                        } else {
                            rotation.push(id);
                        }
                    }
                }
            }
            for id in moved_ids.into_iter().chain(rotation) {
                push(id, false, &mut out);
            }
            Ok(out)
        })
        .await
    }
}
