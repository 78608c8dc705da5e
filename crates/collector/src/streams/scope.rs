//! Filters resolved to what the API and the store understand: blueprint ids, tag ids,
//! platforms, Prism device families, and the set of in-scope devices.

use std::collections::HashSet;

use super::runtime::{SourceRuntime, StreamError};
use super::source::DEVICE_TYPES;
use crate::store::Table;

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
        let store = &rt.store;
        let unknown = |what: &'static str, name: String| StreamError::UnknownFilter { what, name };
        let bp_ids = store
            .resolve_ids(rt.name(), Table::Blueprints, f.blueprints.clone())
            .await?
            .map_err(|n| unknown("blueprint", n));
        let tag_ids = store
            .resolve_ids(rt.name(), Table::Tags, f.tags.clone())
            .await?
            .map_err(|n| unknown("tag", n));
        let devices = store.live_device_ids(rt.name()).await?;
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
