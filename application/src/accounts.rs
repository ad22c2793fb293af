//! Accounts use cases: register, log in, rotate refresh tokens, log out, authenticate.

use std::collections::HashMap;
use std::sync::Arc;

use domain::{Password, Timestamp, User, UserId, Username};
use parking_lot::RwLock;
use secrecy::SecretString;

use crate::ports::{
    AccessClaims, Clock, Consumed, CreateUserError, EventBus, HashError, IdGenerator, PasswordHasher, RefreshRecord,
    RefreshTokenStore, Revocation, RoomEvent, SessionEndReason, SessionId, StoredUser, TokenError, TokenService,
    UserRepository, UserSettings,
};

/// A valid registration: both fields passed the domain rules.
#[derive(Debug)]
pub struct Registration {
    pub username: Username,
    pub password: Password,
}

/// What a login or a refresh hands the client.
#[derive(Debug)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: SecretString,
    pub expires_in_secs: u64,
}

/// A caller whose access token checked out and whose account still exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: User,
    pub claims: AccessClaims,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("username is already taken")]
    UsernameTaken,
    #[error("the server is busy checking passwords; retry in a moment")]
    Busy,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("the server is busy checking passwords; retry in a moment")]
    Busy,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is invalid or expired")]
    Invalid,
    #[error("the refresh token was already used; the session has been revoked")]
    Reused,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the access token has expired")]
    Expired,
    #[error("the session was logged out or revoked")]
    Revoked,
    #[error("the access token is invalid")]
    Invalid,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Names a user by id or by username, as a client may know either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Id(UserId),
    Name(Username),
}

impl UserRef {
    /// The request field a client names a user by this way.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Id(_) => "user_id",
            Self::Name(_) => "username",
        }
    }
}

