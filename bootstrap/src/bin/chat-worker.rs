//! The `chat-worker` binary: the worker app alone.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match bootstrap::main_for(bootstrap::Role::Worker).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-worker: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
