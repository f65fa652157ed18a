//! xlmc's tokenizer: one BPE vocabulary shared by every language of a model, as in XLM.
//!
//! - [`train`] learns a byte-level BPE with Hugging Face `tokenizers` on the training split of
//!   both languages; decoding is exactly the inverse of encoding (after NFC normalisation).
//! - [`from_fastbpe`] imports XLM's own fastBPE `codes` + `vocab`, so a real XLM checkpoint's
//!   ids line up.
//! - Either way the first ids are XLM's: `<s>`=0, `</s>`=1, `<pad>`=2, `<unk>`=3,
//!   `<special0>`…`<special9>`=4–13; languages get XLM's `lang2id` order.
//!
//! Saved as `tokenizer.json` (Hugging Face format, readable by any HF tokenizers binding) or, for
//! an imported vocabulary, the fastBPE `codes` + `vocab` files; plus `tokenizer_meta.json` (which
//! kind, and the `lang2id` list).
//!
//! ```
//! assert_eq!(xlmc_tokenizer::EOS_ID, 1);
//! assert_eq!(xlmc_tokenizer::SPECIAL_TOKENS[13], "<special9>");
//! ```

mod fastbpe;
mod train;
mod trim;

use std::path::{Path, PathBuf};

use fastbpe::FastBpe;
pub use fastbpe::from_fastbpe;
pub use train::{TrainOptions, train};
use trim::Trim;

pub const BOS_ID: u32 = 0;
pub const EOS_ID: u32 = 1;
pub const PAD_ID: u32 = 2;
pub const UNK_ID: u32 = 3;
/// XLM's fixed specials, in id order.
pub const SPECIAL_TOKENS: [&str; 14] = [
    "<s>",
    "</s>",
    "<pad>",
    "<unk>",
    "<special0>",
    "<special1>",
    "<special2>",
    "<special3>",
    "<special4>",
    "<special5>",
    "<special6>",
    "<special7>",
    "<special8>",
    "<special9>",
];
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const META_FILE: &str = "tokenizer_meta.json";
pub const FASTBPE_CODES_FILE: &str = "codes";
pub const FASTBPE_VOCAB_FILE: &str = "vocab";

/// Which algorithm a saved tokenizer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Byte-level BPE trained by xlmc (`tokenizer.json`).
    ByteLevel,
    /// XLM's fastBPE, imported (`codes` + `vocab`).
    FastBpe,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Meta {
    kind: Kind,
    languages: Vec<String>,
    /// A trimmed vocabulary: the full-vocabulary ids kept, in order (compact id = position).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kept_ids: Option<Vec<u32>>,
}

#[derive(Debug, Clone)]
enum Backend {
    Hf(Box<tokenizers::Tokenizer>),
    FastBpe(Box<FastBpe>),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("{path}:{line}: {detail}")]
    Format { path: PathBuf, line: usize, detail: String },
    #[error("tokenizer: {0}")]
    Tokenizers(String),
    #[error("special token `{token}` has id {got}, XLM needs {want}")]
    SpecialIds { token: String, got: u32, want: u32 },
    #[error("unknown language `{0}`; this tokenizer has: {1}")]
    UnknownLanguage(String, String),
    #[error("{path}: kept_ids: {detail}")]
    Trim { path: PathBuf, detail: String },
}

pub(crate) fn hf_error(e: tokenizers::Error) -> TokenizerError {
    TokenizerError::Tokenizers(e.to_string())
}

/// A shared vocabulary with its languages.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    backend: Backend,
    languages: Vec<String>,
    /// Set when the model uses a trimmed vocabulary: ids in and out are its compact ids.
    trim: Option<Trim>,
}

impl Tokenizer {
    pub(crate) fn from_hf(inner: tokenizers::Tokenizer, languages: Vec<String>) -> Result<Self, TokenizerError> {
        let tokenizer = Self { backend: Backend::Hf(Box::new(inner)), languages, trim: None };
        tokenizer.check_specials()?;
        Ok(tokenizer)
    }

    pub(crate) fn from_fastbpe_backend(inner: FastBpe, languages: Vec<String>) -> Self {
        Self { backend: Backend::FastBpe(Box::new(inner)), languages, trim: None }
    }

    fn check_specials(&self) -> Result<(), TokenizerError> {
        for (want, token) in SPECIAL_TOKENS.iter().enumerate() {
            let got = self.token_to_id(token).unwrap_or(u32::MAX);
            if got != want as u32 {
                return Err(TokenizerError::SpecialIds { token: (*token).to_owned(), got, want: want as u32 });
            }
        }
        Ok(())
    }

