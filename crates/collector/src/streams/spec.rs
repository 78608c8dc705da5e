//! What a stream declares: one [`StreamSpec`] per `streams/<name>.rs`, everything the engine,
//! the planner, the permission check, the console and `export` need to know about it.
//!
//! Nothing outside a stream's own file decides by its name: they read its declaration.

use std::time::Duration;

use futures::future::BoxFuture;
use kandji_api::Priority;
use kandji_api::check::EndpointSpec;

use super::runtime::{RunReport, Scope, SourceRuntime, StreamError};
use crate::store::Table;

/// Runs a stream once (its driver, configured by the stream).
pub type RunFn =
    for<'a> fn(&'a SourceRuntime, &'a Scope) -> BoxFuture<'a, Result<RunReport, StreamError>>;

/// One stream, declared once.
pub struct StreamSpec {
    /// The stream's name, in the CLI, the config, the store and metrics. Never rename one.
    pub name: &'static str,
    /// The default interval between runs (fits the budget share at 10k devices).
    pub interval: Duration,
    /// Who goes first when the budget is tight.
    pub priority: Priority,
    /// The category its records are counted under (`inventory`, `security`, …).
    pub category: &'static str,
    /// Its place in a cycle's run order (lower first), and in result lists.
    pub rank: u8,
    /// Which phase of a cycle it runs in.
    pub stage: Stage,
    /// A table another stream fills that this one reads: in a source's first cycle it waits
    /// for that stream's first run, and in every cycle it runs in the last phase.
    pub needs: Option<Table>,
    /// Where its records live (what `export` reads).
    pub output: Output,
    /// The endpoints the token must be able to read (the permission check probes them).
    pub probes: &'static [EndpointSpec],
    /// The other endpoints a run calls (not probed: an export would be created, or an id is
    /// needed). With `probes`, this is the stream's permission list
    /// ([`super::permissions`], `kandji-collector permissions`, the README's table).
    pub calls: &'static [EndpointSpec],
    /// Requests one run costs, for the planner.
    pub cost: fn(&Cost) -> f64,
    /// The shared loop it runs on (and so the checkpoint it keeps).
    pub driver: Driver,
    /// Runs it once.
    pub run: RunFn,
}

impl std::fmt::Debug for StreamSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSpec")
            .field("name", &self.name)
            .field("driver", &self.driver)
            .finish_non_exhaustive()
    }
}

/// The phase of a cycle a stream runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// What filters resolve against (blueprints, tags): first, one after another, and never
    /// filtered themselves.
    Dimension,
    /// The device list events and inventory are scoped to: with the dimensions when filters
    /// are set (the scope must exist first), else with everything else.
    DeviceList,
    /// Everything else, at once (the budget orders their requests).
    Collect,
}

/// Where a stream's records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Rows of one inventory table.
    Table(Table),
    /// Events, under the stream's name.
    Events,
}

/// The five shared loops (`streams/drivers/`), one per shape of endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Full sweeps of a listed endpoint, page by page (devices, blueprints, tags, ADE, users).
    OffsetSweep,
    /// A cursor-paged event feed read from a high-water mark (audit, vulnerabilities).
    CursorEvents,
    /// A DRF-envelope event feed read from a high-water mark (threats, behavioral).
    EnvelopeEvents,
    /// Prism: full exports on a slow schedule, cursor deltas in between (details, apps).
    PrismSnapshot,
    /// One request per device that changed (compliance).
    PerDevice,
}

/// The fleet's size, from `/settings/licensing` or `/prism/count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSize {
    pub devices: u64,
    pub users: u64,
}

/// Assumptions behind the planner's estimate, kept explicit so the numbers can be explained.
#[derive(Debug, Clone, Copy)]
pub struct Assumptions {
    /// Audit events per hour (each page holds 500).
    pub audit_events_per_hour: u64,
    /// Fraction of devices that change per hour (drives compliance and Prism deltas).
    pub change_rate_per_hour: f64,
    /// Polls per Prism export before it is ready.
    pub export_polls: u64,
}

impl Default for Assumptions {
    fn default() -> Self {
        Assumptions {
            audit_events_per_hour: 500,
            change_rate_per_hour: 0.01,
            export_polls: 3,
        }
    }
}

/// What a stream's cost function is given: the fleet, the stream's interval, the planner's
/// assumptions.
#[derive(Debug, Clone, Copy)]
pub struct Cost<'a> {
    pub fleet: FleetSize,
    pub interval: Duration,
    pub assumptions: &'a Assumptions,
}

impl Cost<'_> {
    /// Pages of `per_page` for `items` items (at least one request).
    pub fn pages(items: f64, per_page: f64) -> f64 {
        (items / per_page).ceil().max(1.0)
    }

    pub fn devices(&self) -> f64 {
        self.fleet.devices as f64
    }

    pub fn users(&self) -> f64 {
        self.fleet.users as f64
    }

    /// The interval in hours.
    pub fn hours(&self) -> f64 {
        self.interval.as_secs_f64() / 3600.0
    }

    /// Devices that change within one interval.
    pub fn changed(&self) -> f64 {
        (self.devices() * self.assumptions.change_rate_per_hour * self.hours()).ceil()
    }

    /// Requests one Prism export costs: create, the polls, the final poll that succeeds.
    pub fn export(&self) -> f64 {
        2.0 + self.assumptions.export_polls as f64
    }

    /// The share of runs that take a full export when one is taken every `every`.
    pub fn full_share(&self, every: Duration) -> f64 {
        (self.interval.as_secs_f64() / every.as_secs_f64()).min(1.0)
    }
}
