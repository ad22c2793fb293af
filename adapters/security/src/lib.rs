//! Security adapters: argon2id password hashing, HS256 JWT access tokens, refresh token generation, clock and ids.

mod password;
mod system;
mod token;

pub use password::{Argon2Hasher, HashPool};
pub use system::{SystemClock, UuidV7Ids};
pub use token::{JwtConfig, JwtConfigError, JwtTokenService};
