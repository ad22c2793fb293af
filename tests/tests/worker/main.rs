//! Worker integration tests: archiving and purging against real Redis and MongoDB-wire servers.
