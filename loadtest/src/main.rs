//! coregate-load: load generator (`coregate-load [run] ...`), benchmark backend (`serve`), floor relay
//! (`relay`) and side-by-side harness (`compare`). Parses the command line and hands off; nothing else.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "coregate-load",
    version,
    about = "Honest HTTP/1.1 load generator and benchmark harness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate load against a URL (closed loop, or open loop with --rate).
    Run(coregate_load::load::LoadArgs),
    /// A fast fixed-response HTTP/1.1 backend for benchmarks and tests.
    Serve(coregate_load::serve::ServeArgs),
    /// A bare TCP relay (no HTTP work): the CPU-per-request floor.
    Relay(coregate_load::relay::RelayArgs),
    /// Run coregate, nginx and HAProxy side by side on the same work.
    Compare(coregate_load::compare::CompareArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(a) => coregate_load::load::main(a),
        Command::Serve(a) => coregate_load::serve::main(a),
        Command::Relay(a) => coregate_load::relay::main(a),
        Command::Compare(a) => coregate_load::compare::main(a),
    };
    ExitCode::from(code)
}
