//! Unit tests of the membership cache: what it answers itself, and what makes it ask the store again.

use std::sync::Arc;

use chrono::Duration;
use domain::Timestamp;
use parking_lot::Mutex;

use super::fixtures::{alice, bob, now, room_id, summary, user_id};
use crate::membership::{CacheLimits, MembershipCache};
use crate::ports::{Delivery, MockClock, MockRoomRepository, RoomEvent};

/// A clock the test moves by hand.
fn clock(at: &Arc<Mutex<Timestamp>>) -> MockClock {
    let at = at.clone();
    let mut clock = MockClock::new();
    clock.expect_now().returning(move || *at.lock());
    clock
}

/// A store asked exactly `times` whether someone is a member, answering `member` each time.
fn store_asked(times: usize, member: bool) -> MockRoomRepository {
    let mut rooms = MockRoomRepository::new();
    rooms.expect_is_member().times(times).returning(move |_, _| Ok(member));
    rooms
}

fn followed_cache(rooms: MockRoomRepository, at: &Arc<Mutex<Timestamp>>, limits: CacheLimits) -> MembershipCache {
    let cache = MembershipCache::new(Arc::new(rooms), Arc::new(clock(at)), limits);
    cache.set_following(true);
    cache
}

fn limits() -> CacheLimits {
    CacheLimits { max_age: Duration::seconds(5), capacity: 100 }
}

#[tokio::test]
async fn a_confirmed_member_is_answered_from_the_cache_until_it_is_max_age_old() {
    let at = Arc::new(Mutex::new(now()));
    let cache = followed_cache(store_asked(2, true), &at, limits());

    let first = cache.is_member(room_id(1), alice().id).await.expect("lookup");
    *at.lock() = now() + Duration::milliseconds(4_999);
    let cached = cache.is_member(room_id(1), alice().id).await.expect("lookup");
    *at.lock() = now() + Duration::seconds(5);
    let expired = cache.is_member(room_id(1), alice().id).await.expect("lookup");

    assert!(first && cached && expired);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (1, 2));
}

#[tokio::test]
async fn nothing_is_cached_while_the_bus_is_not_followed() {
    let at = Arc::new(Mutex::new(now()));
    let cache = MembershipCache::new(Arc::new(store_asked(2, true)), Arc::new(clock(&at)), limits());

    cache.is_member(room_id(1), alice().id).await.expect("lookup");
    cache.is_member(room_id(1), alice().id).await.expect("lookup");

    assert_eq!(cache.stats().entries, 0);
}

#[tokio::test]
async fn losing_the_bus_forgets_everything_and_caches_nothing_more() {
    let at = Arc::new(Mutex::new(now()));
    let cache = followed_cache(store_asked(3, true), &at, limits());
    cache.is_member(room_id(1), alice().id).await.expect("lookup");

    cache.set_following(false);
    cache.is_member(room_id(1), alice().id).await.expect("lookup");
    cache.is_member(room_id(1), alice().id).await.expect("lookup");

    assert_eq!(cache.stats().entries, 0);
}

#[tokio::test]
async fn a_non_member_is_never_cached() {
    let at = Arc::new(Mutex::new(now()));
    let cache = followed_cache(store_asked(2, false), &at, limits());

    let first = cache.is_member(room_id(1), alice().id).await.expect("lookup");
    let second = cache.is_member(room_id(1), alice().id).await.expect("lookup");

    assert!(!first && !second);
}

#[tokio::test]
async fn a_member_left_event_makes_the_next_lookup_ask_the_store() {
    let at = Arc::new(Mutex::new(now()));
    let mut rooms = MockRoomRepository::new();
    let mut order = mockall::Sequence::new();
    rooms.expect_is_member().times(1).in_sequence(&mut order).returning(|_, _| Ok(true));
    rooms.expect_is_member().times(1).in_sequence(&mut order).returning(|_, _| Ok(false));
    let cache = followed_cache(rooms, &at, limits());
    cache.is_member(room_id(1), alice().id).await.expect("lookup");

    cache.apply(&Delivery::Event(RoomEvent::MemberLeft { room_id: room_id(1), user: summary(&alice()) }));
    let after = cache.is_member(room_id(1), alice().id).await.expect("lookup");

    assert!(!after, "the removal is seen at once");
}

