//! The `location-sharing` binary: `serve` (the default) or `migrate`.

use std::process::ExitCode;

use location_sharing::config::{Settings, SETTINGS};
use location_sharing::db::Db;
use location_sharing::startup::Application;
use location_sharing::telemetry::{self, Chain};

enum Command {
    Serve,
    Migrate,
    Help,
    Version,
}

/// The command line is two words and two flags, all of them fixed; everything else is
/// configured by environment variables (`config`), whose errors name the variable. clap would
/// parse these four forms and add nothing, so they are matched here.
fn parse_args() -> Result<Command, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["serve"] => Ok(Command::Serve),
        ["migrate"] => Ok(Command::Migrate),
        ["-h"] | ["--help"] | ["help"] => Ok(Command::Help),
        ["-V"] | ["--version"] => Ok(Command::Version),
        other => Err(format!("unknown arguments: {}", other.join(" "))),
    }
}

fn usage() -> String {
    let mut out = format!(
        "location-sharing {}\nReal-time, anonymous, temporary location sharing (Phoenix Channels over WebSocket).\n\n\
         Usage:\n  location-sharing [serve]   run the server (the default)\n  \
         location-sharing migrate   apply database migrations and exit\n  \
         location-sharing --help    this text\n\n\
         Settings (environment variables; a .env file is read when present):\n",
        env!("CARGO_PKG_VERSION")
    );
    for s in SETTINGS {
        out.push_str(&format!("  {:<28} {:<42} {}\n", s.name, s.default, s.help));
    }
    out
}

fn main() -> ExitCode {
    let command = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("location-sharing {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Serve | Command::Migrate => {}
    }

    // A missing .env is fine; a malformed one is not.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("error: cannot read .env: {e}");
            return ExitCode::from(1);
        }
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    telemetry::init(settings.log_format);

    match command {
        Command::Migrate => migrate(&settings),
        _ => serve(settings),
    }
}

fn migrate(settings: &Settings) -> ExitCode {
    let result = Db::connect(&settings.database_url, 1).and_then(|db| db.migrate());
    match result {
        Ok(n) => {
            log::info!("{n} migration(s) applied to {}", settings.database_url);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", Chain(&e));
            ExitCode::from(1)
        }
    }
}

fn serve(settings: Settings) -> ExitCode {
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await.map_err(|e| Chain(&e).to_string())?;
        app.run_until_stopped().await.map_err(|e| Chain(&e).to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
