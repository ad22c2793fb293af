//! Argon2id password hashing on a few threads of its own, each reusing one memory block, so
//! neither a flood of logins nor the allocator's arenas can grow memory or stall the runtime.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context};
use application::ports::{HashError, PasswordHasher};
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version, RECOMMENDED_SALT_LEN};
use async_trait::async_trait;
use domain::Password;
use rand::{rngs::OsRng, RngCore};
use secrecy::{ExposeSecret, SecretString};

/// How many hashes run at once and how many may wait; beyond that, callers get `Busy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashPool {
    /// Threads hashing at once, each holding one memory block of the configured cost.
    pub threads: usize,
    /// Requests that may wait for a thread.
    pub queue: usize,
}

impl HashPool {
    /// The most threads the default pool takes, however many cores there are.
    pub const DEFAULT_MAX_THREADS: usize = 2;
}

impl Default for HashPool {
    /// One thread per core, at most two: each holds a 19 MiB block for good, and two keep a
    /// node under 64 MiB above its idle size whatever the login rate. 32 may wait per thread.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let threads = cores.min(Self::DEFAULT_MAX_THREADS);
        Self { threads, queue: 32 * threads }
    }
}

/// One unit of work, run on a pool thread with that thread's memory block.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Hashes passwords into PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), each with a random salt.
#[derive(Clone)]
pub struct Argon2Hasher {
    argon2: Argon2<'static>,
    jobs: SyncSender<Job>,
}

impl Argon2Hasher {
    /// Argon2id with the argon2 crate's defaults: 19 MiB of memory, 2 iterations, 1 lane.
    ///
    /// # Errors
    /// When a pool thread cannot be started.
    pub fn new(pool: HashPool) -> anyhow::Result<Self> {
        Self::with_params(Params::DEFAULT, pool)
    }

    /// Argon2id with the given cost; cheap costs make tests fast but are unfit for real passwords.
    ///
    /// # Errors
    /// When the costs are out of argon2's bounds (e.g. memory below 8 KiB per lane).
    pub fn with_cost(memory_kib: u32, iterations: u32, parallelism: u32, pool: HashPool) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|error| anyhow!("invalid argon2 parameters: {error}"))?;
        Self::with_params(params, pool)
    }

    fn with_params(params: Params, pool: HashPool) -> anyhow::Result<Self> {
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let (jobs, queue) = mpsc::sync_channel::<Job>(pool.queue);
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..pool.threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("chat-argon2-{index}"))
                .spawn(move || run_jobs(&queue))
                .context("starting a password hashing thread")?;
        }
        Ok(Self { argon2, jobs })
    }

    /// Runs `work` on a pool thread, or answers `Busy` at once when the queue is full.
    async fn on_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>, &mut Vec<Block>) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, HashError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let argon2 = self.argon2.clone();
        let job: Job = Box::new(move |memory| {
            let _ = reply.send(work(&argon2, memory));
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(HashError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(anyhow!("the password hashing threads stopped").into()),
        }
        Ok(answer.await.context("the password hashing thread failed")??)
    }
}

/// A pool thread: takes jobs until the hasher is dropped. Its block is allocated on first use
/// and kept, so memory stays at one block per thread however many hashes run.
fn run_jobs(queue: &Mutex<Receiver<Job>>) {
    let mut memory = Vec::new();
    loop {
        // The lock is held only while waiting for the next job, never while hashing.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(&mut memory),
            Err(_) => return,
        }
    }
}

/// The memory `params` needs, taken from the thread's block, grown only if a stored hash was made
/// with a larger cost than the current one.
fn blocks_for<'m>(memory: &'m mut Vec<Block>, params: &Params) -> &'m mut [Block] {
    let needed = params.block_count();
    if memory.len() < needed {
        *memory = vec![Block::default(); needed];
    }
    &mut memory[..needed]
}

