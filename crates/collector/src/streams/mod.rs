//! The streams. Each `streams/<name>.rs` declares one [`StreamSpec`] (its name, schedule,
//! priority, permissions, cost and driver) and its mapping to rows; this module is only the
//! registry and the name parser. Adding a stream is one file plus one line in [`registry!`].
//!
//! Below the streams: the runtime they run in ([`runtime`]), the five shared loops
//! ([`drivers`]), the filters ([`scope`]), lenient field access ([`fetch`]) and what a source
//! is ([`source`]).

pub mod drivers;
pub mod error;
pub mod fetch;
pub mod runtime;
pub mod scope;
pub mod source;
pub mod spec;

pub use spec::{Assumptions, Cost, Driver, FleetSize, Output, Stage, StreamSpec};

use std::time::Duration;

/// Declares the streams: one line each, `Variant => module`. The order is the enum's (and so
/// the order of `ALL`); a cycle's run order is each spec's `rank`.
macro_rules! registry {
    ($($variant:ident => $module:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// A stream's name. The names are part of the CLI and the config: never rename one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum StreamName {
            $($variant),*
        }

        impl StreamName {
            pub const ALL: [StreamName; [$(stringify!($variant)),*].len()] =
                [$(StreamName::$variant),*];

            /// The stream's declaration.
            pub fn spec(self) -> &'static StreamSpec {
                match self {
                    $(StreamName::$variant => &$module::SPEC),*
                }
            }
        }

        /// Each stream's module name (its file), for the registry's own test.
        #[cfg(test)]
        const MODULES: &[(StreamName, &str)] = &[$((StreamName::$variant, stringify!($module))),*];
    };
}

registry! {
    Devices => devices,
    DeviceDetails => device_details,
    Apps => apps,
    Compliance => compliance,
    AuditEvents => audit_events,
    Threats => threats,
    BehavioralDetections => behavioral_detections,
    VulnerabilityDetections => vulnerability_detections,
    Users => users,
    Blueprints => blueprints,
    Tags => tags,
    AdeDevices => ade_devices,
}

impl StreamName {
    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// The name people read in the console ("Audit events"); [`StreamName::as_str`] stays
    /// the name in config, the CLI, the store and metrics.
    pub fn label(self) -> &'static str {
        match self {
            StreamName::Devices => "Devices",
            StreamName::DeviceDetails => "Device details and posture",
            StreamName::Apps => "Applications",
            StreamName::Compliance => "Compliance",
            StreamName::AuditEvents => "Audit events",
            StreamName::Threats => "Threats",
            StreamName::BehavioralDetections => "Behavioral detections",
            StreamName::VulnerabilityDetections => "Vulnerabilities",
            StreamName::Users => "Users",
            StreamName::Blueprints => "Blueprints",
            StreamName::Tags => "Tags",
            StreamName::AdeDevices => "Automated Device Enrollment",
        }
    }

    pub fn parse(s: &str) -> Option<StreamName> {
        let s = s.trim();
        StreamName::ALL.into_iter().find(|n| n.as_str() == s)
    }

    pub fn default_interval(self) -> Duration {
        self.spec().interval
    }

    pub fn priority(self) -> kandji_api::Priority {
        self.spec().priority
    }

    pub fn category(self) -> &'static str {
        self.spec().category
    }

    /// The streams in a cycle's run order (by rank).
    pub fn by_rank() -> Vec<StreamName> {
        let mut all = StreamName::ALL.to_vec();
        all.sort_by_key(|s| s.spec().rank);
        all
    }
}

impl std::fmt::Display for StreamName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn names() -> Vec<&'static str> {
    StreamName::ALL.iter().map(|s| s.as_str()).collect()
}

/// The stream that fills `table`, if one does.
pub fn filling(table: crate::store::Table) -> Option<StreamName> {
    StreamName::ALL
        .into_iter()
        .find(|s| s.spec().output == Output::Table(table))
}

/// Endpoints every source calls, whatever its streams: the licence counts the planner sizes
/// the fleet with.
pub const SOURCE_CALLS: &[kandji_api::check::EndpointSpec] = &[kandji_api::check::calls::LICENSING];

/// What [`permissions`] says every source needs an endpoint for.
pub const EVERY_SOURCE: &str = "every source (the plan sizes the fleet)";

/// One permission a token needs: the endpoint, its name in Kandji, and who needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Permission {
    /// `GET` (or `POST` for Prism exports).
    pub method: &'static str,
    /// The path template.
    pub path: &'static str,
    /// The checkbox's name in Kandji → Access → API tokens (UI name where known).
    pub name: &'static str,
    /// The streams that need it, in run order (or [`EVERY_SOURCE`]).
    pub needed_by: Vec<&'static str>,
}

