//! Account routes: register, login, refresh, logout, and who am I.

use application::accounts::{LoginError, LookupError, Registration, UserRef};
use domain::{Password, PasswordError, Username};
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use crate::bearer::BearerAuth;
use crate::client_addr::ClientAddr;
use crate::declared::{Declared, Id, PasswordRule, UsernameRule};
use crate::dto::{NoContent, TokenPairDto, UserDto};
use crate::error::status::{
    AUTHED, BAD_REQUEST, CONFLICT, JSON_BODY, NOT_FOUND, TOO_MANY_REQUESTS, UNAUTHORIZED, UNAVAILABLE,
};
use crate::error::{status::ANY, ApiError, Failure, Problem};
use crate::state::AppState;
use crate::strict::StrictJson;
use application::ports::UserSettings;
use poem::web::Data;

#[derive(Tags)]
enum Tag {
    /// Accounts and tokens.
    Auth,
}

#[derive(Debug, Object, serde::Deserialize)]
pub struct Credentials {
    /// 2 to 32 letters or digits of any script, starting with a letter.
    pub username: Declared<UsernameRule>,
    /// 8 to 128 characters; common passwords and the username are refused.
    pub password: Declared<PasswordRule>,
}

#[derive(Debug, Object, serde::Deserialize)]
pub struct RefreshRequest {
    #[oai(validator(max_length = 256))]
    pub refresh_token: String,
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<UserDto>),
}

#[derive(ApiResponse)]
pub enum TokenResponse {
    /// A new access and refresh token pair.
    #[oai(status = 200)]
    Ok(Json<TokenPairDto>),
}

#[derive(ApiResponse)]
pub enum MeResponse {
    /// The signed-in user.
    #[oai(status = 200)]
    Ok(Json<UserDto>),
}

/// How the service treats you.
#[derive(Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct SettingsDto {
    /// Whether the other members of your rooms are told how far you have read (`read` events).
    pub send_read_receipts: bool,
}

#[derive(ApiResponse)]
pub enum SettingsResponse {
    /// Your settings.
    #[oai(status = 200)]
    Ok(Json<SettingsDto>),
}

#[derive(ApiResponse)]
pub enum UserResponse {
    /// The user's public profile.
    #[oai(status = 200)]
    Ok(Json<UserDto>),
}

/// Users whose name matches; at most one, since names are unique regardless of case.
#[derive(Debug, Object, serde::Serialize)]
pub struct UserList {
    pub items: Vec<UserDto>,
}

#[derive(ApiResponse)]
pub enum UsersResponse {
    /// The users found, possibly none.
    #[oai(status = 200)]
    Ok(Json<UserList>),
}

pub struct AccountsApi;

#[OpenApi(tag = "Tag::Auth")]
impl AccountsApi {
    /// Create an account
    ///
    /// Sign-ups are limited per client address (`CHAT_REGISTRATIONS_PER_ADDRESS` an hour).
    #[oai(path = "/auth/register", method = "post")]
    async fn register(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: StrictJson<Credentials>,
    ) -> Result<RegisterResponse, Failure<{ ANY | JSON_BODY | CONFLICT | TOO_MANY_REQUESTS | UNAVAILABLE }>> {
        state.limiter.begin_registration(client_address(req)).map_err(|wait| {
            tracing::info!(retry_after = wait, "sign-up refused: too many from this client");
            ApiError::rate_limited(wait)
        })?;
        let username = Username::new(&body.username)
            .map_err(|e| ApiError::bad_request("invalid_username", format!("username: {e}")))?;
        let password = Password::new(&body.password, &username)
            .map_err(|e: PasswordError| ApiError::bad_request("weak_password", format!("password: {e}")))?;
        let user = state.accounts.register(Registration { username, password }).await?;
        Ok(RegisterResponse::Created(Json(UserDto::from(&user))))
    }

    /// Log in with username and password
    ///
    /// Unknown users and wrong passwords get the same answer. Failures are rate limited per
    /// (username, client address) and per client address, and counted before the check.
    #[oai(path = "/auth/login", method = "post")]
    async fn login(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: StrictJson<Credentials>,
    ) -> Result<TokenResponse, Failure<{ ANY | JSON_BODY | UNAUTHORIZED | TOO_MANY_REQUESTS | UNAVAILABLE }>> {
        // Counted before the check, so parallel guesses cannot all pass it.
        let attempt = state.limiter.begin_login(&body.username, client_address(req)).map_err(|wait| {
            tracing::info!(retry_after = wait, "login refused: too many failures");
            ApiError::rate_limited(wait)
        })?;
        match state.accounts.login(&body.username, &body.password).await {
            Ok(pair) => {
                attempt.succeeded();
                Ok(TokenResponse::Ok(Json(pair.into())))
            }
            Err(LoginError::InvalidCredentials) => Err(ApiError::from(LoginError::InvalidCredentials).into()),
            Err(e) => {
                attempt.not_counted();
                Err(ApiError::from(e).into())
            }
        }
    }

