//! `apps`: application inventory. A full Prism export of `apps` at least every
//! [`FULL_EVERY`] (a few requests for the whole fleet, and the only way to see an uninstall),
//! which on the default hourly interval is every run; Prism cursor pages filtered on
//! `last_changed_at` for deltas when the interval is shorter. Per-device `/devices/{id}/apps` is not used: at one
//! request per device it costs the fleet size every cycle, which the planner refuses.
//!
//! Rows are normalized as they are parsed (see `store/apps.rs`): the CSV's records become
//! [`AppInstall`]s in the parser's thread, each distinct app version's fields built once.

use serde_json::Value;

use super::StreamName;
use super::drivers::prism_snapshot::{self as prism, PrismTable};
use crate::streams::runtime::{RunReport, Scope, SourceRuntime, StreamError};
use crate::store::{AppInstall, AppRowMapper, AppUpsert, Batch, Table};
use kandji_api::Priority;
use kandji_api::check::{calls, probes};
use super::spec::{Cost, Driver, Output, Stage, StreamSpec};
use std::time::Duration;

/// A full `apps` export at least this often: deltas cannot see an uninstall, and an export
/// costs about three requests whatever the fleet size (cheaper than an hour of delta pages
/// at 10k devices), so an uninstall reaches the store within an hour.
pub const FULL_EVERY: Duration = Duration::from_secs(3600);

/// Apps as a Prism table: normalized installs.
pub struct Apps;

impl PrismTable for Apps {
    type Row = AppInstall;
    type Mapper = AppRowMapper;
    fn table(&self) -> Table {
        Table::Apps
    }
    /// Installs are small (the version they share is not copied): larger batches, fewer
    /// commits.
    fn batch_rows(&self) -> usize {
        5_000
    }
    fn full_every(&self) -> Duration {
        FULL_EVERY
    }
    fn mapper(&self, _category: &str) -> AppRowMapper {
        AppRowMapper::default()
    }
    fn row_of_json(&self, _category: &str, row: &Value) -> Option<AppInstall> {
        row.as_object().and_then(AppInstall::from_json)
    }
    fn device_of(row: &AppInstall) -> Option<&str> {
        Some(&row.device_id)
    }
    fn push(batch: &mut Batch, _table: Table, sweep: i64, started_at: i64, rows: Vec<AppInstall>) {
        batch.apps.push(AppUpsert {
            sweep,
            started_at,
            rows,
        });
    }
}

pub async fn run(rt: &SourceRuntime, scope: &Scope) -> Result<RunReport, StreamError> {
    let stream = StreamName::Apps;
    let cp = prism::checkpoint(rt, stream, "apps").await?;
    prism::category(rt, scope, stream, "apps", &Apps, &cp).await
}

/// The declaration.
pub static SPEC: StreamSpec = StreamSpec {
    name: "apps",
    interval: Duration::from_secs(60 * 60),
    priority: Priority::Bulk,
    category: "apps",
    rank: 10,
    stage: Stage::Collect,
    needs: None,
    output: Output::Table(Table::Apps),
    probes: &[probes::PRISM_APPS],
    calls: &[calls::PRISM_EXPORT, calls::PRISM_EXPORT_ID],
    cost: |c| {
        let full = c.full_share(FULL_EVERY);
        full * c.export() + (1.0 - full) * Cost::pages(c.changed() * 3.0, 300.0)
    },
    driver: Driver::PrismSnapshot,
    run: |rt, scope| Box::pin(run(rt, scope)),
};
