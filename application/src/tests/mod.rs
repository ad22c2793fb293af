//! Unit tests of the use cases against mockall mocks of every port.

mod accounts;
mod archive;
mod files;
mod fixtures;
mod membership;
mod messaging;
mod presence;
mod rooms;
mod routing;
mod search;
