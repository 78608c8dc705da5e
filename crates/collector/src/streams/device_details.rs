//! `device_details`: device details and security posture from Prism — `device_information`
//! plus the posture categories `filevault`, `application_firewall`, `gatekeeper_and_xprotect`,
//! `startup_settings` and `installed_profiles`. A full export of each category every
//! [`FULL_EXPORT_EVERY`] (which also finds rows that went
//! away), and cursor pages filtered on `last_changed_at` in between; the categories run at
//! once (their exports are prepared by Kandji side by side). A posture value that changes
//! (FileVault, firewall, Gatekeeper, SIP) becomes a change event, and a device that changed
//! is queued for a compliance re-read.

use kandji_api::export::{CsvHeaders, CsvMapper};
use kandji_api::models::lenient;
use serde_json::Value;

use super::drivers::prism_snapshot::{self as prism, PrismTable, RawJson};
use super::{StreamName, int, text, typed};
use crate::streams::fetch::s;
use crate::streams::runtime::{RunReport, Scope, SourceRuntime, StreamError};
use super::drivers::prism_snapshot::FULL_EXPORT_EVERY;
use crate::store::{Batch, InvRow, Table, Upsert};
use kandji_api::Priority;
use kandji_api::check::{calls, probes};
use super::spec::{Cost, Driver, Output, Stage, StreamSpec};
use std::time::Duration;

/// The Prism categories this stream snapshots (`apps` has its own stream).
pub const CATEGORIES: [&str; 6] = [
    "device_information",
    "filevault",
    "application_firewall",
    "gatekeeper_and_xprotect",
    "startup_settings",
    "installed_profiles",
];

/// The field a category's posture (and its change events) follows.
fn posture_field(category: &str) -> Option<&'static str> {
    match category {
        "filevault" => Some("status"),
        "application_firewall" => Some("status"),
        "gatekeeper_and_xprotect" => Some("gatekeeper_status"),
        "startup_settings" => Some("sip"),
        _ => None,
    }
}

/// A row from its fields (`get` reads one, `""` and null absent) and its raw JSON.
fn row_of(
    category: &str,
    get: &dyn Fn(&str) -> Option<String>,
    changed_at: Option<i64>,
    raw: String,
) -> Option<InvRow> {
    let device_id = get("device_id")?;
    let key = match category {
        "installed_profiles" => format!(
            "{category}|{device_id}|{}",
            get("payload_uuid")
                .or_else(|| get("payload_identifier"))
                .unwrap_or_default()
        ),
        _ => format!("{category}|{device_id}"),
    };
    Some(InvRow {
        key,
        device_id: Some(device_id),
        values: typed(
            Table::DeviceDetails,
            vec![
                ("category", text(Some(category.to_string()))),
                ("last_changed_at", int(changed_at)),
                ("posture", text(posture_field(category).and_then(get))),
            ],
        ),
        raw,
    })
}

pub fn map(category: &str, row: &Value) -> Option<InvRow> {
    row_of(
        category,
        &|k| s(row, k),
        prism::changed_at(row),
        prism::csv_form(row),
    )
}

/// Maps a details CSV record to its row, writing the raw JSON without a map.
pub struct DetailsMapper {
    category: String,
    raw: RawJson,
}

impl CsvMapper for DetailsMapper {
    type Row = InvRow;
    fn headers(&mut self, h: &CsvHeaders) {
        self.raw = RawJson::new(h);
    }
    fn map(&mut self, r: &csv::StringRecord) -> Option<InvRow> {
        let get = |k: &str| {
            self.raw
                .get(r, k)
                .and_then(|v| lenient::string_from_value(&Value::String(v.to_string())))
        };
        let ts = |k: &str| {
            self.raw
                .get(r, k)
                .and_then(|v| lenient::time_from_value(&Value::String(v.to_string())))
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        };
        let changed = ts("last_changed_at").or_else(|| ts("updated_at"));
        row_of(&self.category, &get, changed, self.raw.write(r))
    }
}

/// Device details as a Prism table: generic rows.
pub struct Details;

