//! Handler tests: the real routes and use cases on poem's `TestClient`, every port a mock, so each
//! status a route documents can be reached, including the failures a real socket cannot provoke.

mod accounts;
mod files;
pub(crate) mod fixtures;
mod health;
mod messages;
mod rooms;
