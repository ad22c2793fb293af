//! `chat-bench`: the load and benchmark tool. Scenarios and results: docs/benchmarks.md.

use std::process::ExitCode;

use bootstrap::bench::{self, Args, Outcome, USAGE};

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) if args.help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(args) => args,
        Err(e) => {
            eprintln!("chat-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("chat-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench::run(&args)) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Lossy) => {
            eprintln!("chat-bench: messages were lost or duplicated (see the table)");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("chat-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
