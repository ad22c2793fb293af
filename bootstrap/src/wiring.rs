//! Wiring: the signing secret, the use cases over the chosen adapters, and the socket settings.

use std::sync::Arc;

use adapter_http::WsConfig;
use adapter_security::{Argon2Hasher, HashPool, JwtConfig, JwtTokenService, SystemClock, UuidV7Ids};
use application::archive::PurgePolicy;
use application::files::FileLimits;
use application::membership::{CacheLimits, MembershipCache};
use application::ports::{Clock, IdGenerator};
use application::{Accounts, Archiver, Files, Messaging, Presence, Rooms, Search};
use domain::{MemberLimit, RetentionPolicy};
use secrecy::SecretString;

use crate::backends::Backends;
use crate::config::Config;
use crate::secret;

/// Every use case, each over the same adapters.
pub(crate) struct UseCases {
    pub accounts: Accounts,
    pub rooms: Rooms,
    pub files: Files,
    pub messaging: Messaging,
    pub presence: Presence,
    pub archiver: Archiver,
    pub search: Search,
    /// Shared by `rooms`, which clears it, and `messaging`, which reads it; fed by the bus.
    pub membership: MembershipCache,
}

/// The configured JWT secret; embedded, one generated once and kept in the data directory.
///
/// # Errors
/// A shared deployment without `CHAT_JWT_SECRET`, or an unreadable stored secret.
pub(crate) fn jwt_secret(config: &Config) -> anyhow::Result<SecretString> {
    match &config.jwt_secret {
        Some(secret) => Ok(secret.clone()),
        None if config.redis_url.is_none() => secret::load_or_create(&config.data_dir),
        None => {
            anyhow::bail!("CHAT_JWT_SECRET: required when the apps share Redis and MongoDB, so every node signs alike")
        }
    }
}

fn file_limits(config: &Config) -> FileLimits {
    FileLimits {
        image_max: config.image_max_bytes,
        file_max: config.file_max_bytes,
        user_quota: config.user_quota_bytes,
        quota_hold: config.quota_hold,
        unattached: config.unattached_file,
    }
}

fn hash_pool(config: &Config) -> HashPool {
    let default = HashPool::default();
    let threads = if config.password_hash_threads == 0 { default.threads } else { config.password_hash_threads };
    HashPool { threads, queue: config.password_hash_queue }
}

/// Builds every use case over `backends`.
///
/// # Errors
/// A setting the domain refuses, named by its variable.
pub(crate) fn use_cases(config: &Config, backends: &Backends, secret: SecretString) -> anyhow::Result<UseCases> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ids: Arc<dyn IdGenerator> = Arc::new(UuidV7Ids);
    let mut jwt = JwtConfig::new(secret, config.jwt_issuer.clone(), config.jwt_audience.clone());
    jwt.access_ttl = chrono::Duration::from_std(config.access_token_ttl)?;
    jwt.refresh_ttl = chrono::Duration::from_std(config.refresh_token_ttl)?;
    let tokens = Arc::new(JwtTokenService::new(jwt).map_err(|e| anyhow::anyhow!("CHAT_JWT_SECRET: {e}"))?);
    let retention = RetentionPolicy::new(
        chrono::Duration::days(config.retention_messages_days),
        chrono::Duration::days(config.retention_images_days),
        chrono::Duration::days(config.retention_files_days),
    )?;
    let member_limit = MemberLimit::new(config.room_member_limit)
        .ok_or_else(|| anyhow::anyhow!("CHAT_ROOM_MEMBER_LIMIT: expected at least 1"))?;

    let accounts = Accounts::new(
        backends.users.clone(),
        backends.refresh.clone(),
        Arc::new(Argon2Hasher::new(hash_pool(config))?),
        tokens,
        backends.bus.clone(),
        clock.clone(),
        ids.clone(),
    );
    let membership = MembershipCache::new(backends.rooms.clone(), clock.clone(), CacheLimits::default());
    let rooms = Rooms::new(
        backends.rooms.clone(),
        backends.users.clone(),
        backends.log.clone(),
        backends.bus.clone(),
        clock.clone(),
        ids.clone(),
        member_limit,
    )
    .with_archive(backends.archive.clone())
    .with_retention(retention)
    .with_membership_cache(membership.clone());
    let search = Search::new(backends.rooms.clone(), backends.archive.clone(), clock.clone()).with_retention(retention);
    let files = Files::new(
        backends.file_store.clone(),
        backends.catalog.clone(),
        backends.rooms.clone(),
        clock.clone(),
        ids.clone(),
        file_limits(config),
        retention,
    );
    let messaging = Messaging::new(
        backends.rooms.clone(),
        backends.log.clone(),
        backends.archive.clone(),
        backends.bus.clone(),
        files.clone(),
        clock.clone(),
        ids,
    )
    .with_retention(retention)
    .with_edit_window(config.message_edit_window)
    .with_membership_cache(membership.clone());
    let archiver = Archiver::new(
        backends.log.clone(),
        backends.archive.clone(),
        backends.file_store.clone(),
        backends.catalog.clone(),
        backends.rooms.clone(),
        clock,
        PurgePolicy { retention, batch: config.purge_batch },
    );
    let presence = Presence::new(backends.rooms.clone(), backends.presence.clone(), backends.bus.clone());
    Ok(UseCases { accounts, rooms, files, messaging, presence, archiver, search, membership })
}

/// The socket's limits from the configuration; a binary frame may carry the largest file.
pub(crate) fn socket_config(config: &Config) -> WsConfig {
    let limits = file_limits(config);
    WsConfig {
        allowed_origins: config.allowed_origins.clone(),
        max_connections_per_user: config.max_connections_per_user,
        rate_per_sec: config.ws_rate_per_sec,
        burst: config.ws_burst,
        write_timeout: config.ws_write_timeout,
        outbound_queue_bytes: config.ws_outbound_queue_bytes,
        reconcile_every: config.ws_reconcile_every,
        // Renewed three times per lapse, so one late renewal never makes a user look offline.
        presence_every: adapter_redis::PRESENCE_TTL / 3,
        max_binary_bytes: usize::try_from(limits.image_max.max(limits.file_max))
            .unwrap_or(usize::MAX)
            .saturating_add(8192),
        ..WsConfig::default()
    }
}
