//! Bearer authentication: the OpenAPI security scheme and token checks shared by every route.

use application::accounts::Authenticated;
use application::Accounts;
use poem::Request;
use poem::RequestBody;
use poem_openapi::auth::Bearer;
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme};

use crate::error::ApiError;
use crate::state::AppState;

/// A JWT access token from `POST /auth/login`, sent as `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Authenticated);

/// The access token in the `access_token` query parameter, for browsers, which cannot set headers
/// on `<img>` or WebSocket requests. Declared for the spec; [`token_from`] reads it.
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "access_token", key_in = "query")]
#[expect(dead_code, reason = "never extracted: the file routes check the token with `caller`")]
pub struct QueryToken(poem_openapi::auth::ApiKey);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Authenticated> {
    authenticate(accounts(req)?, &bearer.token).await.map_err(Into::into)
}

/// The use case that checks tokens, from the request's application state.
fn accounts(req: &Request) -> poem::Result<&Accounts> {
    let state = req.data::<AppState>().ok_or_else(|| {
        poem::Error::from_string("application state missing", poem::http::StatusCode::INTERNAL_SERVER_ERROR)
    })?;
    Ok(&state.accounts)
}

/// The caller of a file route: the bearer header, or `access_token` in the query, since a browser
/// cannot set headers on `<img>` requests.
pub struct FileAuth(pub Authenticated);

impl<'a> ApiExtractor<'a> for FileAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        BearerAuth::register(registry);
        QueryToken::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        [BearerAuth::security_schemes(), QueryToken::security_schemes()].concat()
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        Ok(Self(caller(req, accounts(req)?).await?))
    }
}

/// Checks a raw access token, from a header or the `access_token` query parameter.
pub async fn authenticate(accounts: &Accounts, token: &str) -> Result<Authenticated, ApiError> {
    Ok(accounts.authenticate(token).await?)
}

/// The caller of a route outside the OpenAPI scheme (files, the socket), by `token_from`.
pub async fn caller(req: &Request, accounts: &Accounts) -> Result<Authenticated, ApiError> {
    let token =
        token_from(req).ok_or_else(|| ApiError::unauthorized("unauthorized", "a valid access token is required"))?;
    authenticate(accounts, &token).await
}

/// The access token of a request: the bearer header, else the `access_token` query parameter
/// (for browsers, which cannot set headers on WebSocket or `<img>` requests).
pub fn token_from(req: &Request) -> Option<String> {
    bearer_header(req).map(str::to_owned).or_else(|| req.params::<TokenQuery>().ok()?.access_token)
}

/// The credentials of `Authorization: Bearer <credentials>`, trimmed.
fn bearer_header(req: &Request) -> Option<&str> {
    req.headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

/// Whether the request carries `Authorization: Bearer <secret>`: a service or metrics token.
/// Compared in time that depends only on the lengths, so it cannot be guessed byte by byte.
pub(crate) fn carries_secret(req: &Request, secret: &secrecy::SecretString) -> bool {
    use secrecy::ExposeSecret;
    same_secret(bearer_header(req).unwrap_or_default().as_bytes(), secret.expose_secret().as_bytes())
}

fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_secret_matches() {
        assert!(super::same_secret(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!super::same_secret(b"0123456789abcdeF", b"0123456789abcdef"));
        assert!(!super::same_secret(b"0123456789abcde", b"0123456789abcdef"));
        assert!(!super::same_secret(b"", b"0123456789abcdef"));
    }

    #[test]
    fn a_percent_encoded_access_token_in_the_query_is_decoded() {
        let req = Request::builder().uri_str("/ws?room=1&access_token=a%2Eb%2Fc").finish();

        assert_eq!(token_from(&req).as_deref(), Some("a.b/c"));
    }

    #[test]
    fn the_header_wins_over_the_query() {
        let req = Request::builder()
            .uri_str("/ws?access_token=from-query")
            .header(poem::http::header::AUTHORIZATION, "Bearer from-header")
            .finish();

        assert_eq!(token_from(&req).as_deref(), Some("from-header"));
    }
}
