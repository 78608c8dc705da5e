//! A typed, lenient, budget-aware client for the Kandji / Iru Endpoint Management read API.
//!
//! See the crate README for an overview. Entry points:
//! - [`ApiBase::parse`] to validate a tenant address (SSRF guard),
//! - [`Budget`] (one per tenant, shared via `Arc`),
//! - [`KandjiClient::new`] and its endpoint methods, which return page [`Stream`](futures::Stream)s,
//! - [`KandjiError`], the single error type.
#![warn(missing_docs)]

pub mod budget;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod retry;
pub mod time;

pub use budget::{Budget, BudgetConfig, BudgetState, Priority};
pub use client::{ApiRequest, ApiResponse, ClientConfig, KandjiClient, Query};
pub use endpoint::{ApiBase, Region};
pub use error::{KandjiError, PaginationProblem};
pub use secrecy::SecretString;
pub use time::parse_timestamp;
