//! `exporter import-xlm model.pth --codes codes --vocab vocab --out DIR`: a facebookresearch/XLM
//! (or MASS) checkpoint to an xlmc model directory (config.json + safetensors + tokenizer).
//!
//! XLM saves `{'encoder': state_dict, 'decoder': state_dict, 'params': {...}, 'dico_id2word':
//! {...}, …}` for translation models and `{'model': state_dict, …}` for MLM/TLM pretraining.
//! Keys may carry DataParallel's `module.` prefix. Translation checkpoints import as they are; a
//! pretrained `model` becomes both encoder and decoder (XLM's own way of starting MT from a
//! pretrained model), the decoder's cross-attention freshly initialised and reported.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail, ensure};
use tch::{Device, Tensor};
use xlmc_pth::{Checkpoint, Value};
use xlmc_tokenizer::Tokenizer;
use xlmc_transformer::{Config, Seq2Seq};

use crate::{cli::ImportXlmArgs, model_dir};

/// What the import did, printed by the CLI.
#[derive(Debug)]
pub struct ImportReport {
    pub out: PathBuf,
    pub config: Config,
    pub parameters: i64,
    pub languages: Vec<String>,
    /// Checkpoint tensors xlmc has no use for (e.g. the encoder's output layer).
    pub ignored: Vec<String>,
    /// Model tensors the checkpoint lacks, left at their fresh initialisation.
    pub initialised: Vec<String>,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "imported: {} parameters ({}+{} layers, {} wide, {} heads, {} words, languages {})",
            self.parameters,
            c.n_enc_layers,
            c.n_dec_layers,
            c.emb_dim,
            c.n_heads,
            c.n_words,
            self.languages.join(",")
        )?;
        if !self.ignored.is_empty() {
            writeln!(f, "ignored (unused by a translation model): {}", self.ignored.join(", "))?;
        }
        if !self.initialised.is_empty() {
            writeln!(f, "initialised fresh (not in the checkpoint): {}", self.initialised.join(", "))?;
        }
        writeln!(f, "model → {}", self.out.display())
    }
}

fn param<'a>(params: &'a Value, key: &str) -> anyhow::Result<&'a Value> {
    params.get(key).with_context(|| format!("params has no `{key}`"))
}

fn int_param(params: &Value, key: &str) -> anyhow::Result<i64> {
    let value = param(params, key)?;
    value.as_i64().with_context(|| format!("params `{key}` is {value}, not an integer"))
}

fn float_param(params: &Value, key: &str) -> anyhow::Result<f64> {
    let value = param(params, key)?;
    value.as_f64().with_context(|| format!("params `{key}` is {value}, not a number"))
}

fn bool_param(params: &Value, key: &str, default: bool) -> anyhow::Result<bool> {
    match params.get(key) {
        None => Ok(default),
        Some(value) => value.as_bool().with_context(|| format!("params `{key}` is {value}, not a bool")),
    }
}

/// XLM's languages in id order, from `params.id2lang` (or `lang2id`).
fn languages(params: &Value) -> anyhow::Result<Vec<String>> {
    let mut by_id: Vec<(i64, String)> = Vec::new();
    if let Some(entries) = params.get("id2lang").and_then(Value::entries) {
        for (id, lang) in entries {
            by_id.push((id.as_i64().context("id2lang key")?, lang.as_str().context("id2lang value")?.to_owned()));
        }
    } else if let Some(entries) = params.get("lang2id").and_then(Value::entries) {
        for (lang, id) in entries {
            by_id.push((id.as_i64().context("lang2id value")?, lang.as_str().context("lang2id key")?.to_owned()));
        }
    }
    by_id.sort();
    Ok(by_id.into_iter().map(|(_, lang)| lang).collect())
}

