//! HTML to text, as the reference build did it with Python's
//! `html.parser.HTMLParser` (`convert_charrefs=True`): tags removed, the
//! contents of `<head>`, `<script>` and `<style>` dropped, entities unescaped,
//! and a newline for each start or end tag of a block element.
//!
//! This is a port of the tokenizer of CPython 3.11's `html/parser.py` (for the
//! parts that influence the text) so that the text matches byte for byte.

use super::tables::{HTML5_ENTITIES, INVALID_CHARREFS, INVALID_CODEPOINTS};
use super::text::py_space;

/// Elements whose content is dropped.
const SKIP: &[&str] = &["head", "script", "style"];

/// Elements whose start and end tags each give a newline.
const BLOCK: &[&str] = &[
    "blockquote",
    "br",
    "div",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "li",
    "p",
    "pre",
    "table",
    "td",
    "th",
    "tr",
];

/// Tags counted by [`looks_like_html`].
const HTML_WORDS: &[&str] = &[
    "b", "body", "br", "center", "div", "font", "frameset", "head", "html", "i", "img", "meta",
    "p", "table", "td", "title", "tr",
];

/// Whether a text/plain body is really HTML: at least five start or end tags of
/// common HTML elements (`html`, `head`, `body`, `frameset`, `p`, `br`, `div`,
/// `table`, `tr`, `td`, `font`, `b`, `i`, `center`, `img`, `meta`, `title`,
/// `h1`..`h9`; case-insensitive). The reference build's own rule is not
/// published; this one agrees with it on all but two messages of the corpus.
pub fn looks_like_html(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut count = 0;
    let mut i = 0;
    while let Some(p) = text[i..].find('<') {
        let lt = i + p;
        let mut j = lt + 1;
        if bytes.get(j) == Some(&b'/') {
            j += 1;
        }
        let word_len: usize = text[j..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .map(char::len_utf8)
            .sum();
        let word = text[j..j + word_len].to_lowercase();
        let known = HTML_WORDS.contains(&word.as_str())
            || (word.len() == 2 && word.starts_with('h') && word.as_bytes()[1].is_ascii_digit());
        if known {
            if let Some(gt) = text[j + word_len..].find('>') {
                count += 1;
                if count >= 5 {
                    return true;
                }
                i = j + word_len + gt + 1;
                continue;
            }
        }
        i = lt + 1;
    }
    false
}

/// Converts HTML to text (see the module documentation).
pub fn html_to_text(raw: &str) -> String {
    let mut p = Parser {
        raw,
        out: String::with_capacity(raw.len() / 2),
        skip: 0,
        cdata: None,
    };
    p.run();
    p.out
}

struct Parser<'a> {
    raw: &'a str,
    out: String,
    skip: usize,
    /// The element (`script` or `style`) whose raw content is being read.
    cdata: Option<&'static str>,
}

/// A construct that is not closed before the end of the input (Python's `-1`).
const INCOMPLETE: Option<usize> = None;

impl<'a> Parser<'a> {
    fn data(&mut self, text: &str) {
        if self.skip == 0 {
            self.out.push_str(text);
        }
    }

    fn data_unescaped(&mut self, text: &str) {
        if self.skip == 0 {
            let t = unescape(text);
            self.out.push_str(&t);
        }
    }

    fn start_tag(&mut self, tag: &str) {
        if SKIP.contains(&tag) {
            self.skip += 1;
        }
        if BLOCK.contains(&tag) {
            self.out.push('\n');
        }
    }

    fn end_tag(&mut self, tag: &str) {
        if SKIP.contains(&tag) && self.skip > 0 {
            self.skip -= 1;
        }
        if BLOCK.contains(&tag) {
            self.out.push('\n');
        }
    }

    fn starts_with(&self, i: usize, s: &str) -> bool {
        self.raw.as_bytes()[i..].starts_with(s.as_bytes())
    }

    fn find_from(&self, from: usize, needle: char) -> Option<usize> {
        if from > self.raw.len() {
            return None;
        }
        self.raw[from..].find(needle).map(|p| from + p)
    }

