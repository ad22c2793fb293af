//! HS256 JWT access tokens and opaque refresh tokens stored only as their SHA-256.

use anyhow::Context;
use application::ports::{AccessClaims, IssuedAccess, SessionId, TokenError, TokenHash, TokenService};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::DateTime;
use domain::{Timestamp, UserId};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::{rngs::OsRng, RngCore};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How tokens are signed and for how long they live.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The HMAC key; at least 32 bytes, as HS256 is only as strong as its key.
    pub secret: SecretString,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: chrono::Duration,
    pub refresh_ttl: chrono::Duration,
}

impl JwtConfig {
    /// A config with the default lifetimes: 15 minutes for access tokens, 30 days for refresh tokens.
    pub fn new(secret: SecretString, issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            secret,
            issuer: issuer.into(),
            audience: audience.into(),
            access_ttl: chrono::Duration::minutes(15),
            refresh_ttl: chrono::Duration::days(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtConfigError {
    #[error("the JWT secret must be at least {min} bytes long, got {actual}")]
    SecretTooShort { min: usize, actual: usize },
    #[error("token lifetimes must be positive")]
    NonPositiveTtl,
}

/// What an access token says. Every field is required, so a token missing one does not decode.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    /// The login session, so logout and refresh-token reuse can end it.
    sid: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    iss: String,
    aud: String,
    /// Makes every token unique, even two issued in the same second.
    jti: String,
}

pub struct JwtTokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl: chrono::Duration,
    refresh_ttl: chrono::Duration,
}

impl JwtTokenService {
    pub const MIN_SECRET_BYTES: usize = 32;
    /// Tolerated clock skew between the issuing and the verifying node.
    const LEEWAY_SECS: u64 = 5;

    /// # Errors
    /// When the secret is shorter than 32 bytes or a lifetime is not positive.
    pub fn new(config: JwtConfig) -> Result<Self, JwtConfigError> {
        let secret = config.secret.expose_secret().as_bytes();
        if secret.len() < Self::MIN_SECRET_BYTES {
            return Err(JwtConfigError::SecretTooShort { min: Self::MIN_SECRET_BYTES, actual: secret.len() });
        }
        if config.access_ttl <= chrono::Duration::zero() || config.refresh_ttl <= chrono::Duration::zero() {
            return Err(JwtConfigError::NonPositiveTtl);
        }
        // jsonwebtoken 10 picks its provider from crate features; installing ours explicitly keeps
        // signing working even if feature unification ever enables a second provider. An error only
        // means a provider is already installed, which is fine.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();

        // Pinning the one algorithm we issue refuses `none`, HS512 and key-confusion tricks alike.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.leeway = Self::LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);

        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: config.issuer,
            audience: config.audience,
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
        })
    }
}

fn invalid(reason: impl std::fmt::Display) -> TokenError {
    TokenError::Invalid(reason.to_string())
}

impl TokenService for JwtTokenService {
    fn issue_access(&self, user: UserId, session: SessionId, now: Timestamp) -> anyhow::Result<IssuedAccess> {
        let expires = now + self.access_ttl;
        let claims = Claims {
            sub: user.to_string(),
            sid: session.0.to_string(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: expires.timestamp(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .context("signing the access token")?;
        // Whole seconds, exactly what `verify_access` will read back from `exp`.
        let expires_at = DateTime::from_timestamp(claims.exp, 0).context("the expiry is out of range")?;
        Ok(IssuedAccess {
            token,
            expires_in_secs: u64::try_from(self.access_ttl.num_seconds()).unwrap_or_default(),
            expires_at,
        })
    }

    fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let claims = match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => data.claims,
            Err(error) if matches!(error.kind(), ErrorKind::ExpiredSignature) => return Err(TokenError::Expired),
            Err(error) => return Err(invalid(error)),
        };
        let user_id = claims.sub.parse::<UserId>().map_err(|_| invalid("sub is not a user id"))?;
        let session = claims.sid.parse::<uuid::Uuid>().map_err(|_| invalid("sid is not a session id"))?;
        let expires_at = DateTime::from_timestamp(claims.exp, 0).ok_or_else(|| invalid("exp is out of range"))?;
        Ok(AccessClaims { user_id, session: SessionId(session), expires_at })
    }

    fn new_refresh(&self) -> (SecretString, TokenHash) {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let hash = self.hash_refresh(&token);
        (SecretString::from(token), hash)
    }

    fn hash_refresh(&self, token: &str) -> TokenHash {
        // 256 random bits need no salt or slow hash: a fast digest cannot be brute-forced back.
        TokenHash(hex::encode(Sha256::digest(token.as_bytes())))
    }

    fn refresh_ttl(&self) -> chrono::Duration {
        self.refresh_ttl
    }

    fn access_ttl(&self) -> chrono::Duration {
        self.access_ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::{json, Value};

    const SECRET: &str = "an-hs256-test-secret-of-at-least-32-bytes";

    fn config(secret: &str) -> JwtConfig {
        JwtConfig::new(SecretString::from(secret.to_owned()), "chat", "chat-clients")
    }

    fn service() -> JwtTokenService {
        JwtTokenService::new(config(SECRET)).unwrap()
    }

    fn user() -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(42))
    }

