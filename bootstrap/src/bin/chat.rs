//! The `chat` binary: api, file, socket and worker in one process on the embedded adapters.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match bootstrap::main_for(bootstrap::Role::All).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