    /// `goahead(end=True)` with `convert_charrefs=True`.
    fn run(&mut self) {
        let raw = self.raw;
        let n = raw.len();
        let mut i = 0;
        while i < n {
            let j = match self.cdata {
                None => self.find_from(i, '<').unwrap_or(n),
                Some(elem) => match find_cdata_end(raw, i, elem) {
                    Some(j) => j,
                    None => break,
                },
            };
            if i < j {
                if self.cdata.is_none() {
                    self.data_unescaped(&raw[i..j]);
                } else {
                    self.data(&raw[i..j]);
                }
            }
            i = j;
            if i == n {
                break;
            }
            let k = if starttag_open(raw, i) {
                self.parse_starttag(i)
            } else if self.starts_with(i, "</") {
                self.parse_endtag(i)
            } else if self.starts_with(i, "<!--") {
                parse_comment(raw, i)
            } else if self.starts_with(i, "<?") {
                self.find_from(i + 2, '>').map(|p| p + 1)
            } else if self.starts_with(i, "<!") {
                self.parse_html_declaration(i)
            } else if i + 1 < n {
                self.data("<");
                Some(i + 1)
            } else {
                break;
            };
            let k = match k {
                Some(k) => k,
                None => {
                    let k = match self.find_from(i + 1, '>') {
                        Some(p) => p + 1,
                        None => self.find_from(i + 1, '<').unwrap_or(i + 1),
                    };
                    if self.cdata.is_none() {
                        self.data_unescaped(&raw[i..k]);
                    } else {
                        self.data(&raw[i..k]);
                    }
                    k
                }
            };
            i = k;
        }
        if i < n && self.cdata.is_none() {
            self.data_unescaped(&raw[i..n]);
        }
    }

    fn parse_starttag(&mut self, i: usize) -> Option<usize> {
        let raw = self.raw;
        let endpos = check_for_whole_start_tag(raw, i)?;
        let (name_end, mut k) = tagfind_tolerant(raw, i + 1)?;
        let tag = raw[i + 1..name_end].to_lowercase();
        while k < endpos {
            match attrfind_tolerant(raw, k) {
                Some(end) => k = end,
                None => break,
            }
        }
        let end = raw.get(k..endpos).unwrap_or("").trim_matches(py_space);
        if end != ">" && end != "/>" {
            self.data(&raw[i..endpos]);
            return Some(endpos);
        }
        if end.ends_with("/>") {
            self.start_tag(&tag);
            self.end_tag(&tag);
        } else {
            self.start_tag(&tag);
            if tag == "script" {
                self.cdata = Some("script");
            } else if tag == "style" {
                self.cdata = Some("style");
            }
        }
        Some(endpos)
    }

    fn parse_endtag(&mut self, i: usize) -> Option<usize> {
        let raw = self.raw;
        let gtpos = self.find_from(i + 1, '>')? + 1;
        match endtagfind(raw, i) {
            None => {
                if self.cdata.is_some() {
                    self.data(&raw[i..gtpos]);
                    return Some(gtpos);
                }
                let Some((name_end, match_end)) = tagfind_tolerant(raw, i + 2) else {
                    if self.starts_with(i, "</>") {
                        return Some(i + 3);
                    }
                    return self.find_from(i + 2, '>').map(|p| p + 1);
                };
                let tag = raw[i + 2..name_end].to_lowercase();
                let gt = self.find_from(match_end, '>')?;
                self.end_tag(&tag);
                Some(gt + 1)
            }
            Some((name_start, name_end)) => {
                let elem = raw[name_start..name_end].to_lowercase();
                if let Some(cdata) = self.cdata {
                    if elem != cdata {
                        self.data(&raw[i..gtpos]);
                        return Some(gtpos);
                    }
                }
                self.end_tag(&elem);
                self.cdata = None;
                Some(gtpos)
            }
        }
    }

    fn parse_html_declaration(&mut self, i: usize) -> Option<usize> {
        let raw = self.raw;
        if self.starts_with(i, "<![") {
            return parse_marked_section(raw, i);
        }
        let head = raw.as_bytes().get(i..i + 9);
        if head.is_some_and(|h| h.eq_ignore_ascii_case(b"<!doctype")) {
            return self.find_from(i + 9, '>').map(|p| p + 1);
        }
        self.find_from(i + 2, '>').map(|p| p + 1)
    }
}

/// `<[a-zA-Z]` at `i`.
fn starttag_open(raw: &str, i: usize) -> bool {
    let b = raw.as_bytes();
    b.get(i) == Some(&b'<') && b.get(i + 1).is_some_and(u8::is_ascii_alphabetic)
}

fn char_at(raw: &str, i: usize) -> Option<char> {
    raw.get(i..).and_then(|s| s.chars().next())
}

fn char_before(raw: &str, i: usize) -> Option<char> {
    raw.get(..i).and_then(|s| s.chars().next_back())
}

