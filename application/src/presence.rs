//! Presence use cases: who came online or went, across nodes, and who in a room is online now.

use std::sync::Arc;

use domain::{RoomId, Standing, User, UserId};

use crate::ports::{EventBus, PresenceRegistry, RoomEvent, RoomRepository};

#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("room not found")]
    NotFound,
    #[error("you are not a member of this room")]
    Forbidden,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Clone)]
pub struct Presence {
    rooms: Arc<dyn RoomRepository>,
    registry: Arc<dyn PresenceRegistry>,
    bus: Arc<dyn EventBus>,
}

impl Presence {
    pub fn new(rooms: Arc<dyn RoomRepository>, registry: Arc<dyn PresenceRegistry>, bus: Arc<dyn EventBus>) -> Self {
        Self { rooms, registry, bus }
    }

    /// `actor` opened their first socket on this node. The members of `rooms` hear it only when
    /// `actor` was online on no node before. Best effort: a failure is logged, not returned.
    pub async fn came_online(&self, actor: &User, rooms: Vec<RoomId>) {
        match self.registry.came_online(actor.id).await {
            Ok(true) => self.announce(actor.id, true, rooms).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, user_id = %actor.id, "could not record that a user came online"),
        }
    }

    /// `actor`'s last socket on this node closed. The members of `rooms` hear it only when
    /// `actor` is online on no node now.
    pub async fn went_offline(&self, actor: &User, rooms: Vec<RoomId>) {
        match self.registry.went_offline(actor.id).await {
            Ok(true) => self.announce(actor.id, false, rooms).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, user_id = %actor.id, "could not record that a user went offline"),
        }
    }

    /// Renews this node's word for `users`, who still have sockets here.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn still_online(&self, users: &[UserId]) -> anyhow::Result<()> {
        self.registry.still_online(users).await
    }

    /// The members of `room_id` online now, on any node.
    ///
    /// # Errors
    /// `NotFound` for an unknown room or a private one `actor` is not in; `Forbidden` for a
    /// public one they are not in.
    pub async fn online_in(&self, actor: &User, room_id: RoomId) -> Result<Vec<UserId>, PresenceError> {
        let room = self.rooms.get(room_id).await?.ok_or(PresenceError::NotFound)?;
        match room.standing(actor.id) {
            Standing::Member => {}
            Standing::Outsider => return Err(PresenceError::Forbidden),
            Standing::Hidden => return Err(PresenceError::NotFound),
        }
        let members: Vec<UserId> = room.members().iter().map(|m| m.user_id).collect();
        Ok(self.registry.online_among(&members).await?)
    }

    async fn announce(&self, user_id: UserId, online: bool, rooms: Vec<RoomId>) {
        if let Err(e) = self.bus.publish(RoomEvent::Presence { user_id, online, rooms }).await {
            tracing::warn!(error = %e, %user_id, "could not publish presence");
        }
    }
}
