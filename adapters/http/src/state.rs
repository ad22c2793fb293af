//! What every route needs: the use cases, readiness checks, the login limiter and metrics.

use std::sync::Arc;

use application::ports::{EventBus, FileStore, HealthCheck};
use application::{Accounts, Files, Messaging, Rooms};

use crate::limiter::LoginLimiter;
use crate::metrics::Metrics;
use crate::ws::SocketApp;

#[derive(Clone)]
pub struct AppState {
    pub accounts: Accounts,
    pub rooms: Rooms,
    pub messaging: Messaging,
    pub files: Files,
    /// Every adapter in use, checked by `/health/ready`.
    pub health: Arc<Vec<Arc<dyn HealthCheck>>>,
    pub limiter: Arc<LoginLimiter>,
    pub metrics: Arc<Metrics>,
    /// Presence events go straight to the bus; everything else goes through the use cases.
    pub bus: Arc<dyn EventBus>,
    pub socket: SocketApp,
    /// The bytes behind the file app's internal routes.
    pub file_store: Arc<dyn FileStore>,
    /// `CHAT_INTERNAL_TOKEN`; without it the internal routes do not exist.
    pub internal_token: Option<secrecy::SecretString>,
}
