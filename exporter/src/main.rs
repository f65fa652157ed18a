use std::process::ExitCode;

use clap::Parser;
use xlmc_exporter::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    xlmc_telemetry::init_logging(cli.log_format, "info");
    match xlmc_exporter::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, the whole chain of causes: what failed and on which input.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
