//! End-to-end tests over real sockets: one test binary, one module per feature.

// Scenarios run once per shape through `on_both_shapes!`, so clippy does not see them as tests.
#![allow(clippy::unwrap_used)]

mod auth;
mod backpressure;
mod cors;
mod dms;
mod edits;
mod files;
mod history;
mod metrics;
mod openapi;
mod proxy;
mod reads;
mod resilience;
mod restart;
mod resume;
mod rooms;
mod routing;
mod search;
mod socket;
mod web;
