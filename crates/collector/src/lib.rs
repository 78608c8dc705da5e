//! kandji-collector: collects a Kandji/Iru tenant's fleet data into an embedded store.
//!
//! See ARCHITECTURE.md at the repository root for the map of modules and the flow of a record.

pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod health;
pub mod hygiene;
pub mod internal_events;
pub mod outputs;
pub mod planner;
pub mod shutdown;
pub mod store;
pub mod streams;
pub mod web;