/// The permissions `streams` need, generated from their declarations (probes and calls) plus
/// what every source calls: exactly what to tick on a least-privilege token. In the streams'
/// run order, each endpoint once.
pub fn permissions(streams: &[StreamName]) -> Vec<Permission> {
    let mut out: Vec<Permission> = Vec::new();
    let mut add = |e: &kandji_api::check::EndpointSpec, who: &'static str| match out
        .iter_mut()
        .find(|p| p.method == e.method && p.path == e.template)
    {
        Some(p) => {
            if !p.needed_by.contains(&who) {
                p.needed_by.push(who);
            }
        }
        None => out.push(Permission {
            method: e.method,
            path: e.template,
            name: e.permission_name,
            needed_by: vec![who],
        }),
    };
    for e in SOURCE_CALLS {
        add(e, EVERY_SOURCE);
    }
    for s in StreamName::by_rank()
        .into_iter()
        .filter(|s| streams.contains(s))
    {
        let spec = s.spec();
        for e in spec.probes.iter().chain(spec.calls) {
            add(e, spec.name);
        }
    }
    out
}

/// The permission table as Markdown (the README's, and `permissions --format markdown`).
pub fn permissions_markdown(streams: &[StreamName]) -> String {
    let mut s = String::from(
        "| Permission (as Kandji names it) | Method | Endpoint | Needed by |\n|---|---|---|---|\n",
    );
    for p in permissions(streams) {
        s.push_str(&format!(
            "| {} | {} | `{}` | {} |\n",
            p.name,
            p.method,
            p.path,
            p.needed_by.join(", ")
        ));
    }
    s
}

/// The checkbox to tick in Kandji → Access → API token for an endpoint (`"GET /api/v1/..."`),
/// from the streams' declarations; the endpoint itself when no stream declares it.
pub fn permission_name(endpoint: &str) -> String {
    StreamName::ALL
        .iter()
        .flat_map(|s| s.spec().probes.iter().chain(s.spec().calls))
        .chain(SOURCE_CALLS)
        .find(|e| e.endpoint() == endpoint)
        .map(|e| e.permission_name.to_string())
        .unwrap_or_else(|| endpoint.to_string())
}

/// The device an audit event names, if any (the rule the filters and the refresh queue use).
pub use audit_events::device_of as audit_device_of;

/// Runs one stream once.
pub async fn run(
    rt: &runtime::SourceRuntime,
    scope: &scope::Scope,
    stream: StreamName,
) -> Result<runtime::RunReport, error::StreamError> {
    (stream.spec().run)(rt, scope).await
}

/// Builds a row's typed values in the table's column order from (column, value) pairs;
/// columns not given are NULL.
pub(crate) fn typed(
    table: crate::store::Table,
    pairs: Vec<(&'static str, rusqlite::types::Value)>,
) -> Vec<rusqlite::types::Value> {
    let spec = table.spec();
    let mut out = vec![rusqlite::types::Value::Null; spec.columns.len()];
    for (name, v) in pairs {
        if let Some(i) = spec.col_index(name) {
            out[i] = v;
        }
    }
    out
}

pub(crate) fn text(v: Option<String>) -> rusqlite::types::Value {
    v.map_or(rusqlite::types::Value::Null, rusqlite::types::Value::Text)
}

pub(crate) fn int(v: Option<i64>) -> rusqlite::types::Value {
    v.map_or(
        rusqlite::types::Value::Null,
        rusqlite::types::Value::Integer,
    )
}

pub(crate) fn real(v: Option<f64>) -> rusqlite::types::Value {
    v.map_or(rusqlite::types::Value::Null, rusqlite::types::Value::Real)
}

pub(crate) fn flag(v: Option<bool>) -> rusqlite::types::Value {
    int(v.map(i64::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_is_declared_once_under_its_file_name() {
        let mut names = std::collections::BTreeSet::new();
        let mut ranks = std::collections::BTreeSet::new();
        for (s, module) in MODULES {
            assert_eq!(s.spec().name, *module, "{s:?}");
            assert_eq!(StreamName::parse(module), Some(*s));
            assert!(names.insert(s.spec().name), "{module} twice");
            assert!(ranks.insert(s.spec().rank), "{module}: rank taken");
            assert!(!s.spec().probes.is_empty(), "{module}: no probes");
        }
        assert_eq!(MODULES.len(), StreamName::ALL.len());
        assert_eq!(StreamName::parse("nope"), None);
    }

    #[test]
    fn the_permission_list_is_every_declared_endpoint_once_and_reads_only_but_exports() {
        let all = permissions(&StreamName::ALL);
        let mut seen = std::collections::BTreeSet::new();
        for p in &all {
            assert!(
                seen.insert((p.method, p.path)),
                "{} {} twice",
                p.method,
                p.path
            );
            assert!(
                p.method == "GET" || p.path == kandji_api::api::paths::PRISM_EXPORT,
                "{} {}: a read-only collector only reads",
                p.method,
                p.path
            );
            assert!(!p.path.contains("/secrets/"), "{}", p.path);
        }
        for s in StreamName::ALL {
            for e in s.spec().probes.iter().chain(s.spec().calls) {
                let p = all.iter().find(|p| p.path == e.template).unwrap();
                assert!(
                    p.needed_by.contains(&s.as_str()),
                    "{s} needs {}",
                    e.template
                );
            }
        }
        // Only what the chosen streams need (and licensing, which every source reads).
        let audit = permissions(&[StreamName::AuditEvents]);
        let paths: Vec<_> = audit.iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                kandji_api::api::paths::LICENSING,
                kandji_api::api::paths::AUDIT_EVENTS
            ]
        );
    }
}
