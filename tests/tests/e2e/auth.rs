//! e2e: auth.