    /// Trade a refresh token for a new pair
    ///
    /// Each refresh token works once. Presenting a used one revokes its whole session.
    #[oai(path = "/auth/refresh", method = "post")]
    async fn refresh(
        &self,
        state: Data<&AppState>,
        body: StrictJson<RefreshRequest>,
    ) -> Result<TokenResponse, Failure<{ ANY | JSON_BODY | UNAUTHORIZED }>> {
        let pair = state.accounts.refresh(&body.refresh_token).await?;
        Ok(TokenResponse::Ok(Json(pair.into())))
    }

    /// Log out
    ///
    /// Revokes the session's refresh tokens and closes the user's live sockets.
    #[oai(path = "/auth/logout", method = "post")]
    async fn logout(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<NoContent, Failure<AUTHED>> {
        state.accounts.logout(&auth.0).await?;
        Ok(NoContent::NoContent)
    }

    /// The signed-in user
    #[oai(path = "/users/me", method = "get")]
    async fn me(&self, auth: BearerAuth) -> Result<MeResponse, Failure<AUTHED>> {
        // Never fails here: the bearer check before it answers 401.
        Ok(MeResponse::Ok(Json(UserDto::from(&auth.0.user))))
    }

    /// Your settings
    #[oai(path = "/users/me/settings", method = "get")]
    async fn settings(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<SettingsResponse, Failure<AUTHED>> {
        let settings = state.accounts.settings(&auth.0.user).await?;
        Ok(SettingsResponse::Ok(Json(SettingsDto { send_read_receipts: settings.send_read_receipts })))
    }

    /// Replace your settings
    #[oai(path = "/users/me/settings", method = "put")]
    async fn update_settings(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: StrictJson<SettingsDto>,
    ) -> Result<SettingsResponse, Failure<{ AUTHED | JSON_BODY }>> {
        let wanted = UserSettings { send_read_receipts: body.send_read_receipts };
        let settings = state.accounts.update_settings(&auth.0.user, wanted).await?;
        Ok(SettingsResponse::Ok(Json(SettingsDto { send_read_receipts: settings.send_read_receipts })))
    }

    /// Find a user by name
    ///
    /// Exact match, regardless of case: how a client turns a name into an id, for an invite or
    /// a mention. Answers an empty list when nobody has the name.
    #[oai(path = "/users", method = "get")]
    async fn find(
        &self,
        state: Data<&AppState>,
        _auth: BearerAuth,
        /// The username to look for.
        #[oai(validator(max_length = 32))]
        username: Query<String>,
    ) -> Result<UsersResponse, Failure<{ AUTHED | BAD_REQUEST }>> {
        let Ok(name) = Username::new(&username) else {
            return Ok(UsersResponse::Ok(Json(UserList { items: Vec::new() })));
        };
        let items = match state.accounts.lookup(&UserRef::Name(name)).await {
            Ok(user) => vec![UserDto::from(&user)],
            Err(LookupError::NotFound) => Vec::new(),
            Err(e) => return Err(ApiError::from(e).into()),
        };
        Ok(UsersResponse::Ok(Json(UserList { items })))
    }

    /// A user's public profile
    #[oai(path = "/users/:user_id", method = "get")]
    async fn profile(
        &self,
        state: Data<&AppState>,
        _auth: BearerAuth,
        user_id: Path<Id>,
    ) -> Result<UserResponse, Failure<{ AUTHED | NOT_FOUND }>> {
        let id = user_id.parse().map_err(|_| Problem::from(LookupError::NotFound))?;
        let user = state.accounts.lookup(&UserRef::Id(id)).await?;
        Ok(UserResponse::Ok(Json(UserDto::from(&user))))
    }
}

/// The client's address as the outer layer resolved it: the peer, or what a trusted proxy forwarded.
fn client_address(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions().get::<ClientAddr>().and_then(|c| c.0)
}
