//! End-to-end tests over real sockets: one test binary, one module per feature.

mod auth;
mod files;
mod history;
mod openapi;
mod restart;
mod rooms;
mod socket;
