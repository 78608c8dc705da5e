//! Sources added in the console: stored in `console_sources` with the token encrypted, turned
//! into the same [`Source`] the TOML config resolves to.

use std::collections::BTreeMap;
use std::time::Duration;

use kandji_api::{ApiBase, Region};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::crypto::{CryptoError, TokenCipher, last4};
use crate::config::{FilterConfig, Source};
use crate::store::{ConsoleSourceRow, NewConsoleSource, SourceSettings, Store, StoreError};
use crate::streams::StreamName;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: &str, message: impl Into<String>) -> SourceError {
    SourceError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A console source as stored (the token stays encrypted).
#[derive(Debug, Clone, Serialize)]
pub struct ConsoleSource {
    pub name: String,
    pub endpoint: String,
    pub region: String,
    pub allow_custom: bool,
    pub token_last4: String,
    pub enabled: bool,
    pub budget_share: f64,
    pub hourly_limit: u32,
    pub per_second: u32,
    pub streams: Vec<String>,
    /// Stream → interval ("5m").
    pub schedules: BTreeMap<String, String>,
    pub filters: Filters,
    pub updated_at: i64,
    #[serde(skip)]
    pub token_ct: Vec<u8>,
    /// The token's name in Kandji, its rotation age and the reserve for other tools.
    pub hygiene: crate::store::ConsoleHygiene,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Filters {
    #[serde(default)]
    pub blueprints: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub device_types: Vec<String>,
}

pub fn valid_name(name: &str) -> Result<(), SourceError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid("name", "use 1-64 letters, digits, '-', '_' or '.'"));
    }
    // `.` and `..` are path segments: a source so named cannot be opened, edited or deleted
    // at `/sources/{name}`.
    if name == "." || name == ".." {
        return Err(invalid(
            "name",
            format!("{name:?} is a path segment, not a name; use letters or digits too"),
        ));
    }
    Ok(())
}

pub fn parse_region(s: &str) -> Result<Region, SourceError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "us" => Ok(Region::Us),
        "eu" => Ok(Region::Eu),
        other => Err(invalid("region", format!("{other:?} is not us or eu"))),
    }
}

pub fn region_str(r: Region) -> &'static str {
    match r {
        Region::Eu => "eu",
        _ => "us",
    }
}

pub fn parse_streams(list: &[String]) -> Result<Vec<StreamName>, SourceError> {
    list.iter()
        .map(|s| {
            StreamName::parse(s).ok_or_else(|| invalid("streams", format!("{s:?} is not a stream")))
        })
        .collect()
}

pub fn parse_intervals(
    schedules: &BTreeMap<String, String>,
) -> Result<BTreeMap<StreamName, Duration>, SourceError> {
    let mut out = BTreeMap::new();
    for (k, v) in schedules {
        if v.trim().is_empty() {
            continue;
        }
        let stream = StreamName::parse(k)
            .ok_or_else(|| invalid("schedules", format!("{k:?} is not a stream")))?;
        let d = humantime::parse_duration(v.trim()).map_err(|e| {
            invalid(
                &format!("schedules.{k}"),
                format!("{v:?} is not an interval like 5m or 1h: {e}"),
            )
        })?;
        if d < Duration::from_secs(60) {
            return Err(invalid(
                &format!("schedules.{k}"),
                format!("{v:?} is shorter than the 1 minute minimum"),
            ));
        }
        out.insert(stream, d);
    }
    Ok(out)
}

impl ConsoleSource {
    /// The engine's view: endpoint parsed, token decrypted.
    pub fn resolve(&self, cipher: &TokenCipher) -> Result<Source, SourceError> {
        let base = ApiBase::parse(
            &self.endpoint,
            parse_region(&self.region)?,
            self.allow_custom,
        )
        .map_err(|e| invalid("endpoint", format!("{:?}: {e}", self.endpoint)))?;
        let token = cipher.decrypt(&self.token_ct, &self.name)?;
        Ok(Source {
            name: self.name.clone(),
            base,
            token,
            enabled: self.enabled,
            budget_share: self.budget_share,
            hourly_limit: self.hourly_limit,
            per_second: self.per_second,
            streams: parse_streams(&self.streams)?,
            intervals: parse_intervals(&self.schedules)?,
            filters: FilterConfig {
                blueprints: self.filters.blueprints.clone(),
                tags: self.filters.tags.clone(),
                device_types: self.filters.device_types.clone(),
            },
            export_download_hosts: Vec::new(),
            hygiene: crate::streams::source::Hygiene {
                token_name: self.hygiene.token_name.clone(),
                rotate_after: self
                    .hygiene
                    .rotate_after_days
                    .filter(|d| *d > 0)
                    .map(|d| std::time::Duration::from_secs(d as u64 * 86_400))
                    .unwrap_or(crate::streams::source::DEFAULT_ROTATE_AFTER),
                reserve_for_others: self
                    .hygiene
                    .reserve_for_others
                    .unwrap_or(crate::streams::source::DEFAULT_RESERVE_FOR_OTHERS)
                    .clamp(0.0, 0.9),
            },
        })
    }
}