#[tokio::test]
async fn a_room_deleted_event_forgets_every_member_of_that_room_only() {
    let at = Arc::new(Mutex::new(now()));
    let cache = followed_cache(store_asked(3 + 2, true), &at, limits());
    for (room, user) in [(room_id(1), alice().id), (room_id(1), bob().id), (room_id(2), alice().id)] {
        cache.is_member(room, user).await.expect("lookup");
    }

    cache.apply(&Delivery::Event(RoomEvent::RoomDeleted { room_id: room_id(1) }));
    assert_eq!(cache.stats().entries, 1);
    for (room, user) in [(room_id(1), alice().id), (room_id(1), bob().id), (room_id(2), alice().id)] {
        cache.is_member(room, user).await.expect("lookup");
    }

    assert_eq!(cache.stats().hits, 1, "only the other room's member was still cached");
}

#[tokio::test]
async fn a_gap_forgets_everything_so_every_membership_is_read_again() {
    let at = Arc::new(Mutex::new(now()));
    let cache = followed_cache(store_asked(4, true), &at, limits());
    cache.is_member(room_id(1), alice().id).await.expect("lookup");
    cache.is_member(room_id(2), bob().id).await.expect("lookup");

    cache.apply(&Delivery::Gap);
    assert_eq!(cache.stats().entries, 0);
    cache.is_member(room_id(1), alice().id).await.expect("lookup");
    cache.is_member(room_id(2), bob().id).await.expect("lookup");

    assert_eq!(cache.stats().entries, 2, "reloaded from the store");
}

#[tokio::test]
async fn a_member_joined_event_caches_nothing_so_a_late_one_cannot_bring_back_a_removed_member() {
    let at = Arc::new(Mutex::new(now()));
    let cache = followed_cache(store_asked(1, false), &at, limits());

    cache.apply(&Delivery::Event(RoomEvent::MemberJoined { room_id: room_id(1), user: summary(&alice()) }));
    let member = cache.is_member(room_id(1), alice().id).await.expect("lookup");

    assert!(!member);
    assert_eq!(cache.stats().entries, 0);
}

#[tokio::test]
async fn a_removal_during_a_store_read_keeps_that_read_out_of_the_cache() {
    // The store answers "member" as it read before the removal committed; the removal clears the
    // cache while that answer is on its way.
    let at = Arc::new(Mutex::new(now()));
    let slot: Arc<Mutex<Option<MembershipCache>>> = Arc::default();
    let during = slot.clone();
    let mut rooms = MockRoomRepository::new();
    let mut order = mockall::Sequence::new();
    rooms.expect_is_member().times(1).in_sequence(&mut order).returning(move |room, user| {
        if let Some(cache) = during.lock().as_ref() {
            cache.member_left(room, user);
        }
        Ok(true)
    });
    rooms.expect_is_member().times(1).in_sequence(&mut order).returning(|_, _| Ok(false));
    let cache = followed_cache(rooms, &at, limits());
    *slot.lock() = Some(cache.clone());

    let racing = cache.is_member(room_id(1), alice().id).await.expect("lookup");
    let after = cache.is_member(room_id(1), alice().id).await.expect("lookup");

    assert!(racing, "the send that raced the removal may go through");
    assert!(!after, "but nothing after it");
}

#[tokio::test]
async fn past_its_capacity_the_cache_starts_over_instead_of_growing() {
    let at = Arc::new(Mutex::new(now()));
    let cache = followed_cache(store_asked(3, true), &at, CacheLimits { capacity: 2, ..limits() });

    for n in 10..13 {
        cache.is_member(room_id(1), user_id(n)).await.expect("lookup");
    }

    let stats = cache.stats();
    assert_eq!((stats.entries, stats.resets), (1, 1));
}