impl PrismTable for Details {
    type Row = InvRow;
    type Mapper = DetailsMapper;
    fn table(&self) -> Table {
        Table::DeviceDetails
    }
    fn mapper(&self, category: &str) -> DetailsMapper {
        DetailsMapper {
            category: category.to_string(),
            raw: RawJson::default(),
        }
    }
    fn row_of_json(&self, category: &str, row: &Value) -> Option<InvRow> {
        map(category, row)
    }
    fn device_of(row: &InvRow) -> Option<&str> {
        row.device_id.as_deref()
    }
    fn push(batch: &mut Batch, table: Table, sweep: i64, started_at: i64, rows: Vec<InvRow>) {
        batch.upserts.push(Upsert {
            table,
            sweep,
            started_at,
            rows,
        });
    }
}

/// The stream's whole checkpoint (one entry per category).
/// A category the tenant refused is asked for again after this long.
pub const REFUSED_RETRY_MS: i64 = 24 * 3_600_000;

/// Whether an error is the tenant refusing the category itself (`400 Invalid category`).
fn refused(e: &StreamError) -> Option<&str> {
    match e {
        StreamError::Api(kandji_api::KandjiError::BadRequest {
            status: 400,
            message,
            ..
        }) if message.to_ascii_lowercase().contains("category") => Some(message),
        _ => None,
    }
}

/// One category's run: skipped while the tenant refused it within [`REFUSED_RETRY_MS`];
/// a refusal is recorded in its checkpoint and reported as what is missing.
async fn one_category(
    rt: &SourceRuntime,
    scope: &Scope,
    stream: StreamName,
    cat: &'static str,
) -> Result<(RunReport, Option<crate::store::Missing>), StreamError> {
    let missing = |message: String| crate::store::Missing {
        kind: "category_unavailable",
        message,
        endpoint: Some("POST /api/v1/prism/export".into()),
    };
    let cp = prism::checkpoint(rt, stream, cat).await?;
    let now = rt.now();
    if let Some(since) = cp.unavailable_since_ms
        && now - since < REFUSED_RETRY_MS
    {
        let message = cp.unavailable_message.as_deref().unwrap_or_default();
        return Ok((
            RunReport::default(),
            Some(missing(format!(
                "{cat} not collected: the tenant refused it ({message}); asked again after {}",
                crate::streams::fetch::rfc3339(since + REFUSED_RETRY_MS)
            ))),
        ));
    }
    match prism::category(rt, scope, stream, cat, &Details, &cp).await {
        Ok(r) => Ok((r, None)),
        Err(e) => {
            let Some(message) = refused(&e) else {
                return Err(e);
            };
            tracing::warn!(source = %rt.name(), category = cat, %message,
                "the tenant refused a Prism category; the others go on");
            let mut batch = rt.batch(stream);
            batch.checkpoint_key = Some(cat.to_string());
            batch.checkpoint = Some(super::drivers::save(&prism::Checkpoint {
                unavailable_since_ms: Some(now),
                unavailable_message: Some(message.to_string()),
                ..prism::Checkpoint::default()
            }));
            rt.commit(batch).await?;
            Ok((
                RunReport::default(),
                Some(missing(format!(
                    "{cat} not collected: the tenant refused it ({message})"
                ))),
            ))
        }
    }
}

pub async fn run(rt: &SourceRuntime, scope: &Scope) -> Result<RunReport, StreamError> {
    let stream = StreamName::DeviceDetails;
    let runs = CATEGORIES.map(|cat| one_category(rt, scope, stream, cat));
    let mut report = RunReport::default();
    let mut first_error = None;
    for r in futures::future::join_all(runs).await {
        match r {
            Ok((r, missing)) => {
                report.pages += r.pages;
                report.records += r.records;
                report.degraded.extend(missing);
            }
            Err(e) => {
                // Shutdown wins over other errors: the run stopped, it did not fail.
                if first_error.is_none() || matches!(e, StreamError::Shutdown) {
                    first_error = Some(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// The declaration.
pub static SPEC: StreamSpec = StreamSpec {
    name: "device_details",
    interval: Duration::from_secs(60 * 60),
    priority: Priority::Bulk,
    category: "inventory",
    rank: 9,
    stage: Stage::Collect,
    needs: None,
    output: Output::Table(Table::DeviceDetails),
    probes: &[probes::PRISM_DEVICE_INFO],
    calls: &[calls::PRISM_EXPORT, calls::PRISM_EXPORT_ID],
    cost: |c| {
        let full = c.full_share(FULL_EXPORT_EVERY);
        CATEGORIES.len() as f64
            * (full * c.export() + (1.0 - full) * Cost::pages(c.changed(), 300.0))
    },
    driver: Driver::PrismSnapshot,
    run: |rt, scope| Box::pin(run(rt, scope)),
};
