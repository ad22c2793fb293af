//! The real `chat` binaries: start-up, configuration errors, and shutdown on SIGTERM.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{signal, start_chat, wait_for_exit};

#[tokio::test]
async fn chat_with_no_configuration_serves_health_and_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, addr) = start_chat(dir.path(), &[]);

    let live = reqwest::get(format!("http://{addr}/health/live")).await.expect("request");
    let ready = reqwest::get(format!("http://{addr}/health/ready")).await.expect("request");
    signal(&child, "-TERM");
    let status = wait_for_exit(&mut child, Duration::from_secs(20));

    assert_eq!(live.status(), 200);
    assert_eq!(ready.status(), 200);
    assert!(status.success(), "exit status {status}");
    assert!(dir.path().join("jwt-secret").exists(), "the generated secret is kept in the data directory");
    assert!(dir.path().join("chat.db").exists());
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_the_database_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().expect("temp dir");
    let data = parent.path().join("data");
    let (mut child, addr) = start_chat(&data, &[]);

    let ready = reqwest::get(format!("http://{addr}/health/ready")).await.expect("request");
    signal(&child, "-TERM");
    wait_for_exit(&mut child, Duration::from_secs(20));

    assert_eq!(ready.status(), 200);
    let mode = |name: &str| std::fs::metadata(data.join(name)).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(""), 0o700, "data directory");
    for file in ["chat.db", "jwt-secret"] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
}

#[test]
fn a_wrong_value_stops_start_up_with_a_message_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_chat"))
        .env_clear()
        .env("CHAT_ADDR", "not-an-address")
        .output()
        .expect("chat runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("CHAT_ADDR") && stderr.contains("expected"), "{stderr}");
}

#[test]
fn a_short_jwt_secret_is_refused_without_echoing_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_chat"))
        .env_clear()
        .env("CHAT_JWT_SECRET", "short-secret-value")
        .output()
        .expect("chat runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("CHAT_JWT_SECRET"), "{stderr}");
    assert!(!stderr.contains("short-secret-value"), "{stderr}");
}

#[test]
fn an_app_run_alone_without_redis_and_mongodb_says_which_variables_it_needs() {
    for binary in [env!("CARGO_BIN_EXE_chat-api"), env!("CARGO_BIN_EXE_chat-socket"), env!("CARGO_BIN_EXE_chat-worker")]
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = Command::new(binary)
            .env_clear()
            .env("CHAT_ADDR", "127.0.0.1:0")
            .env("CHAT_DATA_DIR", dir.path())
            .env("CHAT_JWT_SECRET", "0123456789abcdef0123456789abcdef")
            .output()
            .expect("binary runs");

        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{binary}");
        assert!(stderr.contains("CHAT_REDIS_URL") && stderr.contains("CHAT_MONGODB_URL"), "{binary}: {stderr}");
    }
}

#[test]
fn an_unreachable_mongodb_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_chat-api"))
        .env_clear()
        .env("CHAT_ADDR", "127.0.0.1:0")
        .env("CHAT_DATA_DIR", dir.path())
        .env("CHAT_JWT_SECRET", "0123456789abcdef0123456789abcdef")
        .env("CHAT_REDIS_URL", "redis://127.0.0.1:1")
        .env("CHAT_MONGODB_URL", "mongodb://127.0.0.1:1/chat?serverSelectionTimeoutMS=500")
        .output()
        .expect("binary runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("CHAT_MONGODB_URL"), "{stderr}");
}