fn from_row(r: ConsoleSourceRow) -> ConsoleSource {
    ConsoleSource {
        name: r.name,
        endpoint: r.endpoint,
        region: r.region,
        allow_custom: r.allow_custom,
        token_last4: r.token_last4,
        enabled: r.enabled,
        budget_share: r.budget_share,
        hourly_limit: r.hourly_limit,
        per_second: r.per_second,
        streams: serde_json::from_str(&r.streams).unwrap_or_default(),
        schedules: serde_json::from_str(&r.schedules).unwrap_or_default(),
        filters: serde_json::from_str(&r.filters).unwrap_or_default(),
        updated_at: r.updated_at,
        token_ct: r.token_ct,
        hygiene: r.hygiene,
    }
}

pub async fn list(store: &Store) -> Result<Vec<ConsoleSource>, StoreError> {
    Ok(store
        .console_sources()
        .await?
        .into_iter()
        .map(from_row)
        .collect())
}

pub async fn get(store: &Store, name: &str) -> Result<Option<ConsoleSource>, StoreError> {
    Ok(store.console_source(name).await?.map(from_row))
}

/// What the add form and the check produce.
pub struct NewSource {
    pub name: String,
    pub endpoint: String,
    pub region: Region,
    pub allow_custom: bool,
    pub token: SecretString,
    pub streams: Vec<StreamName>,
}

pub async fn insert(store: &Store, cipher: &TokenCipher, s: NewSource) -> Result<(), SourceError> {
    valid_name(&s.name)?;
    let ct = cipher.encrypt(&s.token, &s.name)?;
    let l4 = last4(&s.token);
    let streams = serde_json::to_string(&s.streams.iter().map(|x| x.as_str()).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into());
    let name = s.name.clone();
    let added = store
        .insert_console_source(NewConsoleSource {
            name: s.name,
            endpoint: s.endpoint,
            region: region_str(s.region).to_string(),
            allow_custom: s.allow_custom,
            token_last4: l4,
            streams,
            token_ct: ct,
        })
        .await?;
    if !added {
        return Err(invalid("name", format!("a source named {name:?} exists")));
    }
    Ok(())
}

/// The editable settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoint: String,
    pub region: Region,
    pub enabled: bool,
    pub budget_share: f64,
    pub streams: Vec<StreamName>,
    pub schedules: BTreeMap<String, String>,
    pub filters: Filters,
    pub hygiene: crate::store::ConsoleHygiene,
}

pub async fn update(store: &Store, name: &str, s: Settings) -> Result<(), SourceError> {
    if !(s.budget_share > 0.0 && s.budget_share <= 1.0) {
        return Err(invalid("budget_share", "must be more than 0 and at most 1"));
    }
    parse_intervals(&s.schedules)?;
    if let Some(r) = s.hygiene.reserve_for_others
        && !(0.0..=0.9).contains(&r)
    {
        return Err(invalid(
            "reserve_for_others",
            "must be between 0 and 0.9 (a fraction of the tenant's hourly limit)",
        ));
    }
    if s.hygiene
        .rotate_after_days
        .is_some_and(|d| !(1..=3650).contains(&d))
    {
        return Err(invalid(
            "rotate_after_days",
            "must be between 1 and 3650 days",
        ));
    }
    if s.hygiene
        .token_name
        .as_deref()
        .is_some_and(|n| n.len() > 200)
    {
        return Err(invalid("token_name", "must be at most 200 characters"));
    }
    let streams = serde_json::to_string(&s.streams.iter().map(|x| x.as_str()).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into());
    let schedules = serde_json::to_string(&s.schedules).unwrap_or_else(|_| "{}".into());
    let filters = serde_json::to_string(&s.filters).unwrap_or_else(|_| "{}".into());
    store
        .update_console_source(
            name,
            SourceSettings {
                endpoint: s.endpoint.clone(),
                region: region_str(s.region).to_string(),
                enabled: s.enabled,
                budget_share: s.budget_share,
                streams,
                schedules,
                filters,
                hygiene: s.hygiene.clone(),
            },
        )
        .await?;
    Ok(())
}

pub async fn set_enabled(store: &Store, name: &str, enabled: bool) -> Result<(), StoreError> {
    store.set_console_source_enabled(name, enabled).await
}

pub async fn rotate_token(
    store: &Store,
    cipher: &TokenCipher,
    name: &str,
    token: &SecretString,
) -> Result<(), SourceError> {
    let ct = cipher.encrypt(token, name)?;
    store.rotate_console_token(name, ct, last4(token)).await?;
    Ok(())
}

/// Deletes the source's settings; its collected data stays in the store.
pub async fn delete(store: &Store, name: &str) -> Result<(), StoreError> {
    store.delete_console_source(name).await
}

#[cfg(test)]
mod name_tests {
    use super::valid_name;

    #[test]
    fn path_segments_are_not_names() {
        for bad in [".", "..", "", "a/b", "a b", &"x".repeat(65)] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
        for good in ["acme", "acme.eu", "a..b", "...", "prod_1-x"] {
            assert!(valid_name(good).is_ok(), "{good:?}");
        }
    }
}
