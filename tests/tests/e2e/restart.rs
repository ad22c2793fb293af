//! e2e: restart.
