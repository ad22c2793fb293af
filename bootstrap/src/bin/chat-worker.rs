//! The `chat-worker` binary: the worker app alone.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bootstrap::main_for(bootstrap::AppKind::Worker, "chat-worker").await
}
