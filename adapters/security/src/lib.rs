//! Security adapters: argon2id password hashing, HS256 JWT access tokens, refresh token generation, clock and ids.
