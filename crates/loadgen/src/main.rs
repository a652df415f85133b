//! `loadgen`: drives a location-sharing server the way real clients do (REST, then one Phoenix V2
//! WebSocket per participant) and reports delivery latency, loss, and the server's CPU and
//! memory. See `loadgen --help` and benches/run.

mod args;
mod churn;
mod coord;
mod fanout;
mod hist;
mod http;
mod report;
mod rest;
mod schedule;
mod stats;
mod sys;
mod timefmt;
mod worker;
mod ws;

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match args::parse(&argv) {
        Ok(args::Command::Help) => {
            print!("{}", args::usage());
            return ExitCode::SUCCESS;
        }
        Ok(args::Command::Run(a)) => *a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // The process clock's base is taken before anything is timed.
    let _ = timefmt::Clock::get();
    sys::install_signal_handlers();
    let nofile = sys::raise_nofile_limit();
    if let Some(slice) = args.worker {
        let report = worker::run_process(&args, slice, &worker::Stdio);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", worker::report_line(&report));
        let _ = out.flush();
        return ExitCode::SUCCESS;
    }
    ExitCode::from(coord::run(args, nofile))
}
