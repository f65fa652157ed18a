//! `exporter report --models teacher,student,… --test data/en-fr/test --out report/`: every
//! model measured in its own child process (`exporter report-model`, so peak memory is its own),
//! then `report.json`, `report.md` (with ratios to the teacher, the first model) and plots:
//! BLEU vs tokens/s, batch-1 latency distribution, and each run's training curves. A model that
//! is missing, fails, or has another vocabulary than the teacher is named under "errors"; the
//! rest of the report is still written.

use std::{
    fmt::Write,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::{cli::ReportArgs, plot, report_model::Measurement, report_speed};

#[derive(Debug, Serialize, Deserialize)]
struct ModelError {
    model: String,
    error: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Ratios {
    model: String,
    bleu_kept_percent: f64,
    speedup_batch1: f64,
    speedup_throughput: f64,
    /// The speed-ups' lowest and highest per-round values.
    #[serde(default)]
    speedup_batch1_range: Option<[f64; 2]>,
    #[serde(default)]
    speedup_throughput_range: Option<[f64; 2]>,
    size_ratio: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Report {
    test: String,
    device: String,
    threads: String,
    cores: usize,
    /// Timing rounds per model (`report_speed`).
    #[serde(default = "one_round")]
    speed_rounds: usize,
    teacher: String,
    models: Vec<Measurement>,
    ratios: Vec<Ratios>,
    errors: Vec<ModelError>,
}

fn one_round() -> usize {
    1
}

fn resolve(entry: &str, args: &ReportArgs) -> PathBuf {
    let path = PathBuf::from(entry);
    if path.exists() { path } else { args.models_dir.join(entry) }
}

/// One model measured in a child process (`report-model`): the JSON it wrote, or its error text.
fn measure(entry: &str, args: &ReportArgs, scratch: &Path, timing_only: bool) -> Result<String, String> {
    let path = resolve(entry, args);
    if !path.is_dir() {
        return Err(format!("{}: no such model folder or bundle", path.display()));
    }
    let json = scratch.join(format!("{}.json", entry.replace('/', "_")));
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let m = &args.measure;
    let mut command = Command::new(exe);
    command
        .arg("report-model")
        .arg("--path")
        .arg(&path)
        .arg("--json")
        .arg(&json)
        .arg("--test")
        .arg(&m.test)
        .args(["--source-lang", &m.source_lang, "--target-lang", &m.target_lang])
        .args(["--batch-size", &m.batch_size.to_string(), "--beam", &m.beam.to_string()])
        .args(["--latency-sentences", &m.latency_sentences.to_string()])
        .args(["--speed-sentences", &m.speed_sentences.to_string()])
        .arg("--batch-sizes")
        .arg(m.batch_sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(","))
        .args(["--device", if m.device == crate::cli::Device::Cuda { "cuda" } else { "cpu" }]);
    if let Some(n) = m.sentences {
        command.args(["--sentences", &n.to_string()]);
    }
    if let Some(t) = m.threads {
        command.args(["--threads", &t.to_string()]);
    }
    if timing_only {
        command.arg("--timing-only");
    }
    let output = command.output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(last.into_iter().rev().collect::<Vec<_>>().join(" | "));
    }
    std::fs::read_to_string(&json).map_err(|e| e.to_string())
}

fn parse<T: serde::de::DeserializeOwned>(json: Result<String, String>) -> Result<T, String> {
    serde_json::from_str(&json?).map_err(|e| e.to_string())
}

fn throughput_at(m: &Measurement, batch: usize) -> f64 {
    report_speed::throughput_at(&m.throughput, batch)
}

/// The batch size the report compares throughput at: 32 when measured, else the first.
fn compared_batch(batch_sizes: &[usize]) -> usize {
    batch_sizes.iter().copied().find(|&b| b == 32).or(batch_sizes.first().copied()).unwrap_or(1)
}

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    if args.replot {
        let path = args.out.join("report.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("--out {}: --replot", path.display()))?;
        let report: Report = serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let measured: Vec<usize> =
            report.models.first().map(|m| m.throughput.iter().map(|t| t.batch).collect()).unwrap_or_default();
        return write_outputs(&report, compared_batch(&measured), &args.out);
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("--out {}", args.out.display()))?;
    let scratch = tempfile::tempdir()?;
    let (mut measured, mut errors) = (Vec::new(), Vec::new());
    let mut failed = |entry: &str, error: String| {
        eprintln!("report: {entry}: {error}");
        errors.push(ModelError { model: entry.to_owned(), error });
    };
    for entry in &args.models {
        eprintln!("report: measuring {entry}");
        match parse::<Measurement>(measure(entry, args, scratch.path(), false)) {
            Ok(m) => measured.push((entry.clone(), m)),
            Err(error) => failed(entry, error),
        }
    }
    // Students must share the teacher's BPE vocabulary to be compared on it.
    if let Some(teacher) = measured.first().map(|(_, m)| m.vocabulary.clone()) {
        let (same, other): (Vec<_>, Vec<_>) = measured.into_iter().partition(|(_, m)| m.vocabulary == teacher);
        for (entry, m) in other {
            failed(&entry, format!("{}: its vocabulary (tokenizer.json) differs from the teacher's", m.path));
        }
        measured = same;
    }
    for round in 2..=args.speed_rounds {
        eprintln!("report: timing round {round} of {}", args.speed_rounds);
        let mut kept = Vec::new();
        for (entry, mut m) in measured {
            match parse(measure(&entry, args, scratch.path(), true)) {
                Ok(timing) => {
                    m.add_round(timing);
                    kept.push((entry, m));
                }
                Err(error) => failed(&entry, error),
            }
        }
        measured = kept;
    }
    let models: Vec<Measurement> = measured.into_iter().map(|(_, m)| m).collect();
    anyhow::ensure!(!models.is_empty(), "no model could be measured: {errors:?}");
    let teacher = &models[0];
    let batch = compared_batch(&args.measure.batch_sizes);
    let ratios: Vec<Ratios> = models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let batch1 = report_speed::paired(&teacher.rounds, &m.rounds, |t, s| t.latency_p50_ms / s.latency_p50_ms);
            let throughput = report_speed::paired(&teacher.rounds, &m.rounds, |t, s| {
                s.tokens_per_second(batch) / t.tokens_per_second(batch)
            });
            Ratios {
                model: m.name.clone(),
                // Undefined (null in JSON) against a teacher with BLEU 0; the teacher itself is 100.
                bleu_kept_percent: match (i, teacher.bleu > 0.0) {
                    (0, _) => 100.0,
                    (_, true) => 100.0 * m.bleu / teacher.bleu,
                    (_, false) => f64::NAN,
                },
                speedup_batch1: batch1.median,
                speedup_throughput: throughput.median,
                speedup_batch1_range: Some([batch1.min, batch1.max]),
                speedup_throughput_range: Some([throughput.min, throughput.max]),
                size_ratio: teacher.bytes as f64 / m.bytes as f64,
            }
        })
        .collect();
    let report = Report {
        test: args.measure.test.display().to_string(),
        device: format!("{:?}", args.measure.device).to_lowercase(),
        threads: args.measure.threads.map_or("libtorch default, ONNX Runtime 1".into(), |t| t.to_string()),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        speed_rounds: args.speed_rounds,
        teacher: teacher.name.clone(),
        ratios,
        errors,
        models,
    };
    xlmc_atomic_file::write(&args.out.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    write_outputs(&report, batch, &args.out)
}

/// report.md, the plots and the training curves of the models that have them.
fn write_outputs(report: &Report, batch: usize, dir: &Path) -> anyhow::Result<()> {
    let out = |name: &str| dir.join(name);
    xlmc_atomic_file::write(&out("report.md"), markdown(report, batch).as_bytes())?;
    xlmc_atomic_file::write(&out("pareto.svg"), pareto(report, batch).as_bytes())?;
    xlmc_atomic_file::write(&out("latency.svg"), latency(report).as_bytes())?;
    xlmc_atomic_file::write(&out("sizes.svg"), sizes(report, batch).as_bytes())?;
    for m in &report.models {
        if let Some(curves) = training_curves(Path::new(&m.path)) {
            std::fs::copy(&curves, out(&format!("curves-{}.svg", m.name)))?;
        }
    }
    println!("{}", markdown(report, batch));
    println!("report → {}", dir.display());
    Ok(())
}

/// The training curves of a model: train/distill write `curves.svg` beside `model/`; a bundle
/// names the model folder it was exported from in its manifest.
fn training_curves(path: &Path) -> Option<PathBuf> {
    let model_dir = match xlmc_bundle::Bundle::open(path) {
        Ok(bundle) => PathBuf::from(bundle.manifest.source.get("model_dir")?),
        Err(_) => path.to_owned(),
    };
    Some(model_dir.join("../curves.svg")).filter(|curves| curves.is_file())
}

fn markdown(r: &Report, batch: usize) -> String {
    let mut md = format!(
        "# Teacher vs students\n\nTest set `{}` ({} sentences), device {}, {} cores, threads: {}. BLEU/chrF: sacreBLEU-exact \
         (`{}`, `{}`).\n\n",
        r.test,
        r.models.first().map_or(0, |m| m.sentences),
        r.device,
        r.cores,
        r.threads,
        r.models.first().map_or("", |m| &m.bleu_signature),
        r.models.first().map_or("", |m| &m.chrf_signature),
    );
    md += "| model | backend | precision | parameters | MiB | BLEU | chrF | p50 ms | p95 ms | p99 ms |";
    for t in r.models.first().map(|m| m.throughput.as_slice()).unwrap_or_default() {
        let _ = write!(md, " tok/s @{} |", t.batch);
    }
    md += " peak RSS MiB |\n|";
    md += &" --- |".repeat(11 + r.models.first().map_or(0, |m| m.throughput.len()));
    md += "\n";
    for m in &r.models {
        let _ = write!(
            md,
            "| {} | {} | {} | {} | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} |",
            m.name,
            m.backend,
            m.precision,
            m.parameters,
            m.bytes as f64 / 1048576.0,
            m.bleu,
            m.chrf,
            m.latency_p50_ms,
            m.latency_p95_ms,
            m.latency_p99_ms
        );
        for t in &m.throughput {
            let _ = write!(md, " {:.0} |", t.tokens_per_second);
        }
        let _ = writeln!(md, " {:.0} |", m.peak_rss_mib);
    }
    let _ = writeln!(
        md,
        "\nRatios to the teacher (`{}`): BLEU kept, speed-up at batch 1 (p50) and at batch {batch} (tokens/s), size. \
         Speeds: {} timing round(s), each timing every model in turn; a speed is the median over rounds, a speed-up \
         the median of the per-round ratios (lowest–highest in brackets).\n",
        r.teacher, r.speed_rounds
    );
    md += "| model | BLEU kept % | speed-up batch 1 | speed-up batch throughput | size × smaller |\n| --- | ---: | ---: | ---: | ---: |\n";
    let spread = |value: f64, range: Option<[f64; 2]>| match range {
        Some([low, high]) if r.speed_rounds > 1 => format!("{value:.2} ({low:.2}–{high:.2})"),
        _ => format!("{value:.2}"),
    };
    for x in &r.ratios {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {} | {} | {:.2} |",
            x.model,
            x.bleu_kept_percent,
            spread(x.speedup_batch1, x.speedup_batch1_range),
            spread(x.speedup_throughput, x.speedup_throughput_range),
            x.size_ratio
        );
    }
    if !r.errors.is_empty() {
        md += "\nNot measured:\n\n";
        for e in &r.errors {
            let _ = writeln!(md, "- `{}`: {}", e.model, e.error);
        }
    }
    md += "\nPlots: `pareto.svg` (BLEU vs tokens/s), `latency.svg` (batch-1 latency distribution), `sizes.svg` (size and throughput), `curves-*.svg`.\n";
    md
}

