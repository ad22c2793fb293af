//! Starting and stopping the real `chat` binary, shared by the binary-level tests.

#![allow(dead_code)] // each test crate uses its own part of this module

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `chat` on a free port in `data_dir` with `settings` on top of an empty environment;
/// returns the child and its address once it logs that it listens.
pub fn start_chat(data_dir: &std::path::Path, settings: &[(&str, &str)]) -> (Child, String) {
    let (child, addr, _) = start_chat_logged(data_dir, settings);
    (child, addr)
}

/// As `start_chat`, also handing back the JSON log events written before it listened.
pub fn start_chat_logged(
    data_dir: &std::path::Path,
    settings: &[(&str, &str)],
) -> (Child, String, Vec<serde_json::Value>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
    command
        .env_clear()
        .env("CHAT_ADDR", "127.0.0.1:0")
        .env("CHAT_DATA_DIR", data_dir)
        .env("CHAT_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in settings {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("chat starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut before = Vec::new();
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if event["fields"]["message"] == "listening" {
            let addr = event["fields"]["addr"].as_str().expect("addr field").to_owned();
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return (child, addr, before);
        }
        before.push(event);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("chat did not report its address");
}

/// Sends `signal` (e.g. `-TERM`, `-KILL`) to the child.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill").arg(signal).arg(child.id().to_string()).status().expect("kill runs");
    assert!(status.success());
}

pub fn wait_for_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
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
