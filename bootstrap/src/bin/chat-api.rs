//! The `chat-api` binary: the api app alone.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match bootstrap::main_for(bootstrap::Role::Api).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-api: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
