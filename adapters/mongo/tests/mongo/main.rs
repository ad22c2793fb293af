//! Integration tests against a MongoDB-wire server (`CHAT_TEST_MONGODB_URL`, default `mongodb://127.0.0.1:27018`).

mod contract;
mod store;
mod support;
