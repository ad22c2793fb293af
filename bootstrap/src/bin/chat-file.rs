//! The `chat-file` binary: the file app alone.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bootstrap::main_for(bootstrap::AppKind::File, "chat-file").await
}
