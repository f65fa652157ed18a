//! LibreOffice help: HTML pages per language, paragraphs carrying stable `par_id`/`hd_id` ids.
//! A pair is the same id in the same file in both languages.

use std::{collections::HashMap, sync::LazyLock};

use regex::Regex;

use crate::{Pair, text};

pub const PACKAGES: [&str; 2] = ["libreoffice-help-en-us", "libreoffice-help-fr"];
pub const LICENSE: &str = "MPL-2.0";
/// Where the help pages sit inside the packages, per language.
pub const EN_ROOT: &str = "usr/share/libreoffice/help/en-US/";
pub const FR_ROOT: &str = "usr/share/libreoffice/help/fr/";

/// Fewer English words than this is a UI label or fragment, not a sentence.
const MIN_WORDS: usize = 3;
const MIN_CHARS: usize = 15;
/// Character-length ratio bounds between the two sides (outside: misaligned or partial).
const MAX_LENGTH_RATIO: f64 = 2.5;

/// A paragraph-level element with a help id; the lazy body stops at the element's own end tag
/// (paragraph elements do not nest in these pages).
static PARAGRAPH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?s)<(p|h[1-6]|td|li)\s[^>]*?id="((?:par|hd)_id[^"]*)"[^>]*>(.*?)</(?:p|h[1-6]|td|li)>"#)
        .expect("paragraph pattern")
});
static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?s)<[^>]*>").expect("tag pattern"));

/// The id → text paragraphs of one help page (first occurrence of an id wins).
pub fn paragraphs(html: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for m in PARAGRAPH.captures_iter(html) {
        let plain = TAG.replace_all(&m[3], " ");
        let text = text::clean(&html_escape::decode_html_entities(&plain));
        out.entry(m[2].to_owned()).or_insert(text);
    }
    out
}

/// Why aligned paragraphs were dropped, for the manifest.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dropped {
    pub untranslated: usize,
    pub fragments: usize,
    pub length_ratio: usize,
}

/// Aligns every page present in both languages (keys: path below the language root).
pub fn align(english: &HashMap<String, String>, french: &HashMap<String, String>) -> (Vec<Pair>, Dropped) {
    let mut pairs = Vec::new();
    let mut dropped = Dropped::default();
    let mut files: Vec<&String> = english.keys().filter(|f| french.contains_key(*f)).collect();
    files.sort();
    for file in files {
        let (en, fr) = (paragraphs(&english[file]), paragraphs(&french[file]));
        let mut ids: Vec<&String> = en.keys().filter(|id| fr.contains_key(*id)).collect();
        ids.sort();
        for id in ids {
            let (source, target) = (&en[id], &fr[id]);
            if source == target {
                dropped.untranslated += 1;
            } else if text::word_count(source) < MIN_WORDS || source.chars().count() < MIN_CHARS || target.is_empty() {
                dropped.fragments += 1;
            } else if !ratio_ok(source, target) {
                dropped.length_ratio += 1;
            } else {
                pairs.push(Pair { source: source.clone(), target: target.clone(), document: format!("help:{file}") });
            }
        }
    }
    (pairs, dropped)
}

fn ratio_ok(a: &str, b: &str) -> bool {
    let (a, b) = (a.chars().count() as f64, b.chars().count() as f64);
    a.max(b) / a.min(b).max(1.0) <= MAX_LENGTH_RATIO
}

#[cfg(test)]
mod tests {
    use super::*;

    const EN: &str = r#"<h1 id="hd_id1" dir="auto">Advanced Java options</h1>
<p id="par_id2" class="paragraph">Specifies the <emph>support</emph> options &amp; settings for Java.</p>
<p id="par_id3" class="paragraph">OK</p>
<p id="par_id4">Same in both languages here.</p>
<p id="par_id9">Only in English, no French twin.</p>"#;
    const FR: &str = r#"<h1 id="hd_id1">Options Java avancées</h1>
<p id="par_id2" class="paragraph">Spécifie les options de <emph>prise en charge</emph> &amp; paramètres pour Java.</p>
<p id="par_id3">OK</p>
<p id="par_id4">Same in both languages here.</p>"#;

    #[test]
    fn paragraphs_lose_markup_and_entities() {
        let p = paragraphs(EN);
        assert_eq!(p["par_id2"], "Specifies the support options & settings for Java.");
        assert_eq!(p["hd_id1"], "Advanced Java options");
    }

    #[test]
    fn alignment_is_by_file_and_id_with_fragments_dropped() {
        let en =
            HashMap::from([("text/a.html".to_owned(), EN.to_owned()), ("text/only_en.html".to_owned(), EN.to_owned())]);
        let fr = HashMap::from([("text/a.html".to_owned(), FR.to_owned())]);
        let (pairs, dropped) = align(&en, &fr);
        let sources: Vec<&str> = pairs.iter().map(|p| p.source.as_str()).collect();
        assert_eq!(sources, ["Advanced Java options", "Specifies the support options & settings for Java."]);
        assert!(pairs.iter().all(|p| p.document == "help:text/a.html"));
        assert_eq!(dropped, Dropped { untranslated: 2, fragments: 0, length_ratio: 0 });
    }
}