/// The model's shape from XLM's `params` (and the position table's size).
pub fn config_from_params(params: &Value, max_positions: i64) -> anyhow::Result<Config> {
    if !bool_param(params, "gelu_activation", true)? {
        bail!("params `gelu_activation` is false: ReLU XLM models are not supported (xlmc uses GELU)");
    }
    if !bool_param(params, "share_inout_emb", true)? {
        bail!("params `share_inout_emb` is false: xlmc ties the output layer to the embeddings");
    }
    if params.get("use_memory").and_then(Value::as_bool) == Some(true) {
        bail!("params `use_memory` is true: product-key memory layers are not supported");
    }
    let (n_enc_layers, n_dec_layers) = match (params.get("n_enc_layers"), params.get("n_dec_layers")) {
        (Some(_), Some(_)) => (int_param(params, "n_enc_layers")?, int_param(params, "n_dec_layers")?),
        _ => {
            let n = int_param(params, "n_layers")?;
            (n, n)
        }
    };
    let config = Config {
        n_words: int_param(params, "n_words")?,
        emb_dim: int_param(params, "emb_dim")?,
        n_enc_layers,
        n_dec_layers,
        n_heads: int_param(params, "n_heads")?,
        dropout: float_param(params, "dropout")?,
        attention_dropout: float_param(params, "attention_dropout")?,
        n_langs: int_param(params, "n_langs")?,
        max_positions,
        sinusoidal_embeddings: bool_param(params, "sinusoidal_embeddings", false)?,
        pad_index: int_param(params, "pad_index")?,
        eos_index: int_param(params, "eos_index")?,
    };
    config.validate().map_err(|e| anyhow::anyhow!("params: {e}"))?;
    Ok(config)
}

/// A state dict's tensors by name (`module.` prefixes stripped), as f32 tch tensors.
fn state_dict(checkpoint: &Checkpoint, value: &Value, what: &str) -> anyhow::Result<BTreeMap<String, Tensor>> {
    let entries = value.entries().with_context(|| format!("`{what}` is {value}, not a state dict"))?;
    let mut out = BTreeMap::new();
    for (key, tensor) in entries {
        let name = key.as_str().with_context(|| format!("`{what}` has a non-string key {key}"))?;
        let name = name.strip_prefix("module.").unwrap_or(name);
        let Value::Tensor(tensor) = tensor else { bail!("`{what}.{name}` is {tensor}, not a tensor") };
        ensure!(tensor.dtype.is_float(), "`{what}.{name}` is a {:?} tensor", tensor.dtype);
        let data = checkpoint.tensor_f32(tensor).with_context(|| format!("`{what}.{name}`"))?;
        let shape: Vec<i64> = tensor.shape.iter().map(|&d| d as i64).collect();
        out.insert(name.to_owned(), Tensor::from_slice(&data).view(shape.as_slice()));
    }
    Ok(out)
}

/// Builds the model from a checkpoint already read.
pub fn import(checkpoint: &Checkpoint, path: &Path) -> anyhow::Result<(Seq2Seq, Vec<String>, ImportReport)> {
    let root = &checkpoint.value;
    let keys: Vec<String> = root.entries().map(|e| e.iter().map(|(k, _)| k.to_string()).collect()).unwrap_or_default();
    let params = root.get("params").with_context(|| format!("{}: no `params` (keys: {keys:?})", path.display()))?;
    let (encoder, decoder, pretrained) = match (root.get("encoder"), root.get("decoder"), root.get("model")) {
        (Some(e), Some(d), _) => (state_dict(checkpoint, e, "encoder")?, state_dict(checkpoint, d, "decoder")?, false),
        (_, _, Some(m)) => (state_dict(checkpoint, m, "model")?, state_dict(checkpoint, m, "model")?, true),
        _ => bail!("{}: neither `encoder`+`decoder` nor `model` (keys: {keys:?})", path.display()),
    };
    let max_positions = encoder
        .get("position_embeddings.weight")
        .map(|t| t.size()[0])
        .context("the encoder has no position_embeddings.weight")?;
    let config = config_from_params(params, max_positions)?;
    let use_lang_emb = bool_param(params, "use_lang_emb", true)?;
    let mut model = Seq2Seq::new(config.clone(), Device::Cpu)?;
    let fresh = model.vs.variables();

    let mut stored: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut ignored = Vec::new();
    for (side, tensors) in [("encoder", encoder), ("decoder", decoder)] {
        for (name, tensor) in tensors {
            let full = format!("{side}.{name}");
            if name.starts_with("pred_layer.") && (side == "encoder" || name == "pred_layer.proj.weight") {
                // The decoder's projection weight is the embedding table (tied); check it is.
                if side == "decoder"
                    && let Some(embeddings) = stored.get("decoder.embeddings.weight")
                    && !embeddings.equal(&tensor)
                {
                    bail!("{full} differs from decoder.embeddings.weight: untied output layers are not supported");
                }
                ignored.push(full);
                continue;
            }
            stored.insert(full, tensor);
        }
    }
    let mut initialised = Vec::new();
    for (name, value) in &fresh {
        if stored.contains_key(name) {
            continue;
        }
        let is_lang = name.ends_with("lang_embeddings.weight");
        let is_cross = name.contains(".encoder_attn.") || name.contains(".layer_norm15.");
        if is_lang && !use_lang_emb {
            // XLM adds no language embedding then; a zero table is the same computation.
            stored.insert(name.clone(), Tensor::zeros_like(value));
        } else if pretrained && is_cross {
            stored.insert(name.clone(), value.copy());
            initialised.push(name.clone());
        }
    }
    model.copy_from(path, stored)?;
    let languages = languages(params)?;
    let report = ImportReport {
        out: PathBuf::new(),
        config,
        parameters: model.parameters(),
        languages: languages.clone(),
        ignored,
        initialised: compress_names(&initialised),
    };
    Ok((model, languages, report))
}

