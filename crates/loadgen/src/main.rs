//! `loadgen`: drives a location-sharing server the way real clients do (REST, then one Phoenix V2
//! WebSocket per participant) and reports delivery latency, loss, and the server's CPU and
//! memory. See `loadgen --help` and benches/run.

mod advice;
mod args;
mod churn;
mod coord;
mod fanout;
mod hist;
mod http;
mod report;
mod rest;
mod schedule;
mod soak;
mod stats;
mod sys;
mod timefmt;
mod worker;
mod ws;

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match args::parse_from(std::env::args_os()) {
        Ok(a) => a,
        Err(e) if args::is_help(&e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
        Err(e) => {
            eprintln!("{}", args::one_line(&e));
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
