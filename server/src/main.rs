use std::process::ExitCode;

use clap::Parser;
use xlmc_server::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = Settings::parse();
    xlmc_telemetry::init_logging(settings.log_format, "info");
    let result = match settings.validate() {
        Ok(()) => xlmc_server::run(settings).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
