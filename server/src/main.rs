use clap::Parser;
use xlmc_server::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    xlmc_telemetry::init_logging(settings.log_format, "info");
    settings.validate()?;
    xlmc_server::run(settings).await
}
