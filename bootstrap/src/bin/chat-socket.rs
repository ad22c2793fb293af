//! The `chat-socket` binary: the socket app alone.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match bootstrap::main_for(bootstrap::Role::Socket).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-socket: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
