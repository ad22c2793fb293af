//! chat-bench: drives a running chat server, or the bare relay of `examples/relay.rs`, over real
//! WebSockets and HTTP, and reports throughput, end-to-end latency, lost or duplicated messages
//! and server memory per socket or after a flood of logins. How to run it, and results:
//! docs/benchmarks.md.
//!
//! It imports nothing of the server: it is a client, and stays out of the server's crates.

mod api;
mod archive;
mod args;
mod conn;
mod history;
mod idle;
mod load;
mod logins;
mod report;
mod traffic;
mod util;

use serde::Serialize;
use serde_json::json;

use std::process::ExitCode;

use args::{Args, Scenario, USAGE};

/// How a run ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Every check passed.
    Clean,
    /// Some acked message was lost or duplicated.
    Lossy,
}

/// Raises the soft open-file limit to the hard one; returns the limit now in force.
fn raise_nofile() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}

fn emit<T: Serialize>(args: &Args, setup_seconds: f64, results: &T, table: &report::Table, nofile: Option<u64>) {
    let text = table.render();
    if args.json {
        eprint!("{text}");
        let doc = json!({
            "scenario": args.scenario.name(),
            "run_id": args.run_id,
            "url": args.url,
            "ws": args.ws,
            "senders_ws": args.senders_ws,
            "baseline": args.baseline,
            "setup_seconds": setup_seconds,
            "bench_nofile_limit": nofile,
            "results": results,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        println!("chat-bench {} (run {}, setup {:.1} s)", args.scenario.name(), args.run_id, setup_seconds);
        print!("{text}");
    }
}

/// Runs the scenario the arguments name and prints its results.
///
/// # Errors
/// When the server cannot be reached, setting up fails, or nothing could be measured.
async fn run(args: &Args) -> anyhow::Result<Outcome> {
    let nofile = raise_nofile();
    if args.setup_only {
        let api = api::Api::new(&args.url, &args.metrics_url)?;
        let (users, layout) = traffic::layout_for(args);
        let pop = traffic::populate(&api, args, users, layout).await?;
        eprintln!(
            "set up {} users in {} rooms in {:.1} s; run again with the same --users-file within the token lifetime",
            pop.users.len(),
            pop.room_ids.len(),
            pop.setup_seconds
        );
        return Ok(Outcome::Clean);
    }
    let clean = match args.scenario {
        Scenario::Fanout | Scenario::Rooms | Scenario::Relay => {
            let (reports, setup) = match args.scenario {
                Scenario::Fanout => traffic::fanout(args).await?,
                Scenario::Rooms => traffic::rooms(args).await?,
                _ => traffic::relay(args).await?,
            };
            emit(args, setup, &reports, &report::load_table(&reports), nofile);
            reports.iter().all(load::LoadReport::clean)
        }
        Scenario::Idle => {
            let (reports, setup) = idle::idle(args).await?;
            emit(args, setup, &reports, &idle::idle_table(&reports), nofile);
            true
        }
        Scenario::History => {
            let (report, setup) = history::history(args).await?;
            emit(args, setup, &report, &history::history_table(&report), nofile);
            report.fill.clean()
        }
        Scenario::Logins => {
            let report = logins::logins(args).await?;
            emit(args, 0.0, &report, &logins::logins_table(&report), nofile);
            true
        }
        Scenario::BurstArchive => {
            let (report, setup) = archive::burst_archive(args).await?;
            let mut table = archive::archive_table(&report);
            for (name, cells) in report::load_table(std::slice::from_ref(&report.burst)).rows().skip(1) {
                table.row(&name, cells);
            }
            emit(args, setup, &report, &table, nofile);
            report.burst.clean()
        }
    };
    Ok(if clean { Outcome::Clean } else { Outcome::Lossy })
}

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
    match runtime.block_on(run(&args)) {
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
