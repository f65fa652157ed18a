//! The `exporter` command: everything that needs libtorch (training, import, pruning,
//! distillation, ONNX export) lives behind this binary; the server only needs ONNX Runtime.
//!
//! Subcommands are implemented in their own modules; [`run`] dispatches.

pub mod average;
pub mod bench;
pub mod cli;
pub mod convert;
pub mod data;
pub mod distill;
pub mod doctor;
pub mod export;
pub mod import_xlm;
pub mod model_dir;
pub mod pipeline;
mod pipeline_plan;
pub mod plot;
pub mod prune;
pub mod report;
pub mod report_model;
pub mod report_speed;
pub mod score;
pub mod seqkd;
pub mod serve_demo;
pub mod stage_command;
pub mod stage_stamps;
pub mod tokenizer;
pub mod torch_device;
pub mod train;
pub mod translate;

use cli::{Cli, Command};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Doctor(args) => {
            let report = doctor::check(&args)?;
            print!("{report}");
            Ok(())
        }
        Command::Data(command) => {
            print!("{}", data::run(&command)?);
            Ok(())
        }
        Command::Tokenizer(command) => tokenizer::run(&command),
        Command::Train(args) => train::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Translate(args) => translate::run(&args),
        Command::Export(args) => {
            print!("{}", export::run(&args)?);
            Ok(())
        }
        Command::Verify(args) => {
            print!("{}", export::verify(&args)?);
            Ok(())
        }
        Command::Distill(command) => match &command.action {
            Some(cli::DistillAction::Seqkd(args)) => {
                print!("{}", seqkd::run(args)?);
                Ok(())
            }
            Some(cli::DistillAction::Cache(args)) => distill::run_cache(args),
            None => distill::run(&command.train),
        },
        Command::Prune(args) => {
            print!("{}", prune::run(&args)?);
            Ok(())
        }
        Command::ImportXlm(args) => {
            print!("{}", import_xlm::run(&args)?);
            Ok(())
        }
        Command::Convert(args) => {
            print!("{}", convert::run(&args)?);
            Ok(())
        }
        Command::Average(args) => {
            print!("{}", average::run(&args)?);
            Ok(())
        }
        Command::Score(args) => {
            print!("{}", score::run(&args)?);
            Ok(())
        }
        Command::Pipeline(args) => pipeline::run(&args),
        Command::Report(args) => report::run(&args),
        Command::ReportModel(args) => {
            let json = if args.timing_only {
                serde_json::to_string_pretty(&report_model::run_timing(&args.path, &args.measure)?)?
            } else {
                serde_json::to_string_pretty(&report_model::run(&args.path, &args.measure)?)?
            };
            anyhow::Context::with_context(xlmc_atomic_file::write(&args.json, json.as_bytes()), || {
                format!("--json {}", args.json.display())
            })
        }
    }
}
