//! sacreBLEU's `13a` tokenizer (mteval-v13a's normalisation), rule for rule.

use std::sync::LazyLock;

use regex::Regex;

use crate::python_split;

/// The four substitutions, applied in order, each left to right without overlaps (as Python's
/// `re.sub`). The first class is sacreBLEU's `[\{-\~\[-\` -\&\(-\+\:-\@\/]` spelled in hex.
static RULES: LazyLock<[(Regex, &str); 4]> = LazyLock::new(|| {
    let rule = |pattern: &str, replacement| (Regex::new(pattern).expect("13a rule compiles"), replacement);
    [
        // punctuation and symbols become tokens
        rule(r"([\x7B-\x7E\x5B-\x60\x20-\x26\x28-\x2B\x3A-\x40/])", " ${1} "),
        // period and comma unless preceded by a digit
        rule(r"([^0-9])([\.,])", "${1} ${2} "),
        // period and comma unless followed by a digit
        rule(r"([\.,])([^0-9])", " ${1} ${2}"),
        // dash when preceded by a digit
        rule(r"([0-9])(-)", "${1} ${2} "),
    ]
});

/// Tokenizes one segment the way sacreBLEU's default BLEU tokenizer does.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    let mut line = format!(" {line} ");
    for (pattern, replacement) in RULES.iter() {
        line = pattern.replace_all(&line, *replacement).into_owned();
    }
    python_split(&line).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_is_split_but_numbers_keep_their_separators() {
        assert_eq!(tokenize_13a("Hello, world! It costs 3,50 or 1.000."), "Hello , world ! It costs 3,50 or 1.000 .");
        assert_eq!(tokenize_13a("pages 10-12 (see \"A\")"), "pages 10 - 12 ( see \" A \" )");
        assert_eq!(tokenize_13a("AT&amp;T &lt;b&gt;"), "AT & T < b >");
    }

    #[test]
    fn non_ascii_letters_and_quotes_stay_attached() {
        assert_eq!(tokenize_13a("«Où est-il ?» — dit-elle."), "«Où est-il ? » — dit-elle .");
    }
}
