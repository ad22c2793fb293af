//! The real `chat` binaries: start-up, configuration errors, and shutdown on SIGTERM.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{signal, start_chat, start_chat_logged, wait_for_exit};

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
fn help_prints_usage_and_exits_zero_without_starting_or_creating_anything() {
    let cwd = tempfile::tempdir().expect("temp dir");
    for binary in [env!("CARGO_BIN_EXE_chat"), env!("CARGO_BIN_EXE_chat-api")] {
        let output =
            Command::new(binary).arg("--help").env_clear().current_dir(cwd.path()).output().expect("binary runs");

        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{binary}: {output:?}");
        assert!(stdout.contains("Usage:") && stdout.contains("CHAT_"), "{binary}: {stdout}");
    }
    assert!(!cwd.path().join("data").exists(), "--help created ./data");
}

#[test]
fn a_split_app_names_every_missing_setting_at_once_and_writes_nothing() {
    let parent = tempfile::tempdir().expect("temp dir");
    let data = parent.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_chat-api"))
        .env_clear()
        .env("CHAT_ADDR", "127.0.0.1:0")
        .env("CHAT_DATA_DIR", &data)
        .output()
        .expect("binary runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    for var in ["CHAT_REDIS_URL", "CHAT_MONGODB_URL", "CHAT_JWT_SECRET", "CHAT_FILE_URL", "CHAT_INTERNAL_TOKEN"] {
        assert!(stderr.contains(var), "{var} not named: {stderr}");
    }
    assert!(!data.exists(), "the data directory (and a jwt-secret) was written before failing");
}

#[tokio::test]
async fn an_unknown_chat_variable_is_warned_about_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");

    let (mut child, _, logged) = start_chat_logged(dir.path(), &[("CHAT_RETENTION_DAYZ", "7")]);
    signal(&child, "-TERM");
    wait_for_exit(&mut child, Duration::from_secs(20));

    let warned = logged.iter().any(|e| e["level"] == "WARN" && e["fields"]["variable"] == "CHAT_RETENTION_DAYZ");
    assert!(warned, "{logged:?}");
}

#[test]
fn text_logs_written_to_a_pipe_carry_no_colour_codes() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat"))
        .env_clear()
        .env("CHAT_ADDR", "127.0.0.1:0")
        .env("CHAT_DATA_DIR", dir.path())
        .env("CHAT_LOG_FORMAT", "text")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("chat starts");
    let stdout = child.stdout.take().expect("stdout");

    let first_lines: Vec<String> = BufReader::new(stdout).lines().take(1).map_while(Result::ok).collect();
    signal(&child, "-TERM");
    wait_for_exit(&mut child, Duration::from_secs(20));

    assert!(!first_lines.is_empty());
    assert!(first_lines.iter().all(|l| !l.contains('\u{1b}')), "{first_lines:?}");
}

#[test]
fn an_unreachable_mongodb_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_chat-worker"))
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