/// Advances over chars satisfying `f`, returning the end.
fn skip_while(raw: &str, mut i: usize, f: impl Fn(char) -> bool) -> usize {
    while let Some(c) = char_at(raw, i) {
        if !f(c) {
            break;
        }
        i += c.len_utf8();
    }
    i
}

/// Chars of a tag name after its first letter: `[^\t\n\r\f />\x00]`.
fn tag_name_char(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r' | '\u{c}' | ' ' | '/' | '>' | '\0')
}

/// `(?:\s|/(?!>))*` from `i`.
fn skip_space_or_slash(raw: &str, mut i: usize) -> usize {
    loop {
        match char_at(raw, i) {
            Some(c) if py_space(c) => i += c.len_utf8(),
            Some('/') if char_at(raw, i + 1) != Some('>') => i += 1,
            _ => return i,
        }
    }
}

/// `tagfind_tolerant` matched at `i`: `([a-zA-Z][^\t\n\r\f />\x00]*)(?:\s|/(?!>))*`.
/// Returns (end of the name, end of the match).
fn tagfind_tolerant(raw: &str, i: usize) -> Option<(usize, usize)> {
    if !raw.as_bytes().get(i)?.is_ascii_alphabetic() {
        return None;
    }
    let name_end = skip_while(raw, i + 1, tag_name_char);
    Some((name_end, skip_space_or_slash(raw, name_end)))
}

/// An attribute name at `i`: `(?<=['"\s/])[^\s/>][^\s/=>]*`; returns its end.
fn attr_name(raw: &str, i: usize) -> Option<usize> {
    let before = char_before(raw, i)?;
    if !(before == '\'' || before == '"' || before == '/' || py_space(before)) {
        return None;
    }
    let first = char_at(raw, i)?;
    if py_space(first) || first == '/' || first == '>' {
        return None;
    }
    Some(skip_while(raw, i + first.len_utf8(), |c| {
        !(py_space(c) || c == '/' || c == '=' || c == '>')
    }))
}

/// An attribute value at `v`: `'[^']*'|"[^"]*"|(?!['"])[^>\s]*`; returns its end.
fn attr_value(raw: &str, v: usize) -> Option<usize> {
    match char_at(raw, v) {
        Some(q @ ('\'' | '"')) => raw[v + 1..].find(q).map(|p| v + 1 + p + 1),
        _ => Some(skip_while(raw, v, |c| !(c == '>' || py_space(c)))),
    }
}

/// `\s*=+\s*VALUE` at `p`, with the backtracking order of Python's `re`;
/// returns the end of the value.
fn attr_assignment(raw: &str, p: usize) -> Option<usize> {
    let q = skip_while(raw, p, py_space);
    let eq_end = skip_while(raw, q, |c| c == '=');
    if eq_end == q {
        return None;
    }
    // Try the longest run of '=' first, then shorter ones.
    let mut e = eq_end;
    while e > q {
        let ws_end = skip_while(raw, e, py_space);
        // Try the longest whitespace run first, then give back one char at a time.
        let mut v = ws_end;
        loop {
            if let Some(end) = attr_value(raw, v) {
                return Some(end);
            }
            if v == e {
                break;
            }
            v = char_before(raw, v).map_or(e, |c| v - c.len_utf8());
        }
        e -= 1;
    }
    None
}

/// `attrfind_tolerant` matched at `k`; returns the end of the match.
fn attrfind_tolerant(raw: &str, k: usize) -> Option<usize> {
    let name_end = attr_name(raw, k)?;
    let after = attr_assignment(raw, name_end).unwrap_or(name_end);
    Some(skip_space_or_slash(raw, after))
}

/// The end of `locatestarttagend_tolerant` matched at `i` (which starts `<[a-zA-Z]`).
fn locate_starttag_end(raw: &str, i: usize) -> usize {
    let mut j = skip_while(raw, i + 2, tag_name_char);
    j = skip_while(raw, j, |c| c == '/' || py_space(c));
    while let Some(name_end) = attr_name(raw, j) {
        let mut after = name_end;
        if let Some(value_end) = attr_assignment(raw, name_end) {
            after = skip_while(raw, value_end, py_space);
        }
        j = skip_space_or_slash(raw, after);
    }
    skip_while(raw, j, py_space)
}

/// `check_for_whole_start_tag`: the end of the start tag, or `None` if incomplete.
fn check_for_whole_start_tag(raw: &str, i: usize) -> Option<usize> {
    let j = locate_starttag_end(raw, i);
    match char_at(raw, j) {
        Some('>') => Some(j + 1),
        Some('/') => {
            if raw[j..].starts_with("/>") {
                Some(j + 2)
            } else {
                INCOMPLETE
            }
        }
        None => INCOMPLETE,
        Some(c) if c.is_ascii_alphabetic() || c == '=' => INCOMPLETE,
        Some(_) => Some(if j > i { j } else { i + 1 }),
    }
}

