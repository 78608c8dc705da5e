//! Stream states and the troubleshooting hint for each error type.

use kandji_api::KandjiError;

use crate::store::StoreError;

/// Why a stream run failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Api(#[from] KandjiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Data(String),
    /// A filter names a blueprint or tag this tenant does not have.
    #[error("filters: no {what} with id or name {name:?} in this tenant")]
    UnknownFilter { what: &'static str, name: String },
    /// The planner refused the source's schedule: it would overspend the budget share.
    #[error("the planner refused this source: {0}")]
    PlanRefused(String),
    /// The API refused the walk's cursor again and again (it expires between pages).
    #[error(
        "{endpoint}: the cursor keeps expiring (refused {restarts} times in this run: {message}); \
         what was committed is kept and the next run resumes from there"
    )]
    CursorExpiring {
        endpoint: String,
        restarts: u32,
        message: String,
    },
    #[error("stopped by shutdown")]
    Shutdown,
}

impl StreamError {
    /// A stable, low-cardinality name for metrics, status and the console.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamError::Api(e) => e.kind(),
            StreamError::Store(e) => e.kind(),
            StreamError::Data(_) => "data",
            StreamError::UnknownFilter { .. } => "unknown_filter",
            StreamError::PlanRefused(_) => "plan_refused",
            StreamError::CursorExpiring { .. } => "cursor_expiring",
            StreamError::Shutdown => "shutdown",
        }
    }

    pub fn endpoint(&self) -> Option<String> {
        match self {
            StreamError::Api(e) => e.endpoint().map(str::to_string),
            StreamError::CursorExpiring { endpoint, .. } => Some(endpoint.clone()),
            _ => None,
        }
    }

    /// The state a stream shows after this error.
    pub fn state(&self) -> State {
        match self {
            StreamError::Api(KandjiError::Unauthorized { .. }) => State::AuthError,
            StreamError::Api(KandjiError::PermissionDenied { .. }) => State::MissingPermission,
            // The first thing to fix is the one the user can: the permission (the hint says
            // the licence may be the cause).
            StreamError::Api(KandjiError::NotLicensedOrDenied { .. }) => State::MissingPermission,
            StreamError::Api(KandjiError::NotLicensed { .. }) => State::NotLicensed,
            StreamError::Api(KandjiError::RateLimited { .. }) => State::BackingOff,
            _ => State::Failing,
        }
    }
}

/// What the status page shows for a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Healthy,
    /// Collected, but not all of it: the status names what is missing and why.
    Degraded,
    Syncing,
    BackingOff,
    AuthError,
    MissingPermission,
    NotLicensed,
    Failing,
    Disabled,
    Pending,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Degraded => "degraded",
            State::Syncing => "syncing",
            State::BackingOff => "backing_off",
            State::AuthError => "auth_error",
            State::MissingPermission => "missing_permission",
            State::NotLicensed => "not_licensed",
            State::Failing => "failing",
            State::Disabled => "disabled",
            State::Pending => "pending",
        }
    }
}

