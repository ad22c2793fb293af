//! Readiness checks and start-up errors.

use adapter_redis::{RedisConfig, RedisEventBus, RedisHealth, RedisMessageLog};
use application::ports::HealthCheck;

use crate::support::{redis_url, Scope};

#[tokio::test]
#[ignore = "needs Redis (CHAT_TEST_REDIS_URL)"]
async fn a_reachable_redis_is_healthy() {
    let scope = Scope::new();
    let health = RedisHealth::connect(&redis_url(), adapter_redis::RedisMode::Standalone).await.expect("connect");
    let log_health = scope.log().await.health();

    assert_eq!(health.name(), "redis");
    health.check().await.expect("healthy");
    log_health.check().await.expect("healthy");
}

#[tokio::test]
async fn an_unreachable_redis_fails_at_start_with_an_error_naming_it_but_not_the_password() {
    let url = "redis://:hunter2@127.0.0.1:1";

    let (log, bus) = futures::join!(RedisMessageLog::connect(RedisConfig::new(url)), RedisEventBus::connect(url, "x:"));

    let log_error = format!("{:#}", log.err().expect("unreachable"));
    let bus_error = format!("{:#}", bus.err().expect("unreachable"));
    for error in [log_error, bus_error] {
        assert!(error.contains("127.0.0.1:1"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