/// `endtagfind` matched at `i`: `</\s*([a-zA-Z][-.a-zA-Z0-9:_]*)\s*>`; returns the name's span.
fn endtagfind(raw: &str, i: usize) -> Option<(usize, usize)> {
    let start = skip_while(raw, i + 2, py_space);
    if !raw.as_bytes().get(start)?.is_ascii_alphabetic() {
        return None;
    }
    let end = skip_while(raw, start + 1, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_')
    });
    let gt = skip_while(raw, end, py_space);
    (char_at(raw, gt) == Some('>')).then_some((start, end))
}

/// The start of `</\s*ELEM\s*>` (case-insensitive) at or after `i`.
fn find_cdata_end(raw: &str, mut i: usize, elem: &str) -> Option<usize> {
    while let Some(p) = raw[i..].find("</") {
        let lt = i + p;
        let name = skip_while(raw, lt + 2, py_space);
        let matches_name = raw
            .as_bytes()
            .get(name..name + elem.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(elem.as_bytes()));
        if matches_name {
            let gt = skip_while(raw, name + elem.len(), py_space);
            if char_at(raw, gt) == Some('>') {
                return Some(lt);
            }
        }
        i = lt + 2;
    }
    None
}

/// `<!--` comment: the end of `--\s*>` searched from `i + 4`.
fn parse_comment(raw: &str, i: usize) -> Option<usize> {
    let mut from = i + 4;
    while let Some(p) = raw.get(from..)?.find("--") {
        let dash = from + p;
        let gt = skip_while(raw, dash + 2, py_space);
        if char_at(raw, gt) == Some('>') {
            return Some(gt + 1);
        }
        from = dash + 1;
    }
    INCOMPLETE
}

/// `<![name ...]]>` marked sections (`<![if ...]>`, `<![endif]>`, `<![CDATA[...]]>`).
fn parse_marked_section(raw: &str, i: usize) -> Option<usize> {
    let start = i + 3;
    let bytes = raw.as_bytes();
    if !bytes.get(start)?.is_ascii_alphabetic() {
        // Python raises here; treat the construct as text.
        return INCOMPLETE;
    }
    let name_end = skip_while(raw, start + 1, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
    });
    let token_end = skip_while(raw, name_end, py_space);
    if token_end == raw.len() {
        return INCOMPLETE;
    }
    let name = raw[start..name_end].to_ascii_lowercase();
    let double = match name.as_str() {
        "temp" | "cdata" | "ignore" | "include" | "rcdata" => true,
        "if" | "else" | "endif" => false,
        _ => return INCOMPLETE,
    };
    // `]\s*]\s*>` or `]\s*>`, searched from i + 3.
    let mut from = start;
    while let Some(p) = raw[from..].find(']') {
        let b1 = from + p;
        let mut k = skip_while(raw, b1 + 1, py_space);
        if double {
            if char_at(raw, k) != Some(']') {
                from = b1 + 1;
                continue;
            }
            k = skip_while(raw, k + 1, py_space);
        }
        if char_at(raw, k) == Some('>') {
            return Some(k + 1);
        }
        from = b1 + 1;
    }
    INCOMPLETE
}

/// Python's `html.unescape`.
pub fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(p) = s[i..].find('&') {
        let amp = i + p;
        out.push_str(&s[i..amp]);
        match charref_at(s, amp + 1) {
            Some((end, replacement)) => {
                out.push_str(&replacement);
                i = end;
            }
            None => {
                out.push('&');
                i = amp + 1;
            }
        }
    }
    out.push_str(&s[i..]);
    out
}

