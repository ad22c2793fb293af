//! The embedded presence registry: one node, so counting each user's online marks is enough.

use std::collections::HashMap;
use std::sync::Arc;

use application::ports::PresenceRegistry;
use async_trait::async_trait;
use domain::UserId;
use parking_lot::Mutex;

/// Clones share one count per user.
#[derive(Clone, Default)]
pub struct InMemoryPresence {
    online: Arc<Mutex<HashMap<UserId, u32>>>,
}

#[async_trait]
impl PresenceRegistry for InMemoryPresence {
    async fn came_online(&self, user: UserId) -> anyhow::Result<bool> {
        let mut online = self.online.lock();
        let count = online.entry(user).or_default();
        *count += 1;
        Ok(*count == 1)
    }

    async fn went_offline(&self, user: UserId) -> anyhow::Result<bool> {
        let mut online = self.online.lock();
        let Some(count) = online.get_mut(&user) else { return Ok(true) };
        *count = count.saturating_sub(1);
        if *count == 0 {
            online.remove(&user);
            return Ok(true);
        }
        Ok(false)
    }

    /// One process: a node that stops cannot leave marks behind.
    async fn still_online(&self, _users: &[UserId]) -> anyhow::Result<()> {
        Ok(())
    }

    async fn online_among(&self, users: &[UserId]) -> anyhow::Result<Vec<UserId>> {
        let online = self.online.lock();
        Ok(users.iter().copied().filter(|user| online.contains_key(user)).collect())
    }
}