fn hash_with(argon2: &Argon2<'_>, password: &[u8], memory: &mut Vec<Block>) -> anyhow::Result<String> {
    let mut salt = [0u8; RECOMMENDED_SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(password, &salt, &mut output, blocks_for(memory, argon2.params()))
        .map_err(|error| anyhow!("hashing the password failed: {error}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|error| anyhow!("encoding the salt failed: {error}"))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params())
            .map_err(|error| anyhow!("encoding the costs failed: {error}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).map_err(|error| anyhow!("encoding the hash failed: {error}"))?),
    };
    Ok(phc.to_string())
}

fn verify_with(candidate: &[u8], stored: &str, memory: &mut Vec<Block>) -> anyhow::Result<bool> {
    let malformed = |error: &dyn std::fmt::Display| anyhow!("the stored password hash is malformed: {error}");
    let parsed = PasswordHash::new(stored).map_err(|e| malformed(&e))?;
    // The hash's own algorithm and costs are used, so hashes made with older settings still verify.
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| malformed(&e))?;
    let version = parsed.version.map(Version::try_from).transpose().map_err(|e| malformed(&e))?.unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| malformed(&e))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(malformed(&"no salt or no hash"));
    };
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes).map_err(|e| malformed(&e))?;
    let argon2 = Argon2::new(algorithm, version, params);
    let mut output = vec![0u8; expected.len()];
    argon2
        .hash_password_into_with_memory(candidate, salt, &mut output, blocks_for(memory, argon2.params()))
        .map_err(|error| anyhow!("verifying the password failed: {error}"))?;
    // Output's equality is constant-time.
    Ok(Output::new(&output).map_err(|e| malformed(&e))? == expected)
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<String, HashError> {
        // The copy handed to the pool thread is wiped from memory when dropped.
        let password = SecretString::from(password.expose().to_owned());
        self.on_pool(move |argon2, memory| hash_with(argon2, password.expose_secret().as_bytes(), memory)).await
    }

    async fn verify(&self, candidate: &str, hash: Option<String>) -> Result<bool, HashError> {
        let candidate = SecretString::from(candidate.to_owned());
        self.on_pool(move |argon2, memory| match hash {
            Some(stored) => verify_with(candidate.expose_secret().as_bytes(), &stored, memory),
            // No such user: do the work of a check with the current cost, then say no.
            None => hash_with(argon2, candidate.expose_secret().as_bytes(), memory).map(|_| false),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Username;

    fn cheap() -> Argon2Hasher {
        Argon2Hasher::with_cost(64, 1, 1, HashPool::default()).unwrap()
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
        let old = Argon2Hasher::with_cost(32, 2, 1, HashPool::default()).unwrap();
        let hash = old.hash(&password("purple monkey dishwasher")).await.unwrap();

        let verified = cheap().verify("purple monkey dishwasher", Some(hash)).await.unwrap();

        assert!(verified);
    }

    #[test]
    fn costs_below_argon2s_minimum_are_refused() {
        assert!(Argon2Hasher::with_cost(1, 1, 1, HashPool::default()).is_err());
    }

    #[tokio::test]
    async fn the_default_hasher_uses_the_argon2_crate_defaults() {
        let hasher = Argon2Hasher::new(HashPool::default()).unwrap();

        let hash = hasher.hash(&password("purple monkey dishwasher")).await.unwrap();

        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "got {hash}");
    }

    #[test]
    fn the_default_pool_takes_one_thread_per_core_but_never_more_than_two() {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);

        let pool = HashPool::default();

        assert_eq!(pool.threads, cores.min(2));
        assert!(pool.threads <= HashPool::DEFAULT_MAX_THREADS);
    }

    #[tokio::test]
    async fn callers_beyond_the_threads_and_the_queue_are_told_busy_at_once() {
        // Arrange: one thread and one waiting place, with the real cost so each hash takes a while.
        let hasher = Argon2Hasher::new(HashPool { threads: 1, queue: 1 }).unwrap();
        let password = password("purple monkey dishwasher");

        // Act
        let results = futures::future::join_all((0..8).map(|_| hasher.hash(&password))).await;

        // Assert
        let busy = results.iter().filter(|r| matches!(r, Err(HashError::Busy))).count();
        let hashed = results.iter().filter(|r| r.is_ok()).count();
        assert!(hashed >= 1 && busy >= 1 && hashed + busy == 8, "hashed {hashed}, busy {busy}");
    }

    #[tokio::test]
    async fn a_hash_made_with_a_larger_cost_than_the_pools_still_verifies() {
        let large = Argon2Hasher::with_cost(256, 1, 1, HashPool::default()).unwrap();
        let hash = large.hash(&password("purple monkey dishwasher")).await.unwrap();

        let verified = cheap().verify("purple monkey dishwasher", Some(hash)).await.unwrap();

        assert!(verified);
    }

    #[tokio::test]
    async fn a_hash_made_by_the_argon2_crate_itself_verifies() {
        use argon2::password_hash::PasswordHasher as _;
        let salt = SaltString::generate(&mut OsRng);
        let reference = Argon2::default().hash_password(b"purple monkey dishwasher", &salt).unwrap().to_string();

        let verified = cheap().verify("purple monkey dishwasher", Some(reference)).await.unwrap();

        assert!(verified);
    }
}
