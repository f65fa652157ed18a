use std::process::ExitCode;

use xlmc_server::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_args_and_config(std::env::args_os().collect()) {
        Ok(settings) => settings,
        Err(error) => match error.downcast::<clap::Error>() {
            Ok(clap_error) => clap_error.exit(), // --help, --version, usage errors
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::FAILURE;
            }
        },
    };
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