/// `decoder.encoder_attn.0.k_lin.weight`, … → `decoder.encoder_attn.*` (one line per family).
fn compress_names(names: &[String]) -> Vec<String> {
    let mut families: Vec<String> = names
        .iter()
        .map(|n| {
            let mut parts = n.splitn(3, '.');
            let (side, module) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            format!("{side}.{module}.*")
        })
        .collect();
    families.dedup();
    families
}

/// Every id the checkpoint's dictionary names must be the same token in the tokenizer.
fn check_dictionary(checkpoint: &Checkpoint, tokenizer: &Tokenizer) -> anyhow::Result<()> {
    let Some(entries) = checkpoint.value.get("dico_id2word").and_then(Value::entries) else {
        return Ok(());
    };
    let mut mismatches = Vec::new();
    for (id, word) in entries {
        let (Some(id), Some(word)) = (id.as_i64(), word.as_str()) else { continue };
        let ours = tokenizer.tokens(&[id as u32]).pop().unwrap_or_default();
        if id as usize >= tokenizer.vocab_size() || ours != word {
            mismatches.push(format!("{id}: checkpoint {word:?}, --vocab {ours:?}"));
        }
    }
    ensure!(
        mismatches.is_empty(),
        "the checkpoint's dictionary and --vocab disagree on {} ids (first: {})",
        mismatches.len(),
        mismatches.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
    );
    ensure!(
        entries.len() == tokenizer.vocab_size(),
        "the checkpoint's dictionary has {} words, --vocab gives {}",
        entries.len(),
        tokenizer.vocab_size()
    );
    Ok(())
}

pub fn run(args: &ImportXlmArgs) -> anyhow::Result<ImportReport> {
    let checkpoint = Checkpoint::read(&args.checkpoint).with_context(|| format!("{}", args.checkpoint.display()))?;
    let (model, languages, mut report) = import(&checkpoint, &args.checkpoint)?;
    let languages = match &args.languages {
        Some(list) => list.split(',').map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect(),
        None => languages,
    };
    ensure!(
        languages.len() as i64 == model.config.n_langs,
        "{} languages ({}) for a model with n_langs {}: pass --languages in XLM's lang2id order",
        languages.len(),
        languages.join(","),
        model.config.n_langs
    );
    let tokenizer = xlmc_tokenizer::from_fastbpe(&args.codes, &args.vocab, languages.clone())
        .with_context(|| format!("--codes {} --vocab {}", args.codes.display(), args.vocab.display()))?;
    ensure!(
        tokenizer.vocab_size() as i64 == model.config.n_words,
        "--vocab gives {} tokens (14 specials included) but the checkpoint has n_words {}",
        tokenizer.vocab_size(),
        model.config.n_words
    );
    check_dictionary(&checkpoint, &tokenizer)?;

    model_dir::save_new(&args.out, args.force, &model, &tokenizer)?;
    report.out = args.out.clone();
    report.languages = languages;
    Ok(report)
}
