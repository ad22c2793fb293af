//! Integration tests against a real Redis (`CHAT_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`).

mod contract;
mod event_bus;
mod health;
mod message_log;
mod support;
