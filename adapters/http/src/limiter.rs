//! A fixed-window limiter for failed logins, per username and per client address.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug, Clone, Copy)]
pub struct LimiterConfig {
    /// Failures one username may have in a window.
    pub per_username: u32,
    /// Failures one client address may have in a window.
    pub per_address: u32,
    pub window: Duration,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self { per_username: 5, per_address: 20, window: Duration::from_secs(15 * 60) }
    }
}

/// Counts failures per key; a key over its limit is refused until its window ends.
pub struct LoginLimiter {
    config: LimiterConfig,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginLimiter {
    pub fn new(config: LimiterConfig) -> Self {
        Self { config, failures: Mutex::new(HashMap::new()) }
    }

    /// Seconds to wait when either key is over its limit.
    pub fn retry_after(&self, username: &str, address: &str) -> Option<u64> {
        let now = Instant::now();
        let mut failures = self.failures.lock();
        failures.retain(|_, (start, _)| now.duration_since(*start) < self.config.window);
        let blocked = |key: String, limit: u32| {
            failures.get(&key).filter(|(_, n)| *n >= limit).map(|(start, _)| {
                let left = self.config.window.saturating_sub(now.duration_since(*start));
                left.as_secs().max(1)
            })
        };
        blocked(user_key(username), self.config.per_username)
            .or_else(|| blocked(addr_key(address), self.config.per_address))
    }

    pub fn record_failure(&self, username: &str, address: &str) {
        let now = Instant::now();
        let mut failures = self.failures.lock();
        for key in [user_key(username), addr_key(address)] {
            let entry = failures.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= self.config.window {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
    }

    pub fn record_success(&self, username: &str) {
        self.failures.lock().remove(&user_key(username));
    }
}

fn user_key(username: &str) -> String {
    format!("u:{}", username.to_lowercase())
}

fn addr_key(address: &str) -> String {
    format!("a:{address}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_username: u32, per_address: u32) -> LoginLimiter {
        LoginLimiter::new(LimiterConfig { per_username, per_address, window: Duration::from_secs(60) })
    }

    #[test]
    fn a_username_is_blocked_after_its_failure_limit() {
        let l = limiter(2, 100);
        l.record_failure("alice", "1.1.1.1");
        assert_eq!(l.retry_after("alice", "2.2.2.2"), None);
        l.record_failure("Alice", "1.1.1.1");
        assert!(l.retry_after("alice", "2.2.2.2").is_some());
        assert_eq!(l.retry_after("bob", "2.2.2.2"), None);
    }

    #[test]
    fn an_address_is_blocked_after_its_failure_limit_whatever_the_username() {
        let l = limiter(100, 2);
        l.record_failure("a1", "9.9.9.9");
        l.record_failure("a2", "9.9.9.9");
        assert!(l.retry_after("a3", "9.9.9.9").is_some());
    }

    #[test]
    fn a_success_clears_the_username_count() {
        let l = limiter(2, 100);
        l.record_failure("alice", "1.1.1.1");
        l.record_success("alice");
        l.record_failure("alice", "1.1.1.1");
        assert_eq!(l.retry_after("alice", "1.1.1.1"), None);
    }
}
