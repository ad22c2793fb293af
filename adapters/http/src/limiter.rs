//! Fixed-window limits on logins (per username and address, and per address) and on sign-ups
//! (per address), bounded in keys so a flood of names or addresses cannot grow memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug, Clone, Copy)]
pub struct LimiterConfig {
    /// Failed logins one (username, address) pair may have in a window. Keyed on the pair so a
    /// stranger who knows a name cannot lock its owner out from elsewhere.
    pub per_name: u32,
    /// Failed logins one client address may have in a window, whatever the names tried.
    pub per_address: u32,
    pub window: Duration,
    /// Sign-ups one client address may make per `registration_window`; 0 = no limit.
    pub registrations_per_address: u32,
    pub registration_window: Duration,
    /// Keys kept at most; when full, expired windows go first, then the oldest.
    pub max_keys: usize,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            per_name: 5,
            per_address: 20,
            window: Duration::from_secs(15 * 60),
            registrations_per_address: 20,
            registration_window: Duration::from_secs(60 * 60),
            max_keys: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A lowercased username tried from one address.
    Name(String, String),
    Address(String),
    Registration(String),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    /// Failures, and attempts still being checked (counted as failures until they end).
    count: u32,
    /// Of `count`, the attempts still being checked.
    in_flight: u32,
}

/// Counts attempts per key; a key at its limit is refused until its window ends.
pub struct LoginLimiter {
    config: LimiterConfig,
    windows: Mutex<HashMap<Key, Window>>,
}

/// A login that was counted as a failure before the password was checked, so parallel guesses
/// cannot all pass the check. Dropped, it stays a failure; `succeeded` or `not_counted` take
/// the count back.
#[must_use]
pub struct LoginAttempt<'a> {
    limiter: &'a LoginLimiter,
    name: Key,
    address: Key,
    /// Whether the outcome was already told.
    settled: bool,
}

impl LoginAttempt<'_> {
    /// The password was right: the pair's failures are forgotten, and this attempt no longer
    /// counts against the address.
    pub fn succeeded(mut self) {
        let mut windows = self.limiter.windows.lock();
        windows.remove(&self.name);
        end(&mut windows, &self.address, true);
        self.settled = true;
    }

    /// The check never ran (the server was busy or failed): nothing was guessed.
    pub fn not_counted(mut self) {
        let mut windows = self.limiter.windows.lock();
        end(&mut windows, &self.name, true);
        end(&mut windows, &self.address, true);
        self.settled = true;
    }
}

impl Drop for LoginAttempt<'_> {
    /// A failure: it stays counted, and is no longer in flight.
    fn drop(&mut self) {
        if !self.settled {
            let mut windows = self.limiter.windows.lock();
            end(&mut windows, &self.name, false);
            end(&mut windows, &self.address, false);
        }
    }
}

/// An attempt on `key` is over; `uncount` when it turned out not to be a failure.
fn end(windows: &mut HashMap<Key, Window>, key: &Key, uncount: bool) {
    if let Some(window) = windows.get_mut(key) {
        window.in_flight = window.in_flight.saturating_sub(1);
        if uncount {
            window.count = window.count.saturating_sub(1);
        }
    }
}