/// The troubleshooting hint for an error kind, as the status page and `status` show it.
pub fn hint(kind: &str, endpoint: Option<&str>) -> String {
    let ep = endpoint.unwrap_or("this endpoint");
    match kind {
        "unauthorized" => "The API token is invalid, revoked or expired. Create a new token in \
            Kandji → Access → API token (it is shown only once) and rotate it here. Tokens are \
            also deleted when the admin who created them is removed."
            .to_string(),
        "permission_denied" => format!(
            "The token lacks the permission for {ep}. In Kandji → Access → API token, tick \
             '{}' for this token, or this stream stays empty.",
            super::permission_name(ep)
        ),
        "not_licensed_or_denied" => format!(
            "The API refused {ep} with a 403 that does not say why: the token lacks '{}', or \
             the tenant does not have the feature (EDR or Vulnerability Management). Tick the \
             permission in Kandji → Access → API token; if it is ticked, disable the stream or \
             enable the feature.",
            super::permission_name(ep)
        ),
        "not_licensed" => "This tenant does not have the feature (EDR or Vulnerability \
            Management) this stream reads. Disable the stream, or enable the feature in Kandji."
            .to_string(),
        "rate_limited" => "The tenant's shared budget of 10,000 requests/hour is spent (other \
            tools share it). The collector backs off until the window resets; lower this \
            source's budget share or lengthen intervals if it persists."
            .to_string(),
        "no_route" | "not_found" => "The API answered 'not found': check the endpoint (tenant \
            subdomain and region US/EU)."
            .to_string(),
        "unreachable" => "The collector could not connect to the API host at all (connection \
            refused, no DNS answer, or TLS failed; the error names the host and the cause). Check \
            the endpoint's spelling and region, DNS and any proxy or firewall between the \
            collector and the host. The source's other streams skip this cycle; the next one \
            tries again, and nothing is lost."
            .to_string(),
        "server" | "timeout" | "transport" => "Kandji's API or the network failed repeatedly; the \
            stream retries on its next run. Nothing is lost: it resumes from its checkpoint."
            .to_string(),
        "decode" | "pagination" | "data" => "The API returned data the collector could not use \
            (incomplete or inconsistent pages). The stream stopped rather than record a partial \
            result; it retries on its next run. If it persists, report it with the log line."
            .to_string(),
        "unknown_filter" => "A filter of this source names a blueprint or tag the tenant does \
            not have (the error names it; names and ids are both accepted, and names must match \
            exactly). Nothing is collected rather than everything: fix the name in the source's \
            filters, or remove it."
            .to_string(),
        "plan_refused" => "This source's schedules would spend more requests per hour than its \
            share of the tenant's 10,000 (the error gives the numbers). Lengthen the intervals of \
            the busiest streams, disable some, or raise the source's budget share."
            .to_string(),
        "cursor_expiring" => format!(
            "The API refused {ep}'s page cursor on every restart in this run (a cursor that \
             expires between pages, often when the tenant is slow or busy). The stream stopped \
             after a few restarts instead of re-reading forever; what it committed is kept, and \
             the next run resumes from its checkpoint. If it persists, report it with the log \
             line."
        ),
        "category_unavailable" => "The tenant refused one or more Prism categories (the \
            message names them and the API's answer); the stream's other categories are \
            collected. A tenant without the feature behind a category answers so. The \
            collector asks again every 24 hours; nothing else is needed unless the category \
            should exist, in which case check the tenant's licence."
            .to_string(),
        "export_failed" | "export_timeout" | "csv" => "A Prism export failed or took too long; \
            the next run starts a new export. Large fleets may need a longer export deadline."
            .to_string(),
        "store_full" => "The disk holding the store is full. Free space there: the stream \
            retries on its next run, and nothing committed is lost (the page in flight is \
            fetched again)."
            .to_string(),
        "store_read_only" => "The store cannot be written (a read-only file, directory or \
            file system). Make the data directory writable for the collector's user, then \
            restart it."
            .to_string(),
        "store_corrupt" => "The store file is corrupt. Stop the collector, restore a backup \
            (`kandji-collector backup DIR` makes one), or move the file away and collect \
            again."
            .to_string(),
        "store_fenced" => "Another replica took this source (this one was paused or cut off \
            from the database past its lease): its commit was refused and nothing was written. \
            The source is collected by the replica that holds it now; nothing is needed."
            .to_string(),
        "store_postgres" => "The PostgreSQL store failed (the error names the server). Check \
            that it answers and that the collector's role may write its schema; the stream \
            retries on its next run, and nothing committed is lost."
            .to_string(),
        "store" | "store_locked" => {
            "The local store failed; the error names the file. Check the data directory's \
             disk and permissions."
                .to_string()
        }
        _ => "See the last error; the stream retries on its next run.".to_string(),
    }
}
