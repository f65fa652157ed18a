//! XLM's fastBPE, imported and applied natively.
//!
//! fastBPE files: `codes` holds one merge per line, `a b count` (subword-nmt's `a b` after a
//! `#version` header is read too), ranked by line, where a word's
//! last symbol carries `</w>`; `vocab` holds `token count` per line, where a token that continues
//! into the next one ends in `@@` and a word-final one has no marker. XLM's dictionary puts the
//! 14 specials first and then the vocab file's tokens in file order — the ids used here.
//!
//! Applying BPE follows fastBPE (and subword-nmt): a word becomes characters with `</w>` on the
//! last, the best-ranked adjacent pair is merged everywhere in the word until no pair has a rank,
//! then every piece missing from the vocabulary is split back along the merges that built it.
//! Input is split on whitespace only: XLM's models expect the text pre-processed (Moses
//! tokenisation, and lower-casing/accent removal where the model was trained so).

use std::{collections::HashMap, path::Path};

use crate::{SPECIAL_TOKENS, Tokenizer, TokenizerError, UNK_ID};

const END_OF_WORD: &str = "</w>";
const CONTINUATION: &str = "@@";

#[derive(Debug, Clone)]
pub struct FastBpe {
    /// (left, right) → rank.
    ranks: HashMap<(String, String), usize>,
    /// merged symbol → (left, right), for splitting pieces the vocabulary lacks.
    reverse: HashMap<String, (String, String)>,
    /// fastBPE spelling (`lo@@`, `w`) → id.
    ids: HashMap<String, u32>,
    /// id → fastBPE spelling.
    tokens: Vec<String>,
    codes_text: String,
    vocab_text: String,
}

fn read(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|e| TokenizerError::File { path: path.to_owned(), detail: e.to_string() })
}

fn format_error(path: &Path, line: usize, detail: &str) -> TokenizerError {
    TokenizerError::Format { path: path.to_owned(), line, detail: detail.to_owned() }
}

/// Builds a tokenizer from fastBPE `codes` and `vocab` files.
pub fn from_fastbpe(codes: &Path, vocab: &Path, languages: Vec<String>) -> Result<Tokenizer, TokenizerError> {
    let (codes_text, vocab_text) = (read(codes)?, read(vocab)?);
    let mut tokens: Vec<String> = SPECIAL_TOKENS.iter().map(|t| (*t).to_owned()).collect();
    for (n, line) in vocab_text.lines().enumerate() {
        match line.split(' ').collect::<Vec<_>>()[..] {
            [token, count] if !token.is_empty() && count.parse::<u64>().is_ok() => tokens.push(token.to_owned()),
            _ => return Err(format_error(vocab, n + 1, "expected `token count`")),
        }
    }
    let mut ids = HashMap::new();
    for (id, token) in tokens.iter().enumerate() {
        ids.entry(token.clone()).or_insert(id as u32);
    }
    let (mut ranks, mut reverse) = (HashMap::new(), HashMap::new());
    // Ranks count merges, not lines: subword-nmt's codes start with a `#version` header.
    let merges = codes_text.lines().enumerate().filter(|(_, line)| !line.starts_with("#version"));
    for (rank, (n, line)) in merges.enumerate() {
        let (left, right) = match line.split(' ').collect::<Vec<_>>()[..] {
            [left, right, count] if count.parse::<u64>().is_ok() => (left, right),
            [left, right] => (left, right),
            _ => return Err(format_error(codes, n + 1, "expected `a b count`")),
        };
        if left.is_empty() || right.is_empty() {
            return Err(format_error(codes, n + 1, "expected `a b count`"));
        }
        let pair = (left.to_owned(), right.to_owned());
        ranks.entry(pair.clone()).or_insert(rank);
        reverse.entry(format!("{left}{right}")).or_insert(pair);
    }
    let bpe = FastBpe { ranks, reverse, ids, tokens, codes_text, vocab_text };
    Ok(Tokenizer::from_fastbpe_backend(bpe, languages))
}

impl FastBpe {
    pub fn encode(&self, text: &str) -> Vec<u32> {
        text.split_whitespace()
            .flat_map(|word| self.apply_word(word))
            .map(|token| self.ids.get(&token).copied().unwrap_or(UNK_ID))
            .collect()
    }

    /// Joins pieces and removes the `@@ ` continuation marks, as XLM does.
    pub fn decode(&self, ids: &[u32]) -> String {
        let text: Vec<&str> = ids
            .iter()
            .filter(|&&id| id as usize >= SPECIAL_TOKENS.len())
            .filter_map(|&id| self.tokens.get(id as usize).map(String::as_str))
            .collect();
        let joined = text.join(" ").replace(&format!("{CONTINUATION} "), "");
        joined.strip_suffix(CONTINUATION).map(str::to_owned).unwrap_or(joined)
    }

    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn codes_text(&self) -> &str {
        &self.codes_text
    }

    pub fn vocab_text(&self) -> &str {
        &self.vocab_text
    }

