//! Plain text and HTML cut into the pieces a sentence model translates, and put back together.
//!
//! Text is translated line by line (blank lines stay blank) with each line's surrounding
//! whitespace kept; HTML (`format=html`, what Mastodon sends) keeps every tag, comment and the
//! contents of `<script>`/`<style>` verbatim and translates the text between tags, with entities
//! decoded before and `& < >` escaped after.

/// A document as pieces: kept verbatim, or one line of text to translate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Verbatim(String),
    Translate(String),
}

/// Plain text: each line's trimmed content is translated, its whitespace and the line breaks kept.
pub fn text_pieces(text: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            pieces.push(Piece::Verbatim("\n".into()));
        }
        let content = line.trim();
        if content.is_empty() {
            if !line.is_empty() {
                pieces.push(Piece::Verbatim(line.into()));
            }
            continue;
        }
        let start = line.len() - line.trim_start().len();
        let end = start + content.len();
        if start > 0 {
            pieces.push(Piece::Verbatim(line[..start].into()));
        }
        pieces.push(Piece::Translate(content.into()));
        if end < line.len() {
            pieces.push(Piece::Verbatim(line[end..].into()));
        }
    }
    pieces
}

/// HTML: tags verbatim, text between them decoded and cut like plain text; the translations
/// are escaped again when the document is put back together ([`join`] with `escape`).
pub fn html_pieces(html: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut rest = html;
    while !rest.is_empty() {
        let Some(open) = rest.find('<') else {
            pieces.extend(text_segment(rest));
            break;
        };
        pieces.extend(text_segment(&rest[..open]));
        let tag_len = tag_length(&rest[open..]);
        let tag = &rest[open..open + tag_len];
        pieces.push(Piece::Verbatim(tag.into()));
        rest = &rest[open + tag_len..];
        // Scripts and styles are code, not prose: kept up to their closing tag.
        if let Some(name) = raw_text_element(tag) {
            let close = format!("</{name}");
            let end = rest.to_ascii_lowercase().find(&close).unwrap_or(rest.len());
            if end > 0 {
                pieces.push(Piece::Verbatim(rest[..end].into()));
            }
            rest = &rest[end..];
        }
    }
    pieces
}

/// Text between two tags: decoded, then cut into lines; whitespace-only text is kept as it is.
fn text_segment(raw: &str) -> Vec<Piece> {
    if raw.is_empty() {
        return Vec::new();
    }
    if raw.trim().is_empty() {
        return vec![Piece::Verbatim(raw.into())];
    }
    text_pieces(&decode_entities(raw))
        .into_iter()
        .map(|piece| match piece {
            Piece::Verbatim(v) => Piece::Verbatim(escape(&v)),
            translate => translate,
        })
        .collect()
}

/// Length of the tag, comment or declaration at the start of `s` (which starts with `<`); an
/// unclosed one runs to the end.
fn tag_length(s: &str) -> usize {
    if s.starts_with("<!--") {
        return s.find("-->").map_or(s.len(), |i| i + 3);
    }
    let mut quote = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return i + 1,
            _ => {}
        }
    }
    s.len()
}

/// `script` or `style` when `tag` opens one.
fn raw_text_element(tag: &str) -> Option<&'static str> {
    let name: String =
        tag.trim_start_matches('<').chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>();
    match name.to_ascii_lowercase().as_str() {
        "script" => Some("script"),
        "style" => Some("style"),
        _ => None,
    }
}

/// Named entities HTML text commonly carries, and numeric ones; anything else is left as written.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                    .and_then(char::from_u32),
            }?;
            Some((c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for an HTML text node.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The document again, each `Translate` piece replaced by the next of `translations` (escaped
/// when `escape_translations`, i.e. for HTML).
pub fn join(pieces: &[Piece], translations: &mut impl Iterator<Item = String>, escape_translations: bool) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Verbatim(v) => out.push_str(v),
            Piece::Translate(_) => {
                let t = translations.next().unwrap_or_default();
                out.push_str(&if escape_translations { escape(&t) } else { t });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_translate(pieces: &[Piece]) -> Vec<&str> {
        pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Translate(t) => Some(t.as_str()),
                Piece::Verbatim(_) => None,
            })
            .collect()
    }

    /// Upper-cases every piece to translate, like a model would change it.
    fn shout(pieces: &[Piece], html: bool) -> String {
        let mut upper = to_translate(pieces).into_iter().map(str::to_uppercase).collect::<Vec<_>>().into_iter();
        join(pieces, &mut upper, html)
    }

    #[test]
    fn text_keeps_lines_blank_lines_and_surrounding_whitespace() {
        let text = "  Hello world. \n\nSecond line\n\t\n";
        let pieces = text_pieces(text);
        assert_eq!(to_translate(&pieces), ["Hello world.", "Second line"]);
        assert_eq!(shout(&pieces, false), "  HELLO WORLD. \n\nSECOND LINE\n\t\n");
        assert_eq!(shout(&text_pieces("one"), false), "ONE");
        assert!(to_translate(&text_pieces("")).is_empty());
    }

    #[test]
    fn html_keeps_tags_and_translates_decoded_text() {
        let html = r#"<p class="x>y">Fish &amp; chips</p><br/> <a href='#'>Tom &lt;3 &#233;t&#xE9;</a>"#;
        let pieces = html_pieces(html);
        assert_eq!(to_translate(&pieces), ["Fish & chips", "Tom <3 été"]);
        assert_eq!(shout(&pieces, true), r#"<p class="x>y">FISH &amp; CHIPS</p><br/> <a href='#'>TOM &lt;3 ÉTÉ</a>"#);
    }

    #[test]
    fn html_leaves_scripts_styles_comments_and_broken_markup_alone() {
        let html = "<style>p { x: 1 }</style><!-- a <b> note -->Hi<script>if (a < b) go()</SCRIPT>!<b unclosed";
        let pieces = html_pieces(html);
        assert_eq!(to_translate(&pieces), ["Hi", "!"]);
        assert_eq!(
            shout(&pieces, true),
            "<style>p { x: 1 }</style><!-- a <b> note -->HI<script>if (a < b) go()</SCRIPT>!<b unclosed"
        );
        // An unknown entity and a bare ampersand stay as written (and are escaped back).
        assert_eq!(shout(&html_pieces("<i>a &bogus; & b</i>"), true), "<i>A &amp;BOGUS; &amp; B</i>");
    }
}
