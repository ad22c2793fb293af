//! Argon2id password hashing, run on the blocking pool so a hash never stalls the async runtime.

use std::sync::Arc;

use anyhow::{anyhow, Context};
use application::ports::PasswordHasher;
use argon2::password_hash::{self, PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use domain::Password;
use rand::{rngs::OsRng, RngCore};
use secrecy::{ExposeSecret, SecretString};

/// Hashes passwords into PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), each with a random salt.
#[derive(Clone)]
pub struct Argon2Hasher {
    argon2: Argon2<'static>,
    /// Checked when the user does not exist, so that answer takes as long as a wrong password.
    dummy_hash: Arc<str>,
}

impl Argon2Hasher {
    /// Argon2id with the argon2 crate's defaults: 19 MiB of memory, 2 iterations, 1 lane.
    ///
    /// # Errors
    /// When computing the dummy hash fails.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_params(Params::DEFAULT)
    }

    /// Argon2id with the given cost; cheap costs make tests fast but are unfit for real passwords.
    ///
    /// # Errors
    /// When the costs are out of argon2's bounds (e.g. memory below 8 KiB per lane).
    pub fn with_cost(memory_kib: u32, iterations: u32, parallelism: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|error| anyhow!("invalid argon2 parameters: {error}"))?;
        Self::with_params(params)
    }

    fn with_params(params: Params) -> anyhow::Result<Self> {
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        // Nobody knows this password, and verify refuses the dummy anyway; only its cost matters.
        let mut unknowable = [0u8; 32];
        OsRng.fill_bytes(&mut unknowable);
        let dummy_hash = hash_with(&argon2, &unknowable)?;
        Ok(Self { argon2, dummy_hash: dummy_hash.into() })
    }
}

fn hash_with(argon2: &Argon2<'_>, password: &[u8]) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let hash =
        argon2.hash_password(password, &salt).map_err(|error| anyhow!("hashing the password failed: {error}"))?;
    Ok(hash.to_string())
}

fn verify_with(argon2: &Argon2<'_>, candidate: &[u8], stored: &str) -> anyhow::Result<bool> {
    let parsed =
        PasswordHash::new(stored).map_err(|error| anyhow!("the stored password hash is malformed: {error}"))?;
    // The hash's own algorithm and costs are used, so hashes made with older settings still verify.
    match argon2.verify_password(candidate, &parsed) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::Password) => Ok(false),
        Err(error) => Err(anyhow!("verifying the password failed: {error}")),
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let argon2 = self.argon2.clone();
        // The copy handed to the blocking task is wiped from memory when dropped.
        let password = SecretString::from(password.expose().to_owned());
        tokio::task::spawn_blocking(move || hash_with(&argon2, password.expose_secret().as_bytes()))
            .await
            .context("the password hashing task failed")?
    }

    async fn verify(&self, candidate: &str, hash: Option<String>) -> anyhow::Result<bool> {
        let user_exists = hash.is_some();
        let stored = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let argon2 = self.argon2.clone();
        let candidate = SecretString::from(candidate.to_owned());
        let matched =
            tokio::task::spawn_blocking(move || verify_with(&argon2, candidate.expose_secret().as_bytes(), &stored))
                .await
                .context("the password verification task failed")??;
        Ok(user_exists && matched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Username;

    fn cheap() -> Argon2Hasher {
        Argon2Hasher::with_cost(64, 1, 1).unwrap()
    }

    fn password(raw: &str) -> Password {
        Password::new(raw, &Username::new("alice").unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_hash_is_an_argon2id_phc_string_that_verifies_its_password() {
        // Arrange
        let hasher = cheap();

        // Act
        let hash = hasher.hash(&password("purple monkey dishwasher")).await.unwrap();

        // Assert
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "got {hash}");
        assert!(hasher.verify("purple monkey dishwasher", Some(hash)).await.unwrap());
    }

    #[tokio::test]
    async fn a_wrong_password_does_not_verify() {
        let hasher = cheap();
        let hash = hasher.hash(&password("purple monkey dishwasher")).await.unwrap();

        let verified = hasher.verify("purple monkey dishwasher ", Some(hash)).await.unwrap();

        assert!(!verified);
    }

    #[tokio::test]
    async fn hashing_one_password_twice_gives_different_salts() {
        let hasher = cheap();

        let first = hasher.hash(&password("purple monkey dishwasher")).await.unwrap();
        let second = hasher.hash(&password("purple monkey dishwasher")).await.unwrap();

        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let hasher = cheap();

        let verified = hasher.verify("anything at all", None).await.unwrap();

        assert!(!verified);
    }

    #[tokio::test]
    async fn a_malformed_stored_hash_is_an_error_not_a_mismatch() {
        let hasher = cheap();

        let verified = hasher.verify("purple monkey dishwasher", Some("not-a-phc-string".to_owned())).await;

        assert!(verified.is_err());
    }

    #[tokio::test]
    async fn a_hash_made_with_other_costs_still_verifies() {
        let old = Argon2Hasher::with_cost(32, 2, 1).unwrap();
        let hash = old.hash(&password("purple monkey dishwasher")).await.unwrap();

        let verified = cheap().verify("purple monkey dishwasher", Some(hash)).await.unwrap();

        assert!(verified);
    }

    #[test]
    fn costs_below_argon2s_minimum_are_refused() {
        assert!(Argon2Hasher::with_cost(1, 1, 1).is_err());
    }

    #[tokio::test]
    async fn the_default_hasher_uses_the_argon2_crate_defaults() {
        let hasher = Argon2Hasher::new().unwrap();

        let hash = hasher.hash(&password("purple monkey dishwasher")).await.unwrap();

        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "got {hash}");
    }
}
