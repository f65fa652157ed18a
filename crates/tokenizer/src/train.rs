//! Training the shared byte-level BPE.

use std::path::PathBuf;

use tokenizers::{
    AddedToken,
    decoders::byte_level::ByteLevel as ByteLevelDecoder,
    models::{ModelWrapper, TrainerWrapper, bpe::BPE, bpe::BpeTrainerBuilder},
    normalizers::unicode::NFC,
    pre_tokenizers::byte_level::ByteLevel,
};

use crate::{SPECIAL_TOKENS, Tokenizer, TokenizerError, hf_error};

#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Text files to learn from: the training split of every language, one sentence per line.
    pub files: Vec<PathBuf>,
    /// Target vocabulary size, specials included.
    pub vocab_size: usize,
    /// Pairs seen fewer times than this are not merged.
    pub min_frequency: u64,
    /// XLM's `lang2id` order, e.g. `["en", "fr"]`.
    pub languages: Vec<String>,
    pub show_progress: bool,
}

/// Learns the vocabulary. Byte-level pieces make every string encodable (no `<unk>`) and
/// decoding the exact inverse of encoding; NFC first, so equivalent spellings share tokens.
pub fn train(options: &TrainOptions) -> Result<Tokenizer, TokenizerError> {
    for file in &options.files {
        if !file.is_file() {
            return Err(TokenizerError::File { path: file.clone(), detail: "training file not found".into() });
        }
    }
    let specials = SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(options.vocab_size)
        .min_frequency(options.min_frequency)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(options.show_progress)
        .build();
    let model = BPE::builder().unk_token(SPECIAL_TOKENS[crate::UNK_ID as usize].into()).build().map_err(hf_error)?;
    let mut inner = tokenizers::Tokenizer::new(ModelWrapper::BPE(model));
    inner
        .with_normalizer(Some(NFC))
        .with_pre_tokenizer(Some(ByteLevel::new(false, false, true)))
        .with_decoder(Some(ByteLevelDecoder::default()));
    let files = options.files.iter().map(|f| f.display().to_string()).collect();
    inner.train_from_files(&mut TrainerWrapper::BpeTrainer(trainer), files).map_err(hf_error)?;
    Tokenizer::from_hf(inner, options.languages.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENTENCES: &[&str] = &[
        "The cat sits on the mat.",
        "Le chat est assis sur le tapis.",
        "Où est-il ? « Là-bas », dit-elle — 3,50 € ou 1.000 $.",
        "Choose Tools - Options - LibreOffice Writer - General.",
        "Sélectionnez l'onglet Fichier - Propriétés - Statistiques.",
        "Ελλάδα, 日本語 and emoji 🦀 are bytes too.",
        "  leading and trailing spaces  ",
        "tabs\tand\u{a0}nbsp",
    ];

    fn trained(dir: &std::path::Path) -> Tokenizer {
        let file = dir.join("train.txt");
        let text: String = (0..50).flat_map(|_| SENTENCES.iter().map(|s| format!("{s}\n"))).collect();
        std::fs::write(&file, text).unwrap();
        let options = TrainOptions {
            files: vec![file],
            vocab_size: 400,
            min_frequency: 2,
            languages: vec!["en".into(), "fr".into()],
            show_progress: false,
        };
        train(&options).unwrap()
    }

    #[test]
    fn specials_have_xlm_ids_and_round_trip_is_lossless() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = trained(dir.path());
        assert!(tokenizer.vocab_size() > 300 && tokenizer.vocab_size() <= 400, "{}", tokenizer.vocab_size());
        for sentence in SENTENCES.iter().chain(&["unseen wörds: ½ ∑ ǅ"]) {
            let ids = tokenizer.encode(sentence).unwrap();
            assert!(!ids.contains(&crate::UNK_ID), "{sentence}");
            assert_eq!(tokenizer.decode(&ids).unwrap(), *sentence);
            assert!(tokenizer.round_trips(sentence).unwrap());
        }
        let ids = tokenizer.encode("e\u{301}").unwrap(); // NFD é
        assert_eq!(tokenizer.decode(&ids).unwrap(), "é", "NFC-normalised");
        assert_eq!(tokenizer.normalize("e\u{301}").unwrap(), "é");
        assert!(tokenizer.round_trips("e\u{301}").unwrap());
        assert_eq!(tokenizer.language_id("fr").unwrap(), 1);
        assert!(tokenizer.language_id("de").unwrap_err().to_string().contains("en, fr"));
    }

    #[test]
    fn saved_tokenizer_loads_identically() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = trained(dir.path());
        let saved = dir.path().join("tok");
        tokenizer.save(&saved).unwrap();
        let loaded = Tokenizer::load(&saved).unwrap();
        for sentence in SENTENCES {
            assert_eq!(loaded.encode(sentence).unwrap(), tokenizer.encode(sentence).unwrap());
        }
        assert_eq!(loaded.languages(), ["en", "fr"]);
    }

    #[test]
    fn a_trimmed_tokenizer_keeps_seen_text_exact_and_maps_ids_compactly() {
        let dir = tempfile::tempdir().unwrap();
        let full = trained(dir.path());
        let seen = &SENTENCES[..2];
        let used: Vec<u32> = seen.iter().flat_map(|s| full.encode(s).unwrap()).collect();
        let trimmed = full.trimmed(used.iter().copied());
        assert!(trimmed.vocab_size() < full.vocab_size() / 2, "{}", trimmed.vocab_size());
        assert_eq!(trimmed.full_vocab_size(), full.vocab_size());
        for sentence in seen {
            let ids = trimmed.encode(sentence).unwrap();
            assert!(ids.iter().all(|&id| (id as usize) < trimmed.vocab_size() && id != crate::UNK_ID));
            assert_eq!(trimmed.decode(&ids).unwrap(), *sentence);
            assert_eq!(trimmed.tokens(&ids), full.tokens(&full.encode(sentence).unwrap()));
        }
        assert!(trimmed.encode("Ελλάδα 日本語").unwrap().contains(&crate::UNK_ID), "unseen pieces become <unk>");
        assert_eq!(trimmed.token_to_id("</s>"), Some(crate::EOS_ID));
        let piece = &full.tokens(&used[..1])[0];
        assert_eq!(trimmed.tokens(&[trimmed.token_to_id(piece).unwrap()]), std::slice::from_ref(piece));

        // Saved and loaded, and trimmed again: ids stay consistent with the full vocabulary.
        let saved = dir.path().join("trimmed");
        trimmed.save(&saved).unwrap();
        let loaded = Tokenizer::load(&saved).unwrap();
        assert_eq!(loaded.kept_ids(), trimmed.kept_ids());
        assert_eq!(loaded.encode(seen[0]).unwrap(), trimmed.encode(seen[0]).unwrap());
        let again = loaded.trimmed(loaded.encode(seen[0]).unwrap());
        assert!(again.vocab_size() < loaded.vocab_size());
        assert_eq!(again.decode(&again.encode(seen[0]).unwrap()).unwrap(), seen[0]);

        // A hand-edited meta file is refused, naming the file.
        let meta = saved.join(crate::META_FILE);
        let text =
            std::fs::read_to_string(&meta).unwrap().replacen("\"kept_ids\": [\n    0,", "\"kept_ids\": [\n    1,", 1);
        std::fs::write(&meta, text).unwrap();
        let error = Tokenizer::load(&saved).unwrap_err().to_string();
        assert!(error.contains("tokenizer_meta.json") && error.contains("kept_ids"), "{error}");
    }
}
