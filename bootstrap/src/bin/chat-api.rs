//! The `chat-api` binary: the api app alone.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bootstrap::main_for(bootstrap::AppKind::Api, "chat-api").await
}