/// The user `user` names, if any.
pub(crate) async fn find_user(users: &dyn UserRepository, user: &UserRef) -> anyhow::Result<Option<User>> {
    Ok(match user {
        UserRef::Id(id) => users.by_id(*id).await?,
        UserRef::Name(name) => users.by_username(name).await?.map(|stored| stored.user),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no such user")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// The sessions this node knows were revoked within one access-token lifetime, each with when.
/// Older ones need no entry: every access token issued before them has expired.
#[derive(Default)]
struct RevokedSessions(RwLock<HashMap<SessionId, Timestamp>>);

impl RevokedSessions {
    fn contains(&self, session: SessionId) -> bool {
        self.0.read().contains_key(&session)
    }

    fn insert(&self, session: SessionId, revoked_at: Timestamp) {
        self.0.write().entry(session).or_insert(revoked_at);
    }

    /// Adds what the store knows and forgets what no access token can need any more. Merged, not
    /// replaced: a revocation noted while the store was being read must not drop out.
    fn merge(&self, known: Vec<Revocation>, since: Timestamp) -> usize {
        let mut sessions = self.0.write();
        for revocation in known {
            sessions.entry(revocation.session).or_insert(revocation.revoked_at);
        }
        sessions.retain(|_, revoked_at| *revoked_at >= since);
        sessions.len()
    }
}

#[derive(Clone)]
pub struct Accounts {
    users: Arc<dyn UserRepository>,
    refresh: Arc<dyn RefreshTokenStore>,
    hasher: Arc<dyn PasswordHasher>,
    tokens: Arc<dyn TokenService>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    revoked: Arc<RevokedSessions>,
}

impl Accounts {
    pub fn new(
        users: Arc<dyn UserRepository>,
        refresh: Arc<dyn RefreshTokenStore>,
        hasher: Arc<dyn PasswordHasher>,
        tokens: Arc<dyn TokenService>,
        bus: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        Self { users, refresh, hasher, tokens, bus, clock, ids, revoked: Arc::default() }
    }

    /// # Errors
    /// `UsernameTaken` when the name is in use.
    pub async fn register(&self, registration: Registration) -> Result<User, RegisterError> {
        let password_hash = self.hasher.hash(&registration.password).await.map_err(|e| match e {
            HashError::Busy => RegisterError::Busy,
            HashError::Unknown(e) => RegisterError::Unknown(e),
        })?;
        let user = User {
            id: domain::UserId::from_uuid(self.ids.new_id()),
            username: registration.username,
            created_at: self.clock.now(),
        };
        let stored = StoredUser { user: user.clone(), password_hash };
        match self.users.create(&stored).await {
            Ok(()) => Ok(user),
            Err(CreateUserError::Duplicate) => Err(RegisterError::UsernameTaken),
            Err(CreateUserError::Unknown(e)) => Err(RegisterError::Unknown(e)),
        }
    }

    /// Unknown users and wrong passwords get the same answer and take the same time.
    ///
    /// # Errors
    /// `InvalidCredentials` for any mismatch.
    pub async fn login(&self, username: &str, password: &str) -> Result<TokenPair, LoginError> {
        let stored = match Username::new(username) {
            Ok(name) => self.users.by_username(&name).await?,
            Err(_) => None,
        };
        let hash = stored.as_ref().map(|s| s.password_hash.clone());
        let matches = self.hasher.verify(password, hash).await.map_err(|e| match e {
            HashError::Busy => LoginError::Busy,
            HashError::Unknown(e) => LoginError::Unknown(e),
        })?;
        match stored {
            Some(stored) if matches => {
                let session = SessionId(self.ids.new_id());
                Ok(self.issue_pair(&stored.user, session).await?)
            }
            _ => Err(LoginError::InvalidCredentials),
        }
    }

    /// Trades a refresh token for a new pair; each refresh token works once.
    ///
    /// # Errors
    /// `Reused` when the token was used before (the whole session is revoked), `Invalid` when it
    /// is unknown, revoked, expired or its user is gone.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, RefreshError> {
        let hash = self.tokens.hash_refresh(refresh_token);
        match self.refresh.consume(&hash).await? {
            Consumed::Invalid => Err(RefreshError::Invalid),
            Consumed::Reused(record) => {
                tracing::warn!(user_id = %record.user_id, "refresh token reused; session revoked");
                self.end_session(record.user_id, record.session, SessionEndReason::TokenReused).await?;
                Err(RefreshError::Reused)
            }
            Consumed::Fresh(record) => {
                if record.expires_at <= self.clock.now() {
                    return Err(RefreshError::Invalid);
                }
                let user = self.users.by_id(record.user_id).await?.ok_or(RefreshError::Invalid)?;
                Ok(self.issue_pair(&user, record.session).await?)
            }
        }
    }

    /// Revokes the caller's session: its refresh tokens at once, its access tokens on every
    /// node, and its live sockets everywhere. The user's other sessions stay.
    ///
    /// # Errors
    /// Only infrastructure failures.
    pub async fn logout(&self, caller: &Authenticated) -> Result<(), LogoutError> {
        self.end_session(caller.user.id, caller.claims.session, SessionEndReason::LoggedOut).await?;
        Ok(())
    }

    /// Checks an access token, that its session was not revoked, and that its user still exists.
    ///
    /// # Errors
    /// `Expired`, `Revoked` or `Invalid` for a token that does not check out.
    pub async fn authenticate(&self, access_token: &str) -> Result<Authenticated, AuthError> {
        let claims = self.tokens.verify_access(access_token).map_err(|e| match e {
            TokenError::Expired => AuthError::Expired,
            TokenError::Invalid(_) => AuthError::Invalid,
        })?;
        if self.revoked.contains(claims.session) {
            return Err(AuthError::Revoked);
        }
        let user = self.users.by_id(claims.user_id).await?.ok_or(AuthError::Invalid)?;
        Ok(Authenticated { user, claims })
    }

    /// A user's public profile, by id or by name (names match regardless of case).
    ///
    /// # Errors
    /// `NotFound` when no such user exists.
    pub async fn lookup(&self, user: &UserRef) -> Result<User, LookupError> {
        find_user(self.users.as_ref(), user).await?.ok_or(LookupError::NotFound)
    }

    /// The caller's settings.
    ///
    /// # Errors
    /// Only infrastructure failures.
    pub async fn settings(&self, user: &User) -> anyhow::Result<UserSettings> {
        self.users.settings(user.id).await
    }

    /// Replaces the caller's settings and returns them as stored.
    ///
    /// # Errors
    /// Only infrastructure failures.
    pub async fn update_settings(&self, user: &User, settings: UserSettings) -> anyhow::Result<UserSettings> {
        anyhow::ensure!(self.users.update_settings(user.id, &settings).await?, "user {} is gone", user.id);
        Ok(settings)
    }

    /// Notes a session another node ended, as its bus event announced.
    pub fn session_ended_elsewhere(&self, session: SessionId) {
        self.revoked.insert(session, self.clock.now());
    }

    /// Reads the revocations of the last access-token lifetime from the store, for those whose
    /// bus event this node missed, and forgets older ones; returns how many the node now holds.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn reload_revocations(&self) -> anyhow::Result<usize> {
        let since = self.clock.now() - self.tokens.access_ttl();
        let known = self.refresh.revoked_since(since).await?;
        Ok(self.revoked.merge(known, since))
    }

    /// Deletes expired refresh tokens and revocations; returns how many went.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn purge_expired_sessions(&self) -> anyhow::Result<u64> {
        self.refresh.purge_expired(self.clock.now()).await
    }

    /// Revokes `session` in the store (for every node), here at once, then tells every node to
    /// refuse it and close its sockets.
    async fn end_session(&self, user_id: UserId, session: SessionId, reason: SessionEndReason) -> anyhow::Result<()> {
        let now = self.clock.now();
        // Kept as long as any refresh token of the session can live, so none comes back.
        let revocation = Revocation { session, revoked_at: now, expires_at: now + self.tokens.refresh_ttl() };
        self.refresh.revoke_session(&revocation).await?;
        self.revoked.insert(session, now);
        self.bus.publish(RoomEvent::SessionEnded { user_id, session, reason }).await
    }

    async fn issue_pair(&self, user: &User, session: SessionId) -> anyhow::Result<TokenPair> {
        let now = self.clock.now();
        let access = self.tokens.issue_access(user.id, session, now)?;
        let (refresh_token, hash) = self.tokens.new_refresh();
        let record = RefreshRecord {
            hash,
            user_id: user.id,
            session,
            created_at: now,
            expires_at: now + self.tokens.refresh_ttl(),
        };
        self.refresh.insert(&record).await?;
        Ok(TokenPair { access_token: access.token, refresh_token, expires_in_secs: access.expires_in_secs })
    }
}
