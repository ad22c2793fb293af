//! The `chat-file` binary: the file app alone.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match bootstrap::main_for(bootstrap::Role::File).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-file: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
