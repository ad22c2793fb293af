//! The node's registry of live sockets: which rooms each follows, and fan-out of bus events to them.
//! The node follows a room on the bus while at least one of its sockets is in it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use application::metrics::Metrics;
use application::ports::{Delivery, FollowedRooms, RoomEvent, SessionId, UserSummary};
use application::rooms::Rooms;
use domain::{RoomId, UserId};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::frames::{entry_json, ServerFrame, UserRef};
use super::outbox::{Closing, Offer, Outbox};
use super::resume::{Claim, Live, Resumed};

/// Close codes of the protocol.
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const SESSION_ENDED: u16 = 4001;
}

/// What the hub keeps of one socket.
struct Conn {
    user: UserId,
    /// The login session whose token opened the socket; ending it closes the socket.
    session: SessionId,
    /// While its rooms are being read from the store: the changes heard meanwhile, which the
    /// read may or may not have seen, applied on top of it when it lands.
    loading: Option<Loading>,
    rooms: HashSet<RoomId>,
    /// Pre-serialized frames, bounded in bytes, so one slow reader cannot hold the room back.
    outbox: Arc<Outbox>,
    /// Rooms the client resumed from a seq: their messages go out exactly once, in seq order.
    resumed: HashMap<RoomId, Resumed>,
    /// Woken when live frames of a resumed room wait behind a missing seq.
    gaps: Arc<Notify>,
    /// Until the client's first frame (or a short wait): message frames held, so a `resume`
    /// sent right after `ready` finds none of its rooms' messages sent ahead of it.
    early: Option<Early>,
}

/// Message frames that came before the client's first frame.
struct Early {
    frames: Vec<(RoomId, u64, Utf8Bytes)>,
    bytes: usize,
    /// Past this many bytes they go out: a client that said it will resume (`/ws?resume`) may
    /// have its whole bound, any other only a little, so a listener never waits behind it.
    limit: usize,
}

/// What a socket that did not ask for `?resume` holds at most before its first frame.
const EARLY_BYTES: usize = 64 << 10;

#[derive(Default)]
struct Loading {
    joined: HashSet<RoomId>,
    left: HashSet<RoomId>,
}

#[derive(Default)]
struct State {
    conns: HashMap<u64, Conn>,
    rooms: HashMap<RoomId, HashSet<u64>>,
    users: HashMap<UserId, HashSet<u64>>,
    /// Sockets per user, counted from the handshake on so the limit holds under races.
    reserved: HashMap<UserId, usize>,
}

/// Counts one socket of a user against the limit until it is dropped.
pub struct Reservation {
    hub: Arc<Hub>,
    user: UserId,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.hub.state.lock();
        if let Some(n) = state.reserved.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                state.reserved.remove(&self.user);
            }
        }
        if state.reserved.is_empty() {
            self.hub.no_sockets.notify_waiters();
        }
    }
}

/// A registered socket's end of the hub.
pub struct Registration {
    pub id: u64,
    /// Where the room's frames wait for the socket's writer; the socket's own replies go there too.
    pub outbox: Arc<Outbox>,
    pub closing: watch::Receiver<Option<Closing>>,
    /// True when this is the user's first socket on this node.
    pub first_for_user: bool,
    /// Woken when a resumed room has a gap to fill from the log (see `Hub::gapped`).
    pub gaps: Arc<Notify>,
}

pub struct Hub {
    state: Mutex<State>,
    next_id: AtomicU64,
    /// Each socket's outbound bound, in bytes.
    queue_bytes: usize,
    /// Last forwarded typing event per user and room.
    typing: Mutex<HashMap<(UserId, RoomId), Instant>>,
    typing_every: Duration,
    /// Woken when the last reservation goes, so `drain` need not poll.
    no_sockets: Notify,
    /// Set once shutdown begins: no socket is taken on after that, so none outlives the drain.
    draining: AtomicBool,
    /// Presence changes heard since the last flush, per room followed here: the net state of
    /// each user. A room that comes online at once costs each socket one frame, not one per member.
    presence: Mutex<HashMap<RoomId, HashMap<UserId, bool>>>,
    /// The rooms the node's bus subscription follows: the keys of `State::rooms`, changed under
    /// the state lock so the two never disagree. Unset until `attach` (and in unit tests).
    bus: OnceLock<Arc<dyn FollowedRooms>>,
}

/// Resolves once the bus hears every room a socket follows.
pub type Heard = BoxFuture<'static, anyhow::Result<()>>;

/// Why no place was held for another socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The user already holds the most sockets allowed.
    TooMany,
    /// This node is shutting down; the client should connect to another.
    Draining,
}

