//! Message search: the caller's rooms only, newest first, through the archive's full-text index.

use std::sync::Arc;

use domain::{Message, MessageId, RetentionPolicy, RoomId, SearchQuery, Standing, User};

use crate::ports::{ArchiveSearchError, Clock, MessageArchive, MessageSearch, RoomRepository};
use crate::rooms::PageSize;

/// The most results one page carries.
pub const SEARCH_MAX: u32 = 50;

/// A valid search: the words, optionally one room, and where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    pub query: SearchQuery,
    pub room: Option<RoomId>,
    /// The `next_cursor` of the previous page: only messages older than it.
    pub before: Option<MessageId>,
    pub limit: PageSize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// Newest first.
    pub items: Vec<Message>,
    /// Where the next page starts; `None` on the last one.
    pub next_cursor: Option<MessageId>,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("room not found")]
    NotFound,
    #[error("you are not a member of this room")]
    Forbidden,
    /// The message store of this deployment cannot search text.
    #[error("search is not available on this server")]
    Unavailable,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Clone)]
pub struct Search {
    rooms: Arc<dyn RoomRepository>,
    archive: Arc<dyn MessageArchive>,
    clock: Arc<dyn Clock>,
    /// When set, expired messages are not found, even before the purge deletes them.
    retention: Option<RetentionPolicy>,
}

impl Search {
    pub fn new(rooms: Arc<dyn RoomRepository>, archive: Arc<dyn MessageArchive>, clock: Arc<dyn Clock>) -> Self {
        Self { rooms, archive, clock, retention: None }
    }

    #[must_use]
    pub fn with_retention(self, retention: RetentionPolicy) -> Self {
        Self { retention: Some(retention), ..self }
    }

    /// Messages holding every word of the query, in the rooms `actor` belongs to now (or in the
    /// one room asked for), newest first. Messages become searchable once archived.
    ///
    /// # Errors
    /// With a room: `NotFound` unless it is visible to `actor`, `Forbidden` for a public room
    /// they are not in.
    pub async fn search(&self, actor: &User, request: SearchRequest) -> Result<SearchPage, SearchError> {
        let rooms = match request.room {
            Some(room) => {
                if !self.rooms.is_member(room, actor.id).await? {
                    let standing = self.rooms.get(room).await?.map_or(Standing::Hidden, |r| r.standing(actor.id));
                    return Err(match standing {
                        Standing::Outsider => SearchError::Forbidden,
                        Standing::Member | Standing::Hidden => SearchError::NotFound,
                    });
                }
                vec![room]
            }
            None => self.rooms.room_ids_for_member(actor.id).await?,
        };
        if rooms.is_empty() {
            return Ok(SearchPage { items: Vec::new(), next_cursor: None });
        }
        let limit = request.limit.get() as usize;
        let search = MessageSearch {
            query: request.query,
            rooms,
            not_before: self.retention.map(|retention| retention.message_cutoff(self.clock.now())),
            before: request.before,
            limit: limit + 1,
        };
        let mut items = self.archive.search(&search).await.map_err(|e| match e {
            ArchiveSearchError::Unavailable => SearchError::Unavailable,
            ArchiveSearchError::Unknown(e) => SearchError::Unknown(e),
        })?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = if more { items.last().map(|m| m.id) } else { None };
        Ok(SearchPage { items, next_cursor })
    }
}
