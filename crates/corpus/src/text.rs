//! Segment clean-up shared by every source: one line, single spaces, no control characters.

/// Collapses all whitespace (tabs, newlines, NBSP…) to single spaces, drops other control
/// characters, and trims — so a segment is always exactly one line of a split file.
pub fn clean(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for word in segment.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !c.is_control()));
    }
    out
}

/// Whitespace-separated words, the unit of the length limits.
pub fn word_count(segment: &str) -> usize {
    segment.split_whitespace().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_makes_one_tidy_line() {
        assert_eq!(clean("  a\tb\n\nc\u{a0}d\u{7}e  "), "a b c de");
        assert_eq!(clean(""), "");
    }
}
