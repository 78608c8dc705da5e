//! What a source is once configured: its endpoint, token, budget, streams, schedules and
//! filters. The config file and the console both build one; the streams run against it.

use std::collections::BTreeMap;
use std::time::Duration;

use kandji_api::ApiBase;
use secrecy::SecretString;
use serde::Deserialize;

use super::StreamName;

/// What to collect: blueprints (id or name), tags ("device groups", id or name) and device
/// types (platforms). Empty means everything.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    #[serde(default)]
    pub blueprints: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub device_types: Vec<String>,
}

/// The device types `/devices` knows, and Prism's name for each (Prism reports Apple devices
/// only; a filter on Android or Windows alone selects no Prism rows).
pub const DEVICE_TYPES: [(&str, &str); 6] = [
    ("Mac", "Mac"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("AppleTV", "tvOS"),
    ("Android", "Android"),
    ("Windows", "Windows"),
];

/// A source, validated and resolved: the endpoint parsed, the token read, the schedules known.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub base: ApiBase,
    pub token: SecretString,
    pub enabled: bool,
    pub budget_share: f64,
    pub hourly_limit: u32,
    pub per_second: u32,
    pub streams: Vec<StreamName>,
    pub intervals: BTreeMap<StreamName, Duration>,
    pub filters: FilterConfig,
    /// Hosts signed export URLs may name besides the built-in ones (S3's): a host or a
    /// parent domain, reached over https only.
    pub export_download_hosts: Vec<String>,
    /// The token's name, rotation age, and the budget kept for other tools.
    pub hygiene: Hygiene,
}

/// How a source treats its token and the tenant's other tools.
#[derive(Debug, Clone, PartialEq)]
pub struct Hygiene {
    /// The token's name as Kandji shows it (Access → API tokens): its history (created, by
    /// whom, permission changes) is read from the audit feed the `audit_events` stream
    /// collects.
    pub token_name: Option<String>,
    /// After this age the token is due for rotation (default 90 days).
    pub rotate_after: Duration,
    /// Fraction of the tenant's hourly limit kept for the other tools on the tenant
    /// (default 0.1).
    pub reserve_for_others: f64,
}

/// The default rotation age: 90 days.
pub const DEFAULT_ROTATE_AFTER: Duration = Duration::from_secs(90 * 86_400);
/// The default reserve for other tools: 10 % of the tenant's hourly limit.
pub const DEFAULT_RESERVE_FOR_OTHERS: f64 = 0.1;

impl Default for Hygiene {
    fn default() -> Self {
        Self {
            token_name: None,
            rotate_after: DEFAULT_ROTATE_AFTER,
            reserve_for_others: DEFAULT_RESERVE_FOR_OTHERS,
        }
    }
}
