//! What the REST routes need: the use cases, readiness checks, the login limiter and metrics.

use std::sync::Arc;

use application::ports::HealthCheck;
use application::{Accounts, Files, Messaging, Presence, Rooms, Search};

use crate::limiter::LoginLimiter;
use application::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub accounts: Accounts,
    pub rooms: Rooms,
    pub messaging: Messaging,
    pub presence: Presence,
    pub files: Files,
    pub search: Search,
    /// Every adapter in use, checked by `/health/ready`.
    pub health: Arc<Vec<Arc<dyn HealthCheck>>>,
    pub limiter: Arc<LoginLimiter>,
    pub metrics: Arc<Metrics>,
    /// When set, `/metrics` answers only a bearer of this token.
    pub metrics_token: Option<secrecy::SecretString>,
}
