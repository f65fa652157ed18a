//! A model folder — `config.json`, the weights (`model.safetensors` or shards) and the tokenizer
//! files side by side — as `exporter train`/`prune`/`distill`/`average` write it. This is the one
//! loader for them: `exporter` (translate, bench, export, distill, …) and the server's libtorch
//! backend both read folders through [`load_any`], so both accept and refuse the same folders.
//! The architecture comes from `config.json` (xlmc-bundle's contract: none named = Transformer).

use std::path::{Path, PathBuf};

use xlmc_bigru::BiGru;
use xlmc_bundle::contract::{self, Architecture};
use xlmc_decoding::{DecodeOptions, Hypothesis, decode};
use xlmc_tokenizer::Tokenizer;
use xlmc_transformer::Seq2Seq;

#[derive(Debug, thiserror::Error)]
pub enum ModelFolderError {
    #[error("{path}: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error(transparent)]
    Transformer(#[from] xlmc_transformer::CheckpointError),
    #[error(transparent)]
    BiGru(#[from] xlmc_bigru::CheckpointError),
    #[error("{dir}: tokenizer: {source}")]
    Tokenizer { dir: PathBuf, source: xlmc_tokenizer::TokenizerError },
    #[error("{dir}: the tokenizer has {tokenizer} tokens but the model {model}")]
    Vocabulary { dir: PathBuf, tokenizer: usize, model: i64 },
    #[error("{dir} holds a {found} model; this needs a {wanted} model")]
    Architecture { dir: PathBuf, found: Architecture, wanted: Architecture },
}

/// A model of either architecture, for whatever takes any model (translate, bench, serving).
#[derive(Debug)]
pub enum AnyModel {
    Transformer(Box<Seq2Seq>),
    BiGru(Box<BiGru>),
}

impl AnyModel {
    /// Parameters, tied embeddings counted once.
    pub fn parameters(&self) -> i64 {
        match self {
            AnyModel::Transformer(m) => m.parameters(),
            AnyModel::BiGru(m) => m.parameters(),
        }
    }

    pub fn n_words(&self) -> i64 {
        match self {
            AnyModel::Transformer(m) => m.config.n_words,
            AnyModel::BiGru(m) => m.config.n_words,
        }
    }

    pub fn architecture(&self) -> Architecture {
        match self {
            AnyModel::Transformer(_) => Architecture::Transformer,
            AnyModel::BiGru(_) => Architecture::BiGru,
        }
    }

    /// Batched decoding through the shared core, whatever the architecture.
    pub fn decode(
        &self,
        sources: &[Vec<u32>],
        (source, target): (i64, i64),
        options: DecodeOptions,
    ) -> Result<Vec<Hypothesis>, DecodeFailure> {
        match self {
            AnyModel::Transformer(m) => {
                decode(&mut m.translator(source, target), sources, options).map_err(|e| DecodeFailure(Box::new(e)))
            }
            AnyModel::BiGru(m) => {
                decode(&mut m.translator(source, target), sources, options).map_err(|e| DecodeFailure(Box::new(e)))
            }
        }
    }
}

/// A decoding error of either architecture's step model.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DecodeFailure(Box<dyn std::error::Error + Send + Sync>);

/// The architecture `dir/config.json` names.
pub fn architecture(dir: &Path) -> Result<Architecture, ModelFolderError> {
    let path = dir.join(contract::CONFIG_FILE);
    let config_error = |detail: String| ModelFolderError::Config { path: path.clone(), detail };
    let text = std::fs::read_to_string(&path).map_err(|e| config_error(e.to_string()))?;
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| config_error(e.to_string()))?;
    contract::folder_architecture(&config).map_err(config_error)
}

/// Loads a model folder of either architecture on `device`, and its tokenizer (whose vocabulary
/// must be the model's).
pub fn load_any(dir: &Path, device: tch::Device) -> Result<(AnyModel, Tokenizer), ModelFolderError> {
    let model = match architecture(dir)? {
        Architecture::Transformer => AnyModel::Transformer(Box::new(Seq2Seq::load(dir, device)?)),
        Architecture::BiGru => AnyModel::BiGru(Box::new(BiGru::load(dir, device)?)),
    };
    let tokenizer = tokenizer(dir, model.n_words())?;
    Ok((model, tokenizer))
}

/// Loads a Transformer model folder (teachers, cut students): a BiGRU folder is refused by name.
pub fn load(dir: &Path, device: tch::Device) -> Result<(Seq2Seq, Tokenizer), ModelFolderError> {
    let found = architecture(dir)?;
    if found != Architecture::Transformer {
        return Err(ModelFolderError::Architecture { dir: dir.to_owned(), found, wanted: Architecture::Transformer });
    }
    let model = Seq2Seq::load(dir, device)?;
    let tokenizer = tokenizer(dir, model.config.n_words)?;
    Ok((model, tokenizer))
}

fn tokenizer(dir: &Path, n_words: i64) -> Result<Tokenizer, ModelFolderError> {
    let tokenizer =
        Tokenizer::load(dir).map_err(|source| ModelFolderError::Tokenizer { dir: dir.to_owned(), source })?;
    if tokenizer.vocab_size() as i64 != n_words {
        return Err(ModelFolderError::Vocabulary {
            dir: dir.to_owned(),
            tokenizer: tokenizer.vocab_size(),
            model: n_words,
        });
    }
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use xlmc_tokenizer::{TrainOptions, train};

    use super::*;

    /// A tokenizer learned from a few lines, and its vocabulary size.
    fn tokenizer(dir: &Path) -> (Tokenizer, i64) {
        let text = dir.join("text.txt");
        std::fs::write(&text, "the cat sits on the mat\nle chat est assis sur le tapis\n".repeat(20)).unwrap();
        let options = TrainOptions {
            files: vec![text],
            vocab_size: 270, // the byte alphabet and the specials: no merge
            min_frequency: 1,
            languages: vec!["en".into(), "fr".into()],
            show_progress: false,
        };
        let tokenizer = train(&options).unwrap();
        let n = tokenizer.vocab_size() as i64;
        (tokenizer, n)
    }

    #[test]
    fn either_architecture_loads_by_its_config_and_mismatches_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (tok, n) = tokenizer(dir.path());
        let transformer = dir.path().join("transformer");
        Seq2Seq::new(xlmc_transformer::Config::tiny(n), tch::Device::Cpu).unwrap().save(&transformer).unwrap();
        tok.save(&transformer).unwrap();
        let bigru = dir.path().join("bigru");
        BiGru::new(xlmc_bigru::Config::tiny(n), tch::Device::Cpu).save(&bigru).unwrap();
        tok.save(&bigru).unwrap();

        let (model, _) = load_any(&transformer, tch::Device::Cpu).unwrap();
        assert_eq!(model.architecture(), Architecture::Transformer);
        let (model, loaded) = load_any(&bigru, tch::Device::Cpu).unwrap();
        assert_eq!((model.architecture(), model.n_words()), (Architecture::BiGru, n));
        assert_eq!(loaded.vocab_size() as i64, n);
        let sources = vec![loaded.encode("the cat").unwrap()];
        assert_eq!(model.decode(&sources, (0, 1), DecodeOptions::default()).unwrap().len(), 1);

        // A Transformer is asked for, a BiGRU is there: both named.
        let Err(err) = load(&bigru, tch::Device::Cpu) else { panic!("a BiGRU loaded as a Transformer") };
        let err = err.to_string();
        assert!(err.contains("holds a bigru model; this needs a transformer model"), "{err}");

        // Another vocabulary beside the weights.
        let (_, other) = tokenizer_of_size(dir.path(), 290);
        assert_eq!(other.vocab_size(), 290);
        other.save(&transformer).unwrap();
        let Err(err) = load_any(&transformer, tch::Device::Cpu) else { panic!("another vocabulary loaded") };
        assert!(matches!(err, ModelFolderError::Vocabulary { model, .. } if model == n), "{err}");

        // An architecture the contract does not know, named with the file.
        std::fs::write(bigru.join(contract::CONFIG_FILE), r#"{"architecture": "lstm"}"#).unwrap();
        let Err(err) = load_any(&bigru, tch::Device::Cpu) else { panic!("an unknown architecture loaded") };
        let err = err.to_string();
        assert!(err.contains("config.json") && err.contains("unknown architecture `lstm`"), "{err}");
    }

    fn tokenizer_of_size(dir: &Path, vocab_size: usize) -> (PathBuf, Tokenizer) {
        let text = dir.join("more.txt");
        std::fs::write(&text, "a quick brown fox jumps over the lazy dog\nun renard brun saute\n".repeat(20)).unwrap();
        let options = TrainOptions {
            files: vec![text.clone()],
            vocab_size,
            min_frequency: 1,
            languages: vec!["en".into(), "fr".into()],
            show_progress: false,
        };
        (text, train(&options).unwrap())
    }
}