    /// One word → pieces in fastBPE spelling (`lo@@`, `w`).
    fn apply_word(&self, word: &str) -> Vec<String> {
        let mut symbols: Vec<String> = word.chars().map(String::from).collect();
        if let Some(last) = symbols.last_mut() {
            last.push_str(END_OF_WORD);
        }
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .filter_map(|w| self.ranks.get(&(w[0].clone(), w[1].clone())).map(|&r| (r, w[0].clone(), w[1].clone())))
                .min();
            let Some((_, left, right)) = best else { break };
            let mut merged = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == left && symbols[i + 1] == right {
                    merged.push(format!("{left}{right}"));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut symbols[i]));
                    i += 1;
                }
            }
            symbols = merged;
        }
        let last = symbols.len().saturating_sub(1);
        let mut pieces = Vec::new();
        for (i, symbol) in symbols.into_iter().enumerate() {
            if i == last {
                let stem = symbol.strip_suffix(END_OF_WORD).unwrap_or(&symbol).to_owned();
                self.split_final(&stem, &mut pieces);
            } else {
                self.split_inner(&symbol, &mut pieces);
            }
        }
        pieces
    }

    /// A non-final piece: kept as `piece@@` if known, else split along its merge.
    fn split_inner(&self, piece: &str, out: &mut Vec<String>) {
        let spelled = format!("{piece}{CONTINUATION}");
        if self.ids.contains_key(&spelled) {
            return out.push(spelled);
        }
        match self.reverse.get(piece) {
            Some((left, right)) => {
                self.split_inner(left, out);
                self.split_inner(right, out);
            }
            None => out.push(spelled),
        }
    }

    /// A word-final piece (without `</w>`): kept if known, else split along its merge.
    fn split_final(&self, piece: &str, out: &mut Vec<String>) {
        if self.ids.contains_key(piece) {
            return out.push(piece.to_owned());
        }
        match self.reverse.get(&format!("{piece}{END_OF_WORD}")) {
            Some((left, right)) => {
                self.split_inner(left, out);
                self.split_final(right.strip_suffix(END_OF_WORD).unwrap_or(right), out);
            }
            None => out.push(piece.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merges learnt by hand on "low lower lowest newer newest" (most frequent first); the vocab
    /// lists only the pieces that end up in the segmented corpus, as fastBPE's vocab does, so
    /// intermediate symbols such as `lo` are absent.
    const CODES: &str = "e r</w> 4\nl o 3\nlo w 3\nlo w</w> 1\nn e 2\nne w 2\ne s 2\nes t</w> 2\nlow er</w> 1\n";
    const VOCAB: &str =
        "low 1\nlow@@ 2\ner 2\nnew@@ 2\nest 2\nlower 1\nl@@ 1\no@@ 1\nw@@ 1\ne@@ 1\nn@@ 1\nr 1\nt 1\nw 1\ns@@ 1\n";

    fn import(dir: &Path) -> Tokenizer {
        let (codes, vocab) = (dir.join("codes"), dir.join("vocab"));
        std::fs::write(&codes, CODES).unwrap();
        std::fs::write(&vocab, VOCAB).unwrap();
        from_fastbpe(&codes, &vocab, vec!["en".into(), "fr".into()]).unwrap()
    }

    fn segmented(tokenizer: &Tokenizer, text: &str) -> String {
        tokenizer.tokens(&tokenizer.encode(text).unwrap()).join(" ")
    }

    #[test]
    fn ids_follow_xlm_dictionary_order() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = import(dir.path());
        assert_eq!(tokenizer.vocab_size(), 14 + 15);
        assert_eq!(tokenizer.token_to_id("</s>"), Some(1));
        // "low" is the first vocab line → 14, "low@@" the second → 15, "est" the fifth → 18.
        assert_eq!(tokenizer.encode("low lowest").unwrap(), [14, 15, 18]);
    }

    #[test]
    fn segmentation_matches_fastbpe() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = import(dir.path());
        // lower: l o w e r</w> → e r</w> → l o w er</w> → lo w er</w> → low er</w> → lower</w>.
        assert_eq!(segmented(&tokenizer, "low lower lowest"), "low lower low@@ est");
        assert_eq!(segmented(&tokenizer, "newer newest"), "new@@ er new@@ est");
        // nest: n e s t</w> → ne s t</w> (n e ranks before e s); "ne@@" is not in the vocab, so
        // it is split back into n@@ e@@; s t</w> never merge.
        assert_eq!(segmented(&tokenizer, "nest"), "n@@ e@@ s@@ t");
        // An unknown character becomes <unk>; its neighbours are unaffected.
        assert_eq!(tokenizer.encode("xlow").unwrap()[0], UNK_ID);
        assert_eq!(tokenizer.decode(&tokenizer.encode("low lower lowest").unwrap()).unwrap(), "low lower lowest");
    }

    #[test]
    fn saved_and_loaded_it_segments_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = import(dir.path());
        let saved = dir.path().join("saved");
        tokenizer.save(&saved).unwrap();
        let loaded = Tokenizer::load(&saved).unwrap();
        assert_eq!(loaded.kind(), crate::Kind::FastBpe);
        assert_eq!(loaded.encode("newer lowest nest").unwrap(), tokenizer.encode("newer lowest nest").unwrap());
    }

    #[test]
    fn malformed_lines_are_reported_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let (codes, vocab) = (dir.path().join("codes"), dir.path().join("vocab"));
        std::fs::write(&codes, "e r</w> 4\nbroken line count\n").unwrap();
        std::fs::write(&vocab, VOCAB).unwrap();
        let err = from_fastbpe(&codes, &vocab, vec![]).unwrap_err().to_string();
        assert!(err.ends_with("codes:2: expected `a b count`"), "{err}");
    }
}