impl Hub {
    pub fn new(queue_bytes: usize, typing_every: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            queue_bytes,
            typing: Mutex::new(HashMap::new()),
            typing_every,
            no_sockets: Notify::new(),
            draining: AtomicBool::new(false),
            presence: Mutex::new(HashMap::new()),
            bus: OnceLock::new(),
        })
    }

    /// From now on the rooms followed here are followed on the bus through `rooms`. Called once,
    /// before the first socket registers; a second call is ignored.
    pub fn attach(&self, rooms: Arc<dyn FollowedRooms>) {
        let _ = self.bus.set(rooms);
    }

    /// `id` is in `room` now; the node follows the room on the bus from its first socket on.
    fn enter(&self, rooms: &mut HashMap<RoomId, HashSet<u64>>, room: RoomId, id: u64) -> Option<Heard> {
        rooms.entry(room).or_default().insert(id);
        // Asked for every socket, not only the first: the room may not be heard yet.
        self.bus.get().map(|bus| bus.follow(room))
    }

    /// `id` is no longer in `room`; the node stops following it with its last socket.
    fn leave(&self, rooms: &mut HashMap<RoomId, HashSet<u64>>, room: RoomId, id: u64) {
        if let Some(set) = rooms.get_mut(&room) {
            set.remove(&id);
            if set.is_empty() {
                rooms.remove(&room);
                self.forget(room);
            }
        }
    }

    /// No socket here is in `room` any more.
    fn forget(&self, room: RoomId) {
        if let Some(bus) = self.bus.get() {
            bus.unfollow(room);
        }
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Asks every socket to close with `1001 going_away`, then waits until each has finished
    /// its current frame and let go of its reservation, for at most `within`. False when some
    /// were still open at the deadline.
    pub async fn drain(&self, within: Duration) -> bool {
        // Under the state lock, so a reservation either sees the flag or is closed below.
        {
            let _state = self.state.lock();
            self.draining.store(true, Ordering::Release);
        }
        self.close_all(close::GOING_AWAY, "going_away");
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let gone = self.no_sockets.notified();
            tokio::pin!(gone);
            // Registered as a waiter before looking, so a release in between is not missed.
            gone.as_mut().enable();
            if self.state.lock().reserved.is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, gone).await.is_err() {
                return self.state.lock().reserved.is_empty();
            }
        }
    }

    /// Holds a place for one more socket of `user`, unless they already have `max`.
    ///
    /// # Errors
    /// `TooMany` at the limit, `Draining` once shutdown has begun.
    pub fn reserve(self: &Arc<Self>, user: UserId, max: usize) -> Result<Reservation, Refusal> {
        let mut state = self.state.lock();
        if self.is_draining() {
            return Err(Refusal::Draining);
        }
        let n = state.reserved.entry(user).or_insert(0);
        if *n >= max {
            return Err(Refusal::TooMany);
        }
        *n += 1;
        Ok(Reservation { hub: self.clone(), user })
    }

    /// Registers a socket that follows no room yet: its rooms are read after this, and handed
    /// to `follow`, so no membership change between the read and the registration is missed.
    /// `resuming`: the client said it sends `resume` first (`/ws?resume`), so message frames
    /// wait for it up to the socket's whole bound.
    pub fn register(&self, user: UserId, session: SessionId, resuming: bool) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new(self.queue_bytes));
        let closing = outbox.closing();
        let mut state = self.state.lock();
        let user_conns = state.users.entry(user).or_default();
        let first_for_user = user_conns.is_empty();
        user_conns.insert(id);
        let gaps = Arc::new(Notify::new());
        let conn = Conn {
            user,
            session,
            loading: Some(Loading::default()),
            rooms: HashSet::new(),
            outbox: outbox.clone(),
            resumed: HashMap::new(),
            gaps: gaps.clone(),
            early: Some(Early {
                frames: Vec::new(),
                bytes: 0,
                limit: if resuming { self.queue_bytes } else { EARLY_BYTES },
            }),
        };
        state.conns.insert(id, conn);
        Registration { id, outbox, closing, first_for_user, gaps }
    }

    /// Marks every socket of `user` as reloading its rooms; returns their ids for `follow`.
    pub fn reload_started(&self, user: UserId) -> Vec<u64> {
        let mut state = self.state.lock();
        let ids: Vec<u64> = state.users.get(&user).into_iter().flatten().copied().collect();
        for id in &ids {
            if let Some(conn) = state.conns.get_mut(id) {
                conn.loading = Some(Loading::default());
            }
        }
        ids
    }

    /// The socket follows the rooms `loaded` read from the store, corrected by the joins and
    /// leaves heard while it was read. The returned future resolves once the bus hears all of
    /// them: a socket reads the log only after that, so no message falls between the two.
    pub fn follow(&self, id: u64, loaded: Vec<RoomId>) -> Heard {
        let mut state = self.state.lock();
        let Some(conn) = state.conns.get_mut(&id) else { return std::future::ready(Ok(())).boxed() };
        let heard = conn.loading.take().unwrap_or_default();
        let rooms: HashSet<RoomId> =
            loaded.into_iter().chain(heard.joined).filter(|room| !heard.left.contains(room)).collect();
        let dropped: Vec<RoomId> = conn.rooms.difference(&rooms).copied().collect();
        conn.rooms.clone_from(&rooms);
        conn.resumed.retain(|room, _| rooms.contains(room));
        for room in dropped {
            self.leave(&mut state.rooms, room, id);
        }
        let followed: Vec<Heard> =
            rooms.into_iter().filter_map(|room| self.enter(&mut state.rooms, room, id)).collect();
        futures::future::try_join_all(followed).map(|heard| heard.map(drop)).boxed()
    }

    /// The read for `ids` failed: they keep the rooms they had.
    pub fn reload_failed(&self, ids: &[u64]) {
        let mut state = self.state.lock();
        for id in ids {
            if let Some(conn) = state.conns.get_mut(id) {
                conn.loading = None;
            }
        }
    }

    /// The users with a socket on this node.
    pub fn users(&self) -> Vec<UserId> {
        self.state.lock().users.keys().copied().collect()
    }

    /// Removes a socket; true when it was the user's last on this node.
    pub fn unregister(&self, id: u64) -> bool {
        let mut state = self.state.lock();
        let Some(conn) = state.conns.remove(&id) else { return false };
        for room in &conn.rooms {
            self.leave(&mut state.rooms, *room, id);
        }
        let last = match state.users.get_mut(&conn.user) {
            Some(set) => {
                set.remove(&id);
                set.is_empty()
            }
            None => true,
        };
        if last {
            state.users.remove(&conn.user);
        }
        last
    }

    /// Whether a typing event of `user` in `room` may be forwarded now (at most one per interval).
    pub fn allow_typing(&self, user: UserId, room: RoomId) -> bool {
        let now = Instant::now();
        let mut typing = self.typing.lock();
        typing.retain(|_, at| now.duration_since(*at) < self.typing_every);
        match typing.get(&(user, room)) {
            Some(_) => false,
            None => {
                typing.insert((user, room), now);
                true
            }
        }
    }

    /// Rooms a user's sockets here follow; empty when the user has none.
    pub fn rooms_of(&self, user: UserId) -> Vec<RoomId> {
        let state = self.state.lock();
        let mut rooms: HashSet<RoomId> = HashSet::new();
        for id in state.users.get(&user).into_iter().flatten() {
            if let Some(conn) = state.conns.get(id) {
                rooms.extend(conn.rooms.iter().copied());
            }
        }
        rooms.into_iter().collect()
    }

    /// Asks every socket to close, e.g. at shutdown.
    pub fn close_all(&self, code: u16, reason: &'static str) {
        for conn in self.state.lock().conns.values() {
            conn.outbox.close(Closing::Frame(code, reason));
        }
    }

    /// Delivers bus events to the sockets here until the stream ends. After a gap in the
    /// events, and every `reconcile_every` anyway (a membership change whose publish failed
    /// leaves no gap), every socket's rooms are read again, so a removed member hears nothing more.
    pub async fn run(
        self: Arc<Self>,
        mut events: impl Stream<Item = Delivery> + Unpin,
        rooms: Rooms,
        reconcile_every: Duration,
        presence_window: Duration,
        metrics: Arc<Metrics>,
    ) {
        let mut reconcile = tokio::time::interval(reconcile_every);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reconcile.tick().await;
        let mut presence = tokio::time::interval(presence_window);
        presence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reconciling = Arc::new(AtomicBool::new(false));
        loop {
            let gap = tokio::select! {
                delivery = events.next() => match delivery {
                    Some(Delivery::Event(event)) => { metrics.bus_event(); self.dispatch(event); false }
                    Some(Delivery::Gap) => { metrics.bus_gap(); true }
                    None => return,
                },
                _ = reconcile.tick() => true,
                _ = presence.tick() => { self.flush_presence(); false }
            };
            // Off the event loop, one at a time, so live delivery goes on meanwhile.
            if gap && !reconciling.swap(true, Ordering::AcqRel) {
                let (hub, rooms, reconciling) = (self.clone(), rooms.clone(), reconciling.clone());
                tokio::spawn(async move {
                    hub.reconcile(&rooms).await;
                    reconciling.store(false, Ordering::Release);
                });
            }
        }
    }

    /// Reads again the rooms of every user with a socket here.
    pub async fn reconcile(&self, rooms: &Rooms) {
        for user in self.users() {
            let ids = self.reload_started(user);
            match rooms.subscriptions(user).await {
                Ok(loaded) => {
                    for id in ids {
                        // Not awaited: live delivery goes on while newly found rooms are followed.
                        drop(self.follow(id, loaded.clone()));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "could not read a user's rooms again; they keep what they had");
                    self.reload_failed(&ids);
                }
            }
        }
    }

    pub fn dispatch(&self, event: RoomEvent) {
        match event {
            RoomEvent::Message(message) => {
                // A change entry goes through the room's sequencer as a message does.
                let json: Utf8Bytes = entry_json(&message).into();
                self.message_to_room(message.room_id, message.seq.get(), &json);
            }
            RoomEvent::MemberJoined { room_id, user } => {
                self.subscribe(user.id, room_id);
                self.to_room(
                    room_id,
                    None,
                    &ServerFrame::MemberJoined { room_id: room_id.to_string(), user: user_ref(&user) },
                );
            }
            RoomEvent::MemberLeft { room_id, user } => {
                self.to_room(
                    room_id,
                    None,
                    &ServerFrame::MemberLeft { room_id: room_id.to_string(), user: user_ref(&user) },
                );
                self.unsubscribe(user.id, room_id);
            }
            RoomEvent::RoomDeleted { room_id } => {
                self.to_room(room_id, None, &ServerFrame::RoomDeleted { room_id: room_id.to_string() });
                self.drop_room(room_id);
            }
            RoomEvent::Typing { room_id, user } => {
                let frame = ServerFrame::Typing { room_id: room_id.to_string(), user: user_ref(&user) };
                self.to_room(room_id, Some(user.id), &frame);
            }
            // To the reader's own other sockets too: their unread counts follow.
            RoomEvent::Read { room_id, user, seq } => {
                let frame = ServerFrame::Read { room_id: room_id.to_string(), user: user_ref(&user), seq: seq.get() };
                self.to_room(room_id, None, &frame);
            }
            RoomEvent::Presence { user_id, online, rooms } => {
                let followed: Vec<RoomId> = {
                    let state = self.state.lock();
                    rooms.into_iter().filter(|r| state.rooms.contains_key(r)).collect()
                };
                let mut pending = self.presence.lock();
                for room in followed {
                    pending.entry(room).or_default().insert(user_id, online);
                }
            }
            RoomEvent::SessionEnded { user_id, session, reason } => {
                let state = self.state.lock();
                for id in state.users.get(&user_id).into_iter().flatten() {
                    if let Some(conn) = state.conns.get(id).filter(|conn| conn.session == session) {
                        conn.outbox.close(Closing::Frame(close::SESSION_ENDED, reason.code()));
                    }
                }
            }
        }
    }

    /// A message to the room's sockets; a socket that resumed the room gets it through its
    /// sequencer: once, in seq order, after what it recovers from the log.
    fn message_to_room(&self, room: RoomId, seq: u64, json: &Utf8Bytes) {
        let mut state = self.state.lock();
        // Disjoint fields: the room's followers are read while their sockets change, no copy.
        let State { rooms, conns, .. } = &mut *state;
        let Some(targets) = rooms.get(&room) else { return };
        for id in targets {
            let Some(conn) = conns.get_mut(id) else { continue };
            let Some(resumed) = conn.resumed.get_mut(&room) else {
                match &mut conn.early {
                    Some(early) if early.bytes + json.len() <= early.limit => {
                        early.bytes += json.len();
                        early.frames.push((room, seq, json.clone()));
                    }
                    // Too many before the client spoke: they go out now, in arrival order.
                    Some(_) => {
                        self.release(conn);
                        self.offer(conn, json.clone());
                    }
                    None => self.offer(conn, json.clone()),
                }
                continue;
            };
            // Held frames count against the same bound as the queue.
            let room_left = self.queue_bytes.saturating_sub(conn.outbox.bytes());
            match resumed.live(seq, json.clone(), room_left) {
                Live::Send(frames) => {
                    for frame in frames {
                        self.offer(conn, frame);
                    }
                }
                Live::Held { gap: true } => conn.gaps.notify_one(),
                Live::Held { gap: false } | Live::Dropped => {}
                Live::Overflow => {
                    tracing::info!(user = %conn.user, room = %room, "closing a socket with 1013 too_slow: too many frames held while it resumes");
                    conn.outbox.close(Closing::Frame(close::TRY_AGAIN_LATER, "too_slow"));
                }
            }
        }
    }

    fn offer(&self, conn: &Conn, frame: Utf8Bytes) {
        if let Offer::Overflow { queued_bytes } = conn.outbox.push(frame) {
            tracing::info!(
                user = %conn.user,
                queued_bytes,
                limit = self.queue_bytes,
                "closing a socket with 1013 too_slow: its outbound queue is full"
            );
        }
    }

    /// The client has `room` up to `after`: from now on its messages go through a sequencer,
    /// which holds live ones until `recovered` and `settle` have sent what the log has. Those
    /// that came before the client's first frame are held the same way.
    pub fn resume_begin(&self, id: u64, room: RoomId, after: u64) {
        let mut state = self.state.lock();
        let Some(conn) = state.conns.get_mut(&id) else { return };
        let mut resumed = Resumed::new(after);
        if let Some(early) = &mut conn.early {
            let (mine, others): (Vec<_>, Vec<_>) = early.frames.drain(..).partition(|(r, _, _)| *r == room);
            early.frames = others;
            for (_, seq, frame) in mine {
                early.bytes -= frame.len();
                // While recovering every live frame is held; the bound was checked on arrival.
                let _ = resumed.live(seq, frame, usize::MAX);
            }
        }
        conn.resumed.insert(room, resumed);
    }

    /// The client has spoken (or waited long enough): message frames held since the socket
    /// opened go out, in the order they came, except those of rooms it resumed.
    pub fn release_early(&self, id: u64) {
        let mut state = self.state.lock();
        if let Some(conn) = state.conns.get_mut(&id) {
            self.release(conn);
        }
    }

    fn release(&self, conn: &mut Conn) {
        if let Some(early) = conn.early.take() {
            for (_, _, frame) in early.frames {
                self.offer(conn, frame);
            }
        }
    }

    /// The next seq the socket is owed in `room`, while it resumes it.
    pub fn resume_next(&self, id: u64, room: RoomId) -> Option<u64> {
        self.state.lock().conns.get(&id)?.resumed.get(&room).map(Resumed::next)
    }

    /// A message of `room` read from the log: whether to send it.
    pub fn resume_claim(&self, id: u64, room: RoomId, seq: u64) -> Claim {
        let mut state = self.state.lock();
        match state.conns.get_mut(&id).and_then(|conn| conn.resumed.get_mut(&room)) {
            Some(resumed) => resumed.recovered(seq),
            None => Claim::Skip,
        }
    }

    /// The log has no more for `room`: the held frames that follow go out. False while a seq is
    /// still missing (read the log again); with `skip_hole`, past a seq the log never got.
    pub fn resume_settle(&self, id: u64, room: RoomId, skip_hole: bool) -> bool {
        let mut state = self.state.lock();
        let Some(conn) = state.conns.get_mut(&id) else { return true };
        let Some(resumed) = conn.resumed.get_mut(&room) else { return true };
        if skip_hole {
            resumed.skip_hole();
        }
        let (frames, done) = resumed.settle();
        for frame in frames {
            self.offer(conn, frame);
        }
        done
    }

    /// The client gave up resuming `room` (it may not read it): plain delivery again.
    pub fn resume_end(&self, id: u64, room: RoomId) {
        if let Some(conn) = self.state.lock().conns.get_mut(&id) {
            conn.resumed.remove(&room);
        }
    }

    /// The resumed rooms whose live frames wait behind a seq that did not come: each is marked
    /// recovering again, for the connection to read the missing ones from the log.
    pub fn gapped(&self, id: u64) -> Vec<RoomId> {
        let mut state = self.state.lock();
        let Some(conn) = state.conns.get_mut(&id) else { return Vec::new() };
        let rooms: Vec<RoomId> = conn.resumed.iter().filter(|(_, r)| r.gapped()).map(|(room, _)| *room).collect();
        for room in &rooms {
            if let Some(resumed) = conn.resumed.get_mut(room) {
                resumed.begin();
            }
        }
        rooms
    }

    /// Sends each room's presence changes since the last flush as one frame to its sockets.
    pub fn flush_presence(&self) {
        let pending = std::mem::take(&mut *self.presence.lock());
        for (room, changes) in pending {
            let (mut online, mut offline) = (Vec::new(), Vec::new());
            for (user, is_online) in changes {
                if is_online {
                    online.push(user.to_string());
                } else {
                    offline.push(user.to_string());
                }
            }
            online.sort_unstable();
            offline.sort_unstable();
            self.to_room(room, None, &ServerFrame::Presence { room_id: room.to_string(), online, offline });
        }
    }

    fn to_room(&self, room: RoomId, except_user: Option<UserId>, frame: &ServerFrame<'_>) {
        let targets: HashSet<u64> = self.state.lock().rooms.get(&room).cloned().unwrap_or_default();
        if targets.is_empty() {
            return;
        }
        // Serialized once per event, shared by every socket.
        let json: Utf8Bytes = frame.to_json().into();
        self.send_to(targets, except_user, &json);
    }

    fn send_to(&self, targets: HashSet<u64>, except_user: Option<UserId>, json: &Utf8Bytes) {
        let state = self.state.lock();
        for id in targets {
            let Some(conn) = state.conns.get(&id) else { continue };
            if Some(conn.user) == except_user {
                continue;
            }
            self.offer(conn, json.clone());
        }
    }

    fn subscribe(&self, user: UserId, room: RoomId) {
        let mut state = self.state.lock();
        let ids: Vec<u64> = state.users.get(&user).into_iter().flatten().copied().collect();
        for id in ids {
            if let Some(conn) = state.conns.get_mut(&id) {
                conn.rooms.insert(room);
                if let Some(loading) = &mut conn.loading {
                    loading.left.remove(&room);
                    loading.joined.insert(room);
                }
            }
            // Not awaited: a message sent in the instant before the bus hears the room is in
            // the log, where the client finds it on its next sync.
            drop(self.enter(&mut state.rooms, room, id));
        }
    }

    fn unsubscribe(&self, user: UserId, room: RoomId) {
        let mut state = self.state.lock();
        let ids: Vec<u64> = state.users.get(&user).into_iter().flatten().copied().collect();
        for id in ids {
            if let Some(conn) = state.conns.get_mut(&id) {
                conn.rooms.remove(&room);
                conn.resumed.remove(&room);
                if let Some(loading) = &mut conn.loading {
                    loading.joined.remove(&room);
                    loading.left.insert(room);
                }
            }
            self.leave(&mut state.rooms, room, id);
        }
    }

    fn drop_room(&self, room: RoomId) {
        let mut state = self.state.lock();
        if state.rooms.remove(&room).is_some() {
            self.forget(room);
        }
        // Every socket, not only the room's followers: one still reading its rooms may be about
        // to follow it.
        for conn in state.conns.values_mut() {
            conn.rooms.remove(&room);
            conn.resumed.remove(&room);
            if let Some(loading) = &mut conn.loading {
                loading.joined.remove(&room);
                loading.left.insert(room);
            }
        }
    }
}

