use clap::Parser;
use xlmc_exporter::cli::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    xlmc_telemetry::init_logging(cli.log_format, "info");
    xlmc_exporter::run(cli)
}
