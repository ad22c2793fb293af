//! Worker integration tests: archiving and purging against real Redis and MongoDB-wire servers.

mod concurrent;
mod crash;
mod embedded;
mod failover;
mod lag;
mod paging;
mod purge;
mod race;
mod sequences;
mod shutdown;
mod support;