pub fn user_ref(user: &UserSummary) -> UserRef {
    UserRef { id: user.id.to_string(), username: user.username.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use application::ports::UserSummary;
    use domain::Username;

    const QUEUE: usize = 1 << 20;

    fn user(n: u128) -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(n))
    }

    /// A socket registered and following `rooms`, as the socket task leaves it.
    fn registered(hub: &Hub, user: UserId, session: SessionId, rooms: Vec<RoomId>) -> Registration {
        let registration = hub.register(user, session, false);
        drop(hub.follow(registration.id, rooms));
        registration
    }

    fn session(n: u128) -> SessionId {
        SessionId(uuid::Uuid::from_u128(0x5e55_0000 + n))
    }

    fn room(n: u128) -> RoomId {
        RoomId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn typing(room_id: RoomId, by: u128) -> RoomEvent {
        RoomEvent::Typing { room_id, user: UserSummary { id: user(by), username: Username::new("bob").unwrap() } }
    }

    #[test]
    fn a_socket_whose_queue_would_pass_its_byte_bound_is_asked_to_close_with_1013() {
        // Arrange: a bound of 150 bytes holds one typing frame (about 130), not two.
        let hub = Hub::new(150, Duration::from_secs(2));
        let mut reg = registered(&hub, user(1), session(1), vec![room(7)]);
        let healthy = registered(&hub, user(3), session(3), vec![room(7)]);

        // Act
        hub.dispatch(typing(room(7), 2));
        let (_, written) = healthy.outbox.take();
        healthy.outbox.written(written);
        hub.dispatch(typing(room(7), 2));

        // Assert
        assert_eq!(reg.outbox.take().0.len(), 1);
        assert_eq!(*reg.closing.borrow_and_update(), Some(Closing::Frame(close::TRY_AGAIN_LATER, "too_slow")));
        assert_eq!(*healthy.closing.borrow(), None, "a socket whose writer keeps up stays open");
    }

    #[test]
    fn typing_is_not_echoed_to_the_typists_own_sockets() {
        let hub = Hub::new(QUEUE, Duration::from_secs(2));
        let own = registered(&hub, user(2), session(2), vec![room(7)]);
        let other = registered(&hub, user(1), session(1), vec![room(7)]);

        hub.dispatch(typing(room(7), 2));

        assert!(own.outbox.take().0.is_empty());
        assert!(!other.outbox.take().0.is_empty());
    }

    fn presence(by: u128, online: bool, rooms: Vec<RoomId>) -> RoomEvent {
        RoomEvent::Presence { user_id: user(by), online, rooms }
    }

    #[test]
    fn a_room_coming_online_at_once_costs_each_socket_one_presence_frame() {
        // Arrange: 200 members, each with a socket in the room.
        let hub = Hub::new(1 << 20, Duration::from_secs(2));
        let regs: Vec<Registration> = (1..=200).map(|n| registered(&hub, user(n), session(n), vec![room(7)])).collect();

        // Act: every one of them comes online within one window.
        for n in 1..=200 {
            hub.dispatch(presence(n, true, vec![room(7)]));
        }
        hub.flush_presence();

        // Assert: one frame each, naming all 200, instead of 199 frames each.
        for reg in &regs {
            let (frames, _) = reg.outbox.take();
            assert_eq!(frames.len(), 1);
            let frame: serde_json::Value = serde_json::from_str(frames[0].as_str()).expect("JSON");
            assert_eq!(frame["online"].as_array().map(Vec::len), Some(200));
        }
    }

    #[test]
    fn within_a_window_a_users_last_presence_wins_and_rooms_not_followed_here_are_skipped() {
        let hub = Hub::new(QUEUE, Duration::from_secs(2));
        let watcher = registered(&hub, user(1), session(1), vec![room(7)]);

        hub.dispatch(presence(2, true, vec![room(7), room(8)]));
        hub.dispatch(presence(2, false, vec![room(7), room(8)]));
        hub.flush_presence();

        let (frames, _) = watcher.outbox.take();
        assert_eq!(frames.len(), 1);
        let frame: serde_json::Value = serde_json::from_str(frames[0].as_str()).expect("JSON");
        assert_eq!(frame["room_id"], room(7).to_string());
        assert_eq!(frame["online"], serde_json::json!([]));
        assert_eq!(frame["offline"], serde_json::json!([user(2).to_string()]));
        assert!(hub.presence.lock().is_empty(), "nothing is kept for room 8, which no socket here follows");
    }

    fn message(room_id: RoomId, seq: u64) -> RoomEvent {
        RoomEvent::Message(crate::tests::fixtures::message(room_id, seq))
    }

    fn seqs(reg: &Registration) -> Vec<u64> {
        reg.outbox
            .take()
            .0
            .iter()
            .map(|f| serde_json::from_str::<serde_json::Value>(f.as_str()).expect("JSON"))
            .filter(|f| f["type"] == "message")
            .map(|f| f["message"]["seq"].as_u64().expect("seq"))
            .collect()
    }

    #[test]
    fn messages_wait_for_the_first_frame_and_a_resumed_rooms_wait_for_its_recovery() {
        // Arrange: a socket opened with ?resume, in rooms 7 and 8; 5 and 6 of room 7 come live.
        let hub = Hub::new(QUEUE, Duration::from_secs(2));
        let reg = hub.register(user(1), session(1), true);
        drop(hub.follow(reg.id, vec![room(7), room(8)]));
        hub.dispatch(message(room(7), 5));
        hub.dispatch(message(room(8), 1));
        hub.dispatch(message(room(7), 6));
        assert!(seqs(&reg).is_empty(), "nothing before the client's first frame");

        // Act: it resumes room 7 from 3; the log has 4 and 5.
        hub.resume_begin(reg.id, room(7), 3);
        hub.release_early(reg.id);
        let room_8 = seqs(&reg);
        let claims: Vec<Claim> = [4, 5].iter().map(|seq| hub.resume_claim(reg.id, room(7), *seq)).collect();
        let settled = hub.resume_settle(reg.id, room(7), false);

        // Assert: room 8 at once; room 7's live 6 after what the log gave, 5 only once.
        assert_eq!(room_8, [1]);
        assert_eq!(claims, [Claim::Send, Claim::Send]);
        assert!(settled);
        assert_eq!(seqs(&reg), [6]);
        hub.dispatch(message(room(7), 6));
        hub.dispatch(message(room(7), 7));
        assert_eq!(seqs(&reg), [7], "a copy of 6 is dropped");
    }

    #[test]
    fn a_listener_that_never_speaks_gets_its_messages_once_64_kib_wait() {
        let hub = Hub::new(QUEUE, Duration::from_secs(2));
        let reg = hub.register(user(1), session(1), false);
        drop(hub.follow(reg.id, vec![room(7)]));

        let mut seq = 0;
        while seqs(&reg).is_empty() {
            seq += 1;
            assert!(seq < 10_000, "never released");
            hub.dispatch(message(room(7), seq));
        }

        assert!(!reg.outbox.is_closing(), "released, not closed");
        assert!(seq > 100, "held a while first ({seq} messages)");
    }

    #[tokio::test]
    async fn draining_asks_every_socket_to_go_away_and_returns_once_the_last_lets_go() {
        let hub = Hub::new(QUEUE, Duration::from_secs(2));
        let reservation = hub.reserve(user(1), 2).expect("room for one");
        let mut registration = registered(&hub, user(1), session(1), vec![room(1)]);
        let released = tokio::spawn(async move {
            registration.closing.changed().await.expect("close requested");
            let asked = *registration.closing.borrow();
            drop(reservation);
            asked
        });

        let drained = hub.drain(Duration::from_secs(5)).await;

        assert!(drained);
        assert_eq!(released.await.expect("task"), Some(Closing::Frame(close::GOING_AWAY, "going_away")));
    }

    #[tokio::test]
    async fn draining_gives_up_at_the_deadline_while_a_socket_stays_open() {
        let hub = Hub::new(QUEUE, Duration::from_secs(2));
        let _held = hub.reserve(user(1), 2).expect("room for one");

        let drained = hub.drain(Duration::from_millis(50)).await;

        assert!(!drained);
    }

    #[test]
    fn reservations_cap_sockets_per_user_until_released() {
        let hub = Hub::new(QUEUE, Duration::from_secs(2));
        let first = hub.reserve(user(1), 2);
        let second = hub.reserve(user(1), 2);

        assert!(first.is_ok() && second.is_ok());
        assert_eq!(hub.reserve(user(1), 2).err(), Some(Refusal::TooMany));
        drop(first);
        assert!(hub.reserve(user(1), 2).is_ok());
    }

    #[tokio::test]
    async fn once_draining_no_socket_is_taken_on() {
        let hub = Hub::new(QUEUE, Duration::from_secs(2));

        assert!(hub.drain(Duration::from_millis(10)).await);

        assert_eq!(hub.reserve(user(1), 2).err(), Some(Refusal::Draining));
        assert!(hub.is_draining());
    }

    #[test]
    fn typing_is_forwarded_at_most_once_per_interval() {
        let hub = Hub::new(QUEUE, Duration::from_secs(60));

        assert!(hub.allow_typing(user(1), room(1)));
        assert!(!hub.allow_typing(user(1), room(1)));
        assert!(hub.allow_typing(user(1), room(2)));
    }

    #[test]
    fn a_deleted_room_stops_reaching_its_former_sockets() {
        let hub = Hub::new(QUEUE, Duration::from_secs(2));
        let reg = registered(&hub, user(1), session(1), vec![room(7)]);

        hub.dispatch(RoomEvent::RoomDeleted { room_id: room(7) });
        hub.dispatch(typing(room(7), 2));

        assert_eq!(reg.outbox.take().0.len(), 1, "room_deleted is delivered, nothing after it");
    }

    #[test]
    fn ending_a_session_closes_only_that_sessions_sockets() {
        // Arrange: user 1 with two sessions, one socket each.
        let hub = Hub::new(QUEUE, Duration::from_secs(1));
        let laptop = registered(&hub, user(1), session(1), vec![room(7)]);
        let phone = registered(&hub, user(1), session(2), vec![room(7)]);

        // Act
        hub.dispatch(RoomEvent::SessionEnded {
            user_id: user(1),
            session: session(1),
            reason: application::ports::SessionEndReason::LoggedOut,
        });

        // Assert
        assert_eq!(*laptop.closing.borrow(), Some(Closing::Frame(close::SESSION_ENDED, "logged_out")));
        assert_eq!(*phone.closing.borrow(), None);
    }

    /// The rooms the hub follows on the bus, as a bus subscription would hold them.
    #[derive(Default)]
    struct BusRooms(Mutex<HashSet<RoomId>>);

    impl FollowedRooms for BusRooms {
        fn follow(&self, room: RoomId) -> Heard {
            self.0.lock().insert(room);
            std::future::ready(Ok(())).boxed()
        }

        fn unfollow(&self, room: RoomId) {
            self.0.lock().remove(&room);
        }
    }

    fn on_bus(bus: &BusRooms) -> Vec<RoomId> {
        let mut rooms: Vec<RoomId> = bus.0.lock().iter().copied().collect();
        rooms.sort_unstable();
        rooms
    }

    #[test]
    fn the_node_follows_a_room_on_the_bus_while_any_of_its_sockets_is_in_it() {
        // Arrange: user 1 in room 7; user 2 in rooms 7 and 8.
        let hub = Hub::new(QUEUE, Duration::from_secs(1));
        let bus = Arc::new(BusRooms::default());
        hub.attach(bus.clone());
        let first = registered(&hub, user(1), session(1), vec![room(7)]);
        let _second = registered(&hub, user(2), session(2), vec![room(7), room(8)]);
        let both = on_bus(&bus);

        // Act: the first socket goes, user 2 leaves room 7, room 8 is deleted, user 2 joins 9.
        hub.unregister(first.id);
        let one_left = on_bus(&bus);
        hub.dispatch(left(room(7), 2));
        let after_leaving = on_bus(&bus);
        hub.dispatch(RoomEvent::RoomDeleted { room_id: room(8) });
        let after_deletion = on_bus(&bus);
        hub.dispatch(joined(room(9), 2));

        // Assert
        assert_eq!(both, [room(7), room(8)]);
        assert_eq!(one_left, [room(7), room(8)], "user 2 is still in both");
        assert_eq!(after_leaving, [room(8)]);
        assert!(after_deletion.is_empty());
        assert_eq!(on_bus(&bus), [room(9)]);
    }

    fn left(room_id: RoomId, by: u128) -> RoomEvent {
        RoomEvent::MemberLeft { room_id, user: UserSummary { id: user(by), username: Username::new("bob").unwrap() } }
    }

    fn joined(room_id: RoomId, by: u128) -> RoomEvent {
        RoomEvent::MemberJoined { room_id, user: UserSummary { id: user(by), username: Username::new("bob").unwrap() } }
    }

    #[test]
    fn a_removal_heard_while_the_rooms_are_read_wins_over_a_read_that_missed_it() {
        // Arrange: the socket registered, then its rooms were read just before the removal.
        let hub = Hub::new(QUEUE, Duration::from_secs(1));
        let registration = hub.register(user(1), session(1), false);
        let stale_read = vec![room(7), room(8)];

        // Act
        hub.dispatch(left(room(7), 1));
        drop(hub.follow(registration.id, stale_read));

        // Assert
        assert_eq!(hub.rooms_of(user(1)), vec![room(8)]);
    }

    #[test]
    fn a_join_heard_while_the_rooms_are_read_is_kept_even_if_the_read_missed_it() {
        let hub = Hub::new(QUEUE, Duration::from_secs(1));
        let registration = hub.register(user(1), session(1), false);

        hub.dispatch(joined(room(9), 1));
        drop(hub.follow(registration.id, Vec::new()));

        assert_eq!(hub.rooms_of(user(1)), vec![room(9)]);
    }

    #[test]
    fn a_room_deleted_while_the_rooms_are_read_is_not_followed() {
        let hub = Hub::new(QUEUE, Duration::from_secs(1));
        let registration = hub.register(user(1), session(1), false);

        hub.dispatch(RoomEvent::RoomDeleted { room_id: room(7) });
        drop(hub.follow(registration.id, vec![room(7)]));

        assert!(hub.rooms_of(user(1)).is_empty());
    }

    #[test]
    fn a_reload_drops_a_room_whose_removal_was_never_heard_and_keeps_delivering_the_rest() {
        // Arrange: following 7 and 8; the store no longer has 7.
        let hub = Hub::new(QUEUE, Duration::from_secs(1));
        let socket = registered(&hub, user(1), session(1), vec![room(7), room(8)]);

        // Act
        let ids = hub.reload_started(user(1));
        for id in ids {
            drop(hub.follow(id, vec![room(8)]));
        }
        hub.dispatch(typing(room(7), 2));
        hub.dispatch(typing(room(8), 2));

        // Assert
        let (frames, _) = socket.outbox.take();
        assert_eq!(frames.len(), 1, "nothing of room 7");
        assert!(frames[0].contains(&room(8).to_string()), "{}", frames[0]);
    }
}