impl LoginLimiter {
    pub fn new(config: LimiterConfig) -> Self {
        Self { config, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts a login attempt for `username` from `address`, or says how many seconds to wait
    /// when either the pair or the address is at its limit.
    ///
    /// # Errors
    /// The seconds until the blocking window ends.
    pub fn begin_login(&self, username: &str, address: Option<IpAddr>) -> Result<LoginAttempt<'_>, u64> {
        let address = address_key(address);
        let name = Key::Name(username.to_lowercase(), address.clone());
        let address = Key::Address(address);
        let now = Instant::now();
        let mut windows = self.windows.lock();
        for (key, limit, window) in
            [(&name, self.config.per_name, self.config.window), (&address, self.config.per_address, self.config.window)]
        {
            if let Some(wait) = self.blocked(&windows, key, limit, window, now) {
                return Err(wait);
            }
        }
        for key in [&name, &address] {
            self.count(&mut windows, key, self.config.window, now, true);
        }
        Ok(LoginAttempt { limiter: self, name, address, settled: false })
    }

    /// Counts a sign-up from `address`, or says how many seconds to wait.
    ///
    /// # Errors
    /// The seconds until the address's registration window ends.
    pub fn begin_registration(&self, address: Option<IpAddr>) -> Result<(), u64> {
        let limit = self.config.registrations_per_address;
        if limit == 0 {
            return Ok(());
        }
        let key = Key::Registration(address_key(address));
        let now = Instant::now();
        let mut windows = self.windows.lock();
        if let Some(wait) = self.blocked(&windows, &key, limit, self.config.registration_window, now) {
            return Err(wait);
        }
        self.count(&mut windows, &key, self.config.registration_window, now, false);
        Ok(())
    }

    fn blocked(
        &self,
        windows: &HashMap<Key, Window>,
        key: &Key,
        limit: u32,
        length: Duration,
        now: Instant,
    ) -> Option<u64> {
        let window = windows.get(key)?;
        let elapsed = now.duration_since(window.started);
        if elapsed >= length || window.count < limit {
            return None;
        }
        // Held back only by attempts still being checked: a second will tell.
        if window.count - window.in_flight < limit {
            return Some(1);
        }
        Some(length.saturating_sub(elapsed).as_secs().max(1))
    }

    /// Counts one attempt on `key`; `in_flight` when its outcome is still to come.
    fn count(&self, windows: &mut HashMap<Key, Window>, key: &Key, length: Duration, now: Instant, in_flight: bool) {
        if !windows.contains_key(key) && windows.len() >= self.config.max_keys {
            self.make_room(windows, now);
        }
        let window = windows.entry(key.clone()).or_insert(Window { started: now, count: 0, in_flight: 0 });
        if now.duration_since(window.started) >= length {
            // A new window; attempts still in flight carry over, so their end finds them.
            *window = Window { started: now, count: window.in_flight, in_flight: window.in_flight };
        }
        window.count += 1;
        window.in_flight += u32::from(in_flight);
    }

    /// Drops ended windows; if none ended, the oldest one, so the map never passes `max_keys`.
    fn make_room(&self, windows: &mut HashMap<Key, Window>, now: Instant) {
        let longest = self.config.window.max(self.config.registration_window);
        windows.retain(|_, w| now.duration_since(w.started) < longest);
        if windows.len() >= self.config.max_keys {
            if let Some(oldest) = windows.iter().min_by_key(|(_, w)| w.started).map(|(k, _)| k.clone()) {
                windows.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.windows.lock().len()
    }
}

/// An IPv4 address, or an IPv6 /64: one host usually holds a whole /64, so a per-address limit
/// keyed on the full IPv6 address would be no limit at all.
fn address_key(address: Option<IpAddr>) -> String {
    match address.map(|a| a.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_name: u32, per_address: u32) -> LoginLimiter {
        LoginLimiter::new(LimiterConfig {
            per_name,
            per_address,
            window: Duration::from_secs(60),
            ..Default::default()
        })
    }

    fn ip(raw: &str) -> Option<IpAddr> {
        Some(raw.parse().unwrap())
    }

    #[test]
    fn a_name_is_blocked_from_one_address_after_its_failure_limit_but_not_from_another() {
        let l = limiter(2, 100);
        let _ = l.begin_login("alice", ip("1.1.1.1")).unwrap();
        let _ = l.begin_login("Alice", ip("1.1.1.1")).unwrap();

        assert!(l.begin_login("alice", ip("1.1.1.1")).is_err());
        assert!(l.begin_login("alice", ip("2.2.2.2")).is_ok(), "the owner elsewhere is not locked out");
    }

    #[test]
    fn attempts_count_before_their_outcome_so_parallel_guesses_stop_at_the_limit() {
        let l = limiter(3, 100);

        // Five attempts in flight at once, none finished yet.
        let admitted: Vec<_> = (0..5).filter_map(|_| l.begin_login("alice", ip("1.1.1.1")).ok()).collect();

        assert_eq!(admitted.len(), 3);
    }

    #[test]
    fn attempts_still_being_checked_block_for_a_second_not_for_the_window() {
        let l = limiter(2, 100);
        let first = l.begin_login("alice", ip("1.1.1.1")).unwrap();
        let _second = l.begin_login("alice", ip("1.1.1.1")).unwrap();

        let waiting = l.begin_login("alice", ip("1.1.1.1")).err();
        first.succeeded();

        assert_eq!(waiting, Some(1), "blocked only by attempts in flight");
        assert!(l.begin_login("alice", ip("1.1.1.1")).is_ok(), "the success made room");
    }

    #[test]
    fn an_address_is_blocked_after_its_failure_limit_whatever_the_username() {
        let l = limiter(100, 2);
        let _ = l.begin_login("a1", ip("9.9.9.9")).unwrap();
        let _ = l.begin_login("a2", ip("9.9.9.9")).unwrap();

        assert!(l.begin_login("a3", ip("9.9.9.9")).is_err());
    }

    #[test]
    fn a_success_clears_the_pairs_failures_and_does_not_count_against_the_address() {
        let l = limiter(2, 2);
        let _ = l.begin_login("alice", ip("1.1.1.1")).unwrap();
        l.begin_login("alice", ip("1.1.1.1")).unwrap().succeeded();

        let _ = l.begin_login("alice", ip("1.1.1.1")).unwrap();

        assert!(l.begin_login("alice", ip("1.1.1.1")).is_err(), "two failures since the success");
    }

    #[test]
    fn an_attempt_the_server_never_checked_does_not_count() {
        let l = limiter(1, 1);
        l.begin_login("alice", ip("1.1.1.1")).unwrap().not_counted();

        assert!(l.begin_login("alice", ip("1.1.1.1")).is_ok());
    }

    #[test]
    fn every_address_of_one_ipv6_64_shares_one_limit() {
        let l = limiter(100, 1);
        let _ = l.begin_login("alice", ip("2001:db8:1:2::1")).unwrap();

        assert!(l.begin_login("bob", ip("2001:db8:1:2:ffff::9")).is_err());
        assert!(l.begin_login("bob", ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn sign_ups_are_limited_per_address_and_zero_means_no_limit() {
        let limited = LoginLimiter::new(LimiterConfig { registrations_per_address: 2, ..LimiterConfig::default() });
        let unlimited = LoginLimiter::new(LimiterConfig { registrations_per_address: 0, ..LimiterConfig::default() });

        assert!(limited.begin_registration(ip("1.1.1.1")).is_ok());
        assert!(limited.begin_registration(ip("1.1.1.1")).is_ok());
        let wait = limited.begin_registration(ip("1.1.1.1")).unwrap_err();
        assert!(wait > 3500, "waits for the hour's window, got {wait}");
        assert!(limited.begin_registration(ip("2.2.2.2")).is_ok());
        assert!((0..100).all(|_| unlimited.begin_registration(ip("1.1.1.1")).is_ok()));
    }

    #[test]
    fn the_number_of_keys_never_passes_its_bound() {
        let l = LoginLimiter::new(LimiterConfig { max_keys: 10, ..LimiterConfig::default() });

        for n in 0..1000u32 {
            let _ = l.begin_login(&format!("user{n}"), Some(IpAddr::from(n.to_be_bytes())));
        }

        assert!(l.keys() <= 10, "kept {} keys", l.keys());
    }
}