    pub fn kind(&self) -> Kind {
        match self.backend {
            Backend::Hf(_) => Kind::ByteLevel,
            Backend::FastBpe(_) => Kind::FastBpe,
        }
    }

    /// Token ids of `text`, without specials (the model adds XLM's `</s>` markers).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = match &self.backend {
            Backend::Hf(hf) => hf.encode(text, false).map_err(hf_error)?.get_ids().to_vec(),
            Backend::FastBpe(bpe) => bpe.encode(text),
        };
        if let Some(trim) = &self.trim {
            trim.to_compact_ids(&mut ids);
        }
        Ok(ids)
    }

    /// Encodes many sentences (in parallel where the library can).
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, TokenizerError> {
        let mut batch: Vec<Vec<u32>> = match &self.backend {
            Backend::Hf(hf) => {
                let encodings = hf.encode_batch(texts.to_vec(), false).map_err(hf_error)?;
                encodings.into_iter().map(|e| e.get_ids().to_vec()).collect()
            }
            Backend::FastBpe(bpe) => texts.iter().map(|t| bpe.encode(t)).collect(),
        };
        if let Some(trim) = &self.trim {
            batch.iter_mut().for_each(|ids| trim.to_compact_ids(ids));
        }
        Ok(batch)
    }

    /// `ids` in the BPE's own ids (a trimmed tokenizer's compact ids mapped back).
    fn full_ids<'a>(&self, ids: &'a [u32]) -> std::borrow::Cow<'a, [u32]> {
        match &self.trim {
            Some(trim) => std::borrow::Cow::Owned(trim.to_full_ids(ids)),
            None => std::borrow::Cow::Borrowed(ids),
        }
    }

    /// Text of `ids`; special tokens are skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let ids = &*self.full_ids(ids);
        match &self.backend {
            Backend::Hf(hf) => hf.decode(ids, true).map_err(hf_error),
            Backend::FastBpe(bpe) => Ok(bpe.decode(ids)),
        }
    }

    /// `text` as the tokenizer sees it before splitting: NFC for byte-level BPE, single spaces
    /// for fastBPE. Decoding an encoding gives back exactly this.
    pub fn normalize(&self, text: &str) -> Result<String, TokenizerError> {
        match &self.backend {
            Backend::Hf(hf) => {
                let mut normalized = tokenizers::NormalizedString::from(text);
                if let Some(normalizer) = hf.get_normalizer() {
                    tokenizers::Normalizer::normalize(normalizer, &mut normalized).map_err(hf_error)?;
                }
                Ok(normalized.get().to_owned())
            }
            Backend::FastBpe(_) => Ok(text.split_whitespace().collect::<Vec<_>>().join(" ")),
        }
    }

    /// Whether `decode(encode(text)) == normalize(text)`.
    pub fn round_trips(&self, text: &str) -> Result<bool, TokenizerError> {
        Ok(self.decode(&self.encode(text)?)? == self.normalize(text)?)
    }

    /// The tokens of `ids` as the vocabulary spells them (fastBPE: `lo@@`, `w`).
    pub fn tokens(&self, ids: &[u32]) -> Vec<String> {
        let unk = || SPECIAL_TOKENS[UNK_ID as usize].to_owned();
        let ids = &*self.full_ids(ids);
        match &self.backend {
            Backend::Hf(hf) => ids.iter().map(|&id| hf.id_to_token(id).unwrap_or_else(unk)).collect(),
            Backend::FastBpe(bpe) => {
                ids.iter().map(|&id| bpe.token(id).map(str::to_owned).unwrap_or_else(unk)).collect()
            }
        }
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        let full = match &self.backend {
            Backend::Hf(hf) => hf.token_to_id(token),
            Backend::FastBpe(bpe) => bpe.id(token),
        }?;
        match &self.trim {
            Some(trim) => Some(trim.to_compact(full)).filter(|&id| trim.to_full(id) == full),
            None => Some(full),
        }
    }

    /// The ids this tokenizer reads and writes: the trimmed size when trimmed.
    pub fn vocab_size(&self) -> usize {
        match &self.trim {
            Some(trim) => trim.len(),
            None => self.full_vocab_size(),
        }
    }

    /// The BPE's whole vocabulary, trimmed or not.
    pub fn full_vocab_size(&self) -> usize {
        match &self.backend {
            Backend::Hf(hf) => hf.get_vocab_size(true),
            Backend::FastBpe(bpe) => bpe.vocab_size(),
        }
    }

    /// The same tokenizer keeping only `ids` (this tokenizer's ids) and the specials; ids are
    /// renumbered compactly in order. Trimming a trimmed tokenizer composes.
    pub fn trimmed(&self, ids: impl IntoIterator<Item = u32>) -> Tokenizer {
        let full = ids.into_iter().filter(|&id| (id as usize) < self.vocab_size()).map(|id| match &self.trim {
            Some(trim) => trim.to_full(id),
            None => id,
        });
        Tokenizer { trim: Some(Trim::new(full)), ..self.clone() }
    }

    /// For a trimmed tokenizer, the full-vocabulary id of each of its ids.
    pub fn kept_ids(&self) -> Option<&[u32]> {
        self.trim.as_ref().map(Trim::kept)
    }

    /// XLM's `lang2id`: the position of each language.
    pub fn languages(&self) -> &[String] {
        &self.languages
    }

    pub fn language_id(&self, language: &str) -> Result<u32, TokenizerError> {
        self.languages
            .iter()
            .position(|l| l == language)
            .map(|i| i as u32)
            .ok_or_else(|| TokenizerError::UnknownLanguage(language.to_owned(), self.languages.join(", ")))
    }

    /// Writes the tokenizer files and `tokenizer_meta.json` into `dir` (each atomically).
    pub fn save(&self, dir: &Path) -> Result<(), TokenizerError> {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
        match &self.backend {
            Backend::Hf(hf) => write(&dir.join(TOKENIZER_FILE), hf.to_string(false).map_err(hf_error)?.as_bytes())?,
            Backend::FastBpe(bpe) => {
                write(&dir.join(FASTBPE_CODES_FILE), bpe.codes_text().as_bytes())?;
                write(&dir.join(FASTBPE_VOCAB_FILE), bpe.vocab_text().as_bytes())?;
            }
        }
        let meta = Meta {
            kind: self.kind(),
            languages: self.languages.clone(),
            kept_ids: self.kept_ids().map(<[u32]>::to_vec),
        };
        write(&dir.join(META_FILE), serde_json::to_string_pretty(&meta).expect("meta serialises").as_bytes())
    }

    /// Reads what [`Tokenizer::save`] wrote, checking XLM's special ids.
    pub fn load(dir: &Path) -> Result<Self, TokenizerError> {
        let meta_path = dir.join(META_FILE);
        let text = std::fs::read_to_string(&meta_path).map_err(|e| file_error(&meta_path, e))?;
        let meta: Meta = serde_json::from_str(&text).map_err(|e| TokenizerError::File {
            path: meta_path.clone(),
            detail: format!("not a tokenizer meta file: {e}"),
        })?;
        let mut tokenizer = match meta.kind {
            Kind::ByteLevel => {
                let path = dir.join(TOKENIZER_FILE);
                let inner = tokenizers::Tokenizer::from_file(&path)
                    .map_err(|e| TokenizerError::File { path: path.clone(), detail: e.to_string() })?;
                Self::from_hf(inner, meta.languages)?
            }
            Kind::FastBpe => {
                from_fastbpe(&dir.join(FASTBPE_CODES_FILE), &dir.join(FASTBPE_VOCAB_FILE), meta.languages)?
            }
        };
        if let Some(kept) = meta.kept_ids {
            let detail = if !kept.windows(2).all(|w| w[0] < w[1]) {
                Some("not strictly increasing".to_owned())
            } else if kept.iter().take(SPECIAL_TOKENS.len()).copied().ne(0..SPECIAL_TOKENS.len() as u32) {
                Some(format!("must start with the specials 0–{}", SPECIAL_TOKENS.len() - 1))
            } else {
                kept.last()
                    .filter(|&&last| last as usize >= tokenizer.full_vocab_size())
                    .map(|last| format!("id {last} is past the vocabulary ({} tokens)", tokenizer.full_vocab_size()))
            };
            if let Some(detail) = detail {
                return Err(TokenizerError::Trim { path: meta_path, detail });
            }
            tokenizer.trim = Some(Trim::new(kept));
        }
        Ok(tokenizer)
    }
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::File { path: path.to_owned(), detail: e.to_string() }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), TokenizerError> {
    xlmc_atomic_file::write(path, bytes).map_err(|e| file_error(path, e))
}
