//! A typed, lenient, budget-aware client for the Kandji / Iru Endpoint Management read API.
//!
//! See the crate README for an overview. Entry points:
//! - [`ApiBase::parse`] to validate a tenant address (the SSRF guard),
//! - [`Budget`] (one per tenant, shared via `Arc` by every client of that tenant),
//! - [`KandjiClient::new`] and its endpoint methods ([`api`]), which return page streams
//!   ([`paginate::PageStream`]) that can be resumed from a stored [`Position`],
//! - [`export`] for the Prism export cycle, [`check`] for the permission matrix,
//! - [`KandjiError`], the single error type.
#![warn(missing_docs)]

pub mod api;
pub mod budget;
pub mod check;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod events;
pub mod export;
pub mod models;
pub mod paginate;
pub mod retry;
pub mod time;

pub use budget::{Budget, BudgetConfig, BudgetState, Priority};
pub use client::{ApiRequest, ApiResponse, ClientConfig, ClientStats, KandjiClient, Query};
pub use endpoint::{ApiBase, Region};
pub use error::{KandjiError, PaginationProblem};
pub use paginate::{Page, PageStream, Position};
pub use secrecy::SecretString;
pub use time::parse_timestamp;