/// The reference after an `&` at `start - 1`: (end, replacement), or `None` if no match.
fn charref_at(s: &str, start: usize) -> Option<(usize, String)> {
    let b = s.as_bytes();
    if b.get(start) == Some(&b'#') {
        let (digits_start, radix) = match b.get(start + 1) {
            Some(b'x') | Some(b'X') if b.get(start + 2).is_some_and(u8::is_ascii_hexdigit) => {
                (start + 2, 16)
            }
            Some(c) if c.is_ascii_digit() => (start + 1, 10),
            _ => return None,
        };
        let mut end = digits_start;
        while b.get(end).is_some_and(|c| {
            if radix == 16 {
                c.is_ascii_hexdigit()
            } else {
                c.is_ascii_digit()
            }
        }) {
            end += 1;
        }
        let num = s[digits_start..end]
            .chars()
            .try_fold(0u32, |acc, c| {
                let d = c.to_digit(radix)?;
                acc.checked_mul(radix)?.checked_add(d)
            })
            .unwrap_or(u32::MAX);
        if b.get(end) == Some(&b';') {
            end += 1;
        }
        return Some((end, numeric_reference(num)));
    }
    // `[^\t\n\f <&#;]{1,32};?`
    let mut end = start;
    let mut count = 0;
    while count < 32 {
        match char_at(s, end) {
            Some(c) if !matches!(c, '\t' | '\n' | '\u{c}' | ' ' | '<' | '&' | '#' | ';') => {
                end += c.len_utf8();
                count += 1;
            }
            _ => break,
        }
    }
    if count == 0 {
        return None;
    }
    if b.get(end) == Some(&b';') {
        end += 1;
    }
    let name = &s[start..end];
    if let Some(v) = entity(name) {
        return Some((end, v.to_string()));
    }
    // The longest prefix (of at least two characters) that is an entity.
    let bounds: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(2).collect();
    for &cut in bounds.iter().rev() {
        if let Some(v) = entity(&name[..cut]) {
            return Some((end, format!("{v}{}", &name[cut..])));
        }
    }
    Some((end, format!("&{name}")))
}

fn entity(name: &str) -> Option<&'static str> {
    HTML5_ENTITIES
        .binary_search_by(|(k, _)| (*k).cmp(name))
        .ok()
        .map(|i| HTML5_ENTITIES[i].1)
}

fn numeric_reference(num: u32) -> String {
    if let Ok(i) = INVALID_CHARREFS.binary_search_by_key(&num, |(k, _)| *k) {
        return INVALID_CHARREFS[i].1.to_string();
    }
    if (0xd800..=0xdfff).contains(&num) || num > 0x10ffff {
        return "\u{fffd}".to_string();
    }
    if INVALID_CODEPOINTS.binary_search(&num).is_ok() {
        return String::new();
    }
    char::from_u32(num).map_or_else(|| "\u{fffd}".to_string(), String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_like_python() {
        let html = "<html><head><title>T</title><style>p {x}</style></head>\
                    <body><p>Hello&nbsp;<b>world</b> &amp; co<br>next</p>\
                    <script>var a = '<p>';</script><div>x&lt;y &copy 2002 &#8217;s &#x41;</div>\
                    <!-- comment --><table><tr><td>a</td><td>b</td></tr></table></body></html>";
        assert_eq!(
            html_to_text(html),
            "\nHello\u{a0}world & co\nnext\n\nx<y © 2002 ’s A\n\n\n\na\n\nb\n\n\n"
        );
    }

    #[test]
    fn odd_markup_is_text() {
        assert_eq!(html_to_text("a < b and c <d e"), "a < b and c <d e");
        assert_eq!(html_to_text("x <ziggy@panix.com> y"), "x  y");
        assert_eq!(
            html_to_text("<20020906.x@y> <br/>z"),
            "<20020906.x@y> \n\nz"
        );
        assert_eq!(html_to_text("<a href='x>y'>t</a>"), "t");
        assert_eq!(html_to_text("<![if !vml]>v<![endif]>"), "v");
        assert_eq!(html_to_text("<!DOCTYPE html>d"), "d");
        assert_eq!(html_to_text("<script>never closed"), "");
    }

    #[test]
    fn unescape_matches_python() {
        assert_eq!(unescape("&amp;&lt;&gt;&quot;&#39;"), "&<>\"'");
        assert_eq!(
            unescape("&notit; &amp &ampx &#128; &#0; &#x110000; &#1;"),
            "¬it; & &x € \u{fffd} \u{fffd} "
        );
        assert_eq!(unescape("&bogus; & &#; &#xZ"), "&bogus; & &#; &#xZ");
    }

    #[test]
    fn sniffs_html_in_plain_text() {
        assert!(looks_like_html("<HTML><BODY><FONT size=2>hi<BR></BODY>"));
        assert!(!looks_like_html(
            "see <http://x.y/> and <wink> and <b>bold</b>"
        ));
        assert!(!looks_like_html("<HTML>\n<BODY>\nhi\n</BODY>"));
        assert!(looks_like_html(
            "<HTML><HEAD></HEAD><FRAMESET rows=100%><FRAME src=x></FRAMESET></html>"
        ));
    }
}
