//! Filters resolved to what the API and the store understand: blueprint ids, tag ids,
//! platforms, Prism device families, and the set of in-scope devices.

use std::collections::HashSet;

use super::{SourceRuntime, StreamError};
use crate::config::DEVICE_TYPES;

/// The resolved filters of a source. `active == false` means "everything".
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub active: bool,
    pub blueprint_ids: Vec<String>,
    pub tag_ids: Vec<String>,
    /// `/devices` platform names.
    pub platforms: Vec<String>,
    /// Prism `device_families` names.
    pub families: Vec<String>,
    /// Devices currently in scope (not removed), when filters are active.
    pub devices: Option<HashSet<String>>,
}

impl Scope {
    /// Resolves the source's filters against the blueprints and tags in the store (names or
    /// ids are both accepted) and the devices collected so far.
    pub async fn resolve(rt: &SourceRuntime) -> Result<Scope, StreamError> {
        let f = rt.source.filters.clone();
        if f.blueprints.is_empty() && f.tags.is_empty() && f.device_types.is_empty() {
            return Ok(Scope::default());
        }
        let source = rt.name().to_string();
        let (blueprints, tags) = (f.blueprints.clone(), f.tags.clone());
        let (bp_ids, tag_ids, devices) = rt
            .store
            .read(move |c| {
                let lookup = |table: &str, wanted: &[String]| -> Result<Vec<String>, StreamError> {
                    let mut out = Vec::new();
                    for w in wanted {
                        let id: Option<String> = c
                            .query_row(
                                &format!(
                                    "SELECT key FROM {table} WHERE source = ?1 AND removed_at IS NULL
                                     AND (key = ?2 OR name = ?2 COLLATE NOCASE) LIMIT 1"
                                ),
                                [&source, w],
                                |r| r.get(0),
                            )
                            .ok();
                        match id {
                            Some(id) => out.push(id),
                            None => {
                                return Err(StreamError::Data(format!(
                                    "filters: no {} with id or name {w:?} in this tenant",
                                    table.trim_end_matches('s')
                                )));
                            }
                        }
                    }
                    Ok(out)
                };
                let bp = lookup("blueprints", &blueprints);
                let tg = lookup("tags", &tags);
                let mut stmt = c.prepare(
                    "SELECT key FROM devices WHERE source = ?1 AND removed_at IS NULL",
                )?;
                let devices: HashSet<String> = stmt
                    .query_map([&source], |r| r.get::<_, String>(0))?
                    .collect::<Result<_, _>>()?;
                Ok((bp, tg, devices))
            })
            .await?;
        let platforms: Vec<String> = f.device_types.clone();
        let families = platforms
            .iter()
            .filter_map(|p| {
                DEVICE_TYPES
                    .iter()
                    .find(|(d, _)| d == p)
                    .map(|(_, fam)| fam.to_string())
            })
            .collect();
        Ok(Scope {
            active: true,
            blueprint_ids: bp_ids?,
            tag_ids: tag_ids?,
            platforms,
            families,
            devices: Some(devices),
        })
    }

    /// Whether a record naming `device_id` is in scope. Records naming no device always are.
    pub fn has_device(&self, device_id: Option<&str>) -> bool {
        match (&self.devices, device_id) {
            (Some(set), Some(d)) => set.contains(d),
            _ => true,
        }
    }
}
