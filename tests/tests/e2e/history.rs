//! e2e: history.