/// BLEU against tokens/s at the report's batch size (log scale), every point labelled, the
/// Pareto frontier drawn.
fn pareto(r: &Report, batch: usize) -> String {
    let points: Vec<plot::Labelled> = r
        .models
        .iter()
        .map(|m| plot::Labelled { label: m.name.clone(), x: throughput_at(m, batch), y: m.bleu })
        .collect();
    plot::pareto_chart(
        &format!("BLEU vs decoding speed (batch {batch}; threads: {})", r.threads),
        &format!("target tokens/s at batch {batch} (log scale)"),
        "BLEU (test)",
        &points,
    )
}

/// Cumulative distribution of batch-1 latencies per model.
fn latency(r: &Report) -> String {
    let series: Vec<plot::Series> = r
        .models
        .iter()
        .map(|m| plot::Series {
            name: &m.name,
            points: m
                .latencies_ms
                .iter()
                .enumerate()
                .map(|(k, &ms)| (ms, 100.0 * (k + 1) as f64 / m.latencies_ms.len() as f64))
                .collect(),
            markers: false,
        })
        .collect();
    plot::line_charts(&[plot::LineChart {
        title: "batch-1 latency per sentence".into(),
        x_label: "latency (ms)",
        y_label: "% of sentences within",
        series,
    }])
}

/// Size on disk and throughput per model, side by side.
fn sizes(r: &Report, batch: usize) -> String {
    let bars = |value: &dyn Fn(&Measurement) -> f64| r.models.iter().map(|m| (m.name.clone(), value(m))).collect();
    plot::bar_charts(&[
        plot::BarChart {
            title: "size on disk".into(),
            x_label: "MiB",
            bars: bars(&|m| m.bytes as f64 / (1024.0 * 1024.0)),
            decimals: 1,
        },
        plot::BarChart {
            title: format!("throughput at batch {batch}"),
            x_label: "target tokens/s",
            bars: bars(&|m| throughput_at(m, batch)),
            decimals: 0,
        },
    ])
}
