//! The real `chat` binaries: start-up, configuration errors, and shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `chat` on a free port in a temp data directory; returns the child and its address.
fn start_chat(data_dir: &std::path::Path) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat"))
        .env_clear()
        .env("CHAT_ADDR", "127.0.0.1:0")
        .env("CHAT_DATA_DIR", data_dir)
        .env("CHAT_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("chat starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if event["fields"]["message"] == "listening" {
            let addr = event["fields"]["addr"].as_str().expect("addr field").to_owned();
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return (child, addr);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("chat did not report its address");
}

fn terminate(child: &std::process::Child) {
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill runs");
    assert!(status.success());
}

fn wait_for_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chat did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn chat_with_no_configuration_serves_health_and_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, addr) = start_chat(dir.path());

    let live = reqwest::get(format!("http://{addr}/health/live")).await.expect("request");
    let ready = reqwest::get(format!("http://{addr}/health/ready")).await.expect("request");
    terminate(&child);
    let status = wait_for_exit(&mut child, Duration::from_secs(20));

    assert_eq!(live.status(), 200);
    assert_eq!(ready.status(), 200);
    assert!(status.success(), "exit status {status}");
    assert!(dir.path().join("jwt-secret").exists(), "the generated secret is kept in the data directory");
    assert!(dir.path().join("chat.db").exists());
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
