//! The `chat` binary: api, file, socket and worker in one process on the embedded adapters.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bootstrap::main_for(bootstrap::AppKind::All, "chat").await
}
