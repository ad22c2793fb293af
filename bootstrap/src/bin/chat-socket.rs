//! The `chat-socket` binary: the socket app alone.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bootstrap::main_for(bootstrap::AppKind::Socket, "chat-socket").await
}