    fn session() -> SessionId {
        SessionId(uuid::Uuid::from_u128(7))
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    /// Claims that would be accepted if properly signed.
    fn valid_claims() -> Value {
        let now = Utc::now().timestamp();
        json!({
            "sub": user().to_string(), "sid": session().0.to_string(), "iat": now, "nbf": now,
            "exp": now + 900, "iss": "chat", "aud": "chat-clients", "jti": "j-1",
        })
    }

    fn sign(algorithm: Algorithm, claims: &Value, secret: &str) -> String {
        jsonwebtoken::encode(&Header::new(algorithm), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn is_invalid(result: Result<AccessClaims, TokenError>) -> bool {
        matches!(result, Err(TokenError::Invalid(_)))
    }

    #[test]
    fn a_fresh_token_verifies_to_the_same_user_and_session() {
        // Arrange
        let tokens = service();

        // Act
        let issued = tokens.issue_access(user(), session(), Utc::now()).unwrap();
        let claims = tokens.verify_access(&issued.token).unwrap();

        // Assert
        assert_eq!(claims, AccessClaims { user_id: user(), session: session(), expires_at: issued.expires_at });
        assert_eq!(issued.expires_in_secs, 15 * 60);
    }

    #[test]
    fn an_issued_token_is_hs256_and_carries_every_claim() {
        let issued = service().issue_access(user(), session(), Utc::now()).unwrap();

        let parts: Vec<&str> = issued.token.split('.').collect();
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();

        assert_eq!(header["alg"], "HS256");
        for name in ["sub", "sid", "iat", "nbf", "exp", "iss", "aud", "jti"] {
            assert!(claims.get(name).is_some(), "missing {name}");
        }
    }

    #[test]
    fn two_tokens_issued_in_the_same_second_differ() {
        let tokens = service();
        let now = Utc::now();

        let first = tokens.issue_access(user(), session(), now).unwrap();
        let second = tokens.issue_access(user(), session(), now).unwrap();

        assert_ne!(first.token, second.token);
    }

    #[test]
    fn alg_none_is_refused_in_every_spelling() {
        let tokens = service();
        for alg in ["none", "None", "NONE", "nOnE"] {
            // Arrange: an unsigned token with otherwise perfect claims
            let forged = format!("{}.{}.", b64(&json!({"alg": alg, "typ": "JWT"})), b64(&valid_claims()));

            // Act
            let verified = tokens.verify_access(&forged);

            // Assert
            assert!(is_invalid(verified), "alg {alg} was not refused");
        }
    }

    #[test]
    fn a_tampered_signature_is_refused() {
        let tokens = service();
        let issued = tokens.issue_access(user(), session(), Utc::now()).unwrap();
        let (unsigned, signature) = issued.token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };

        let verified = tokens.verify_access(&format!("{unsigned}.{flipped}{}", &signature[1..]));

        assert!(is_invalid(verified));
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let tokens = service();
        let issued = tokens.issue_access(user(), session(), Utc::now()).unwrap();
        let parts: Vec<&str> = issued.token.split('.').collect();
        let mut claims = valid_claims();
        claims["sub"] = json!(uuid::Uuid::from_u128(666).to_string());

        let verified = tokens.verify_access(&format!("{}.{}.{}", parts[0], b64(&claims), parts[2]));

        assert!(is_invalid(verified));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let other = JwtTokenService::new(config("a-completely-different-secret-32-bytes!!")).unwrap();
        let issued = other.issue_access(user(), session(), Utc::now()).unwrap();

        let verified = service().verify_access(&issued.token);

        assert!(is_invalid(verified));
    }

    #[test]
    fn a_token_signed_with_hs512_and_the_same_secret_is_refused() {
        let token = sign(Algorithm::HS512, &valid_claims(), SECRET);

        let verified = service().verify_access(&token);

        assert!(is_invalid(verified));
    }

    #[test]
    fn a_correctly_hand_signed_hs256_token_is_accepted() {
        // Guards the refusal tests above: they fail for the reason they name, not for the claims.
        let token = sign(Algorithm::HS256, &valid_claims(), SECRET);

        let verified = service().verify_access(&token);

        assert_eq!(verified.map(|claims| claims.user_id), Ok(user()));
    }

    #[test]
    fn an_expired_token_is_reported_as_expired() {
        let tokens = service();
        let issued = tokens.issue_access(user(), session(), Utc::now() - chrono::Duration::hours(1)).unwrap();

        let verified = tokens.verify_access(&issued.token);

        assert_eq!(verified, Err(TokenError::Expired));
    }

    #[test]
    fn a_token_expired_within_the_leeway_still_verifies() {
        let tokens = service();
        let issued_at = Utc::now() - chrono::Duration::minutes(15) - chrono::Duration::seconds(2);
        let issued = tokens.issue_access(user(), session(), issued_at).unwrap();

        let verified = tokens.verify_access(&issued.token);

        assert!(verified.is_ok(), "got {verified:?}");
    }

    #[test]
    fn a_token_not_yet_valid_beyond_the_leeway_is_refused() {
        let tokens = service();
        let issued = tokens.issue_access(user(), session(), Utc::now() + chrono::Duration::minutes(1)).unwrap();

        let verified = tokens.verify_access(&issued.token);

        assert!(is_invalid(verified));
    }

    #[test]
    fn a_token_for_another_issuer_is_refused() {
        let mut other = config(SECRET);
        other.issuer = "someone-else".to_owned();
        let issued = JwtTokenService::new(other).unwrap().issue_access(user(), session(), Utc::now()).unwrap();

        let verified = service().verify_access(&issued.token);

        assert!(is_invalid(verified));
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let mut other = config(SECRET);
        other.audience = "admin-console".to_owned();
        let issued = JwtTokenService::new(other).unwrap().issue_access(user(), session(), Utc::now()).unwrap();

        let verified = service().verify_access(&issued.token);

        assert!(is_invalid(verified));
    }

    #[test]
    fn a_token_missing_any_required_claim_is_refused() {
        let tokens = service();
        for name in ["exp", "nbf", "iss", "aud", "sub", "sid"] {
            // Arrange
            let mut claims = valid_claims();
            claims.as_object_mut().unwrap().remove(name);
            let token = sign(Algorithm::HS256, &claims, SECRET);

            // Act
            let verified = tokens.verify_access(&token);

            // Assert
            assert!(is_invalid(verified), "a token without {name} was accepted");
        }
    }

    #[test]
    fn garbage_is_refused() {
        let tokens = service();

        for garbage in ["", "not-a-jwt", "a.b.c", "..."] {
            assert!(is_invalid(tokens.verify_access(garbage)), "{garbage:?} was accepted");
        }
    }

    #[test]
    fn a_secret_shorter_than_32_bytes_is_refused() {
        let short = JwtTokenService::new(config(&"s".repeat(31)));
        let enough = JwtTokenService::new(config(&"s".repeat(32)));

        assert_eq!(short.err(), Some(JwtConfigError::SecretTooShort { min: 32, actual: 31 }));
        assert!(enough.is_ok());
    }

    #[test]
    fn a_non_positive_lifetime_is_refused() {
        let mut zero = config(SECRET);
        zero.access_ttl = chrono::Duration::zero();

        assert_eq!(JwtTokenService::new(zero).err(), Some(JwtConfigError::NonPositiveTtl));
    }

    #[test]
    fn refresh_tokens_are_32_random_bytes_in_unpadded_base64url() {
        let tokens = service();

        let (first, _) = tokens.new_refresh();
        let (second, _) = tokens.new_refresh();

        let raw = URL_SAFE_NO_PAD.decode(first.expose_secret()).unwrap();
        assert_eq!(raw.len(), 32);
        assert_eq!(first.expose_secret().len(), 43);
        assert_ne!(first.expose_secret(), second.expose_secret());
    }

    #[test]
    fn a_refresh_token_is_stored_as_the_hex_sha256_of_its_text() {
        let tokens = service();

        let (token, hash) = tokens.new_refresh();

        assert_eq!(hash, tokens.hash_refresh(token.expose_secret()));
        assert_eq!(tokens.hash_refresh("abc").0, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn refresh_tokens_live_thirty_days_by_default() {
        assert_eq!(service().refresh_ttl(), chrono::Duration::days(30));
    }
}
