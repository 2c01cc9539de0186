//! Unicode-aware tokenisation for the models beyond the Keras reference: NFKC normalisation and
//! lower-casing (optionally every digit folded to `0`), then one of four segmenters.
//!
//! * `word`: UAX #29 word boundaries; every segment that is not white space is a token, so
//!   punctuation and emoji are tokens of their own (`"don't!"` → `don't`, `!`).
//! * `char`: every grapheme cluster that is not white space.
//! * `cjk`: as `word`, but every CJK character (Han, kana, Hangul) is a token of its own, so
//!   Chinese is read character by character while Latin words stay words.
//! * `jieba`: Chinese word segmentation (jieba, with its HMM for unknown words); non-Chinese runs
//!   are split as by `word`.
//!
//! Every token carries its span in the original text in chars (Unicode scalar values), so
//! explanations can highlight it.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

/// How a text is cut into tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Segmentation {
    /// Keras's `Tokenizer` rules (filters, split on a separator): the reference model's.
    #[default]
    Keras,
    /// Unicode word boundaries (UAX #29) after NFKC and lower-casing.
    Word,
    /// Every character (grapheme) a token, after NFKC and lower-casing.
    Char,
    /// Every CJK character a token, other words by Unicode word boundaries.
    Cjk,
    /// Chinese word segmentation by jieba, other words by Unicode word boundaries.
    Jieba,
}

impl std::str::FromStr for Segmentation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keras" => Ok(Segmentation::Keras),
            "word" => Ok(Segmentation::Word),
            "char" => Ok(Segmentation::Char),
            "cjk" => Ok(Segmentation::Cjk),
            "jieba" => Ok(Segmentation::Jieba),
            other => Err(format!(
                "unknown tokenizer '{other}': use word, char, cjk, jieba or keras"
            )),
        }
    }
}

impl std::fmt::Display for Segmentation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Segmentation::Keras => "keras",
            Segmentation::Word => "word",
            Segmentation::Char => "char",
            Segmentation::Cjk => "cjk",
            Segmentation::Jieba => "jieba",
        })
    }
}

/// True for characters of the CJK scripts (Han ideographs, kana, Hangul, CJK punctuation).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x303F   // CJK symbols and punctuation
        | 0x3040..=0x30FF // hiragana, katakana
        | 0x3400..=0x4DBF // extension A
        | 0x4E00..=0x9FFF // unified ideographs
        | 0xAC00..=0xD7AF // Hangul syllables
        | 0xF900..=0xFAFF // compatibility ideographs
        | 0xFF00..=0xFFEF // half/full-width forms
        | 0x20000..=0x2FA1F) // extensions B.. and supplement
}

/// True for Han ideographs (what jieba segments).
fn is_han(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Share of CJK characters among the non-white-space characters of (up to 2,000 of) `texts`.
pub fn cjk_share<S: AsRef<str>>(texts: &[S]) -> f64 {
    let (mut cjk, mut all) = (0usize, 0usize);
    let step = (texts.len() / 2000).max(1);
    for t in texts.iter().step_by(step) {
        for c in t.as_ref().chars().filter(|c| !c.is_whitespace()) {
            all += 1;
            cjk += usize::from(is_cjk(c));
        }
    }
    if all == 0 {
        0.0
    } else {
        cjk as f64 / all as f64
    }
}

/// The segmentation to use when none is asked for: `cjk` when at least a fifth of the
/// characters are CJK (Chinese, Japanese, Korean text), otherwise `fallback`.
pub fn detect<S: AsRef<str>>(texts: &[S], fallback: Segmentation) -> Segmentation {
    if cjk_share(texts) >= 0.2 {
        Segmentation::Cjk
    } else {
        fallback
    }
}

/// A text after NFKC and lower-casing (and, if asked, digit folding), with the origin of every
/// char.
#[derive(Debug, Clone, Default)]
pub struct Normalized {
    /// The normalised text.
    pub text: String,
    /// `origin[i]` = char index in the original text of the grapheme that produced char `i`.
    origin: Vec<usize>,
    /// `end[i]` = one past the last original char of that grapheme.
    end: Vec<usize>,
}

impl Normalized {
    /// Normalises `text` grapheme by grapheme (NFKC, then lower-case); with `fold_digits`, every
    /// numeric character left after NFKC becomes `0`, so numbers are read by their shape
    /// (`"call 0906 170"` → `"call 0000 000"`). Every step maps one char to whole chars, so spans
    /// in the original text stay exact.
    pub fn new(text: &str, fold_digits: bool) -> Self {
        let mut n = Normalized {
            text: String::with_capacity(text.len()),
            origin: Vec::with_capacity(text.len()),
            end: Vec::with_capacity(text.len()),
        };
        let mut ci = 0usize;
        for g in text.graphemes(true) {
            let len = g.chars().count();
            if g.is_ascii() {
                for c in g.chars() {
                    let c = if fold_digits && c.is_ascii_digit() {
                        '0'
                    } else {
                        c.to_ascii_lowercase()
                    };
                    n.push(c, ci, ci + len);
                }
            } else {
                for c in g.nfkc() {
                    if fold_digits && c.is_numeric() {
                        n.push('0', ci, ci + len);
                        continue;
                    }
                    for l in c.to_lowercase() {
                        n.push(l, ci, ci + len);
                    }
                }
            }
            ci += len;
        }
        n
    }

    fn push(&mut self, c: char, start: usize, end: usize) {
        self.text.push(c);
        self.origin.push(start);
        self.end.push(end);
    }

    /// The original char span of normalised chars `a..b` (`a < b`).
    pub fn span(&self, a: usize, b: usize) -> (usize, usize) {
        let s = self.origin.get(a).copied().unwrap_or(0);
        let e = b
            .checked_sub(1)
            .and_then(|i| self.end.get(i))
            .copied()
            .unwrap_or(s);
        (s, e.max(s))
    }
}

fn jieba() -> &'static jieba_rs::Jieba {
    static J: OnceLock<jieba_rs::Jieba> = OnceLock::new();
    J.get_or_init(jieba_rs::Jieba::new)
}

/// Cuts `text` with `mode` (not `Keras`, which [`crate::KerasTokenizer`] handles) and calls
/// `f(token, start, end)` with each normalised token and its char span in `text`; with
/// `fold_digits` every digit of a token is `0` (see [`Normalized::new`]).
pub fn segment(
    mode: Segmentation,
    fold_digits: bool,
    text: &str,
    mut f: impl FnMut(&str, usize, usize),
) {
    let norm = Normalized::new(text, fold_digits);
    let s = norm.text.as_str();
    // Byte offset -> char index of the normalised text.
    let mut char_at = Vec::with_capacity(s.len() + 1);
    for (i, c) in s.chars().enumerate() {
        char_at.extend(std::iter::repeat_n(i, c.len_utf8()));
    }
    char_at.push(norm.origin.len());
    let mut emit = |bs: usize, be: usize| {
        let piece = &s[bs..be];
        if piece.is_empty() || piece.chars().all(char::is_whitespace) {
            return;
        }
        let (a, b) = (char_at[bs], char_at[be]);
        let (os, oe) = norm.span(a, b);
        f(piece, os, oe);
    };
    match mode {
        Segmentation::Char => {
            for (i, g) in s.grapheme_indices(true) {
                emit(i, i + g.len());
            }
        }
        Segmentation::Word | Segmentation::Keras => {
            for (i, w) in s.split_word_bound_indices() {
                emit(i, i + w.len());
            }
        }
        Segmentation::Cjk => {
            for (i, w) in s.split_word_bound_indices() {
                if w.chars().any(is_cjk) {
                    for (j, c) in w.char_indices() {
                        emit(i + j, i + j + c.len_utf8());
                    }
                } else {
                    emit(i, i + w.len());
                }
            }
        }
        Segmentation::Jieba => {
            // Han runs go to jieba; everything else is cut by word boundaries.
            let mut run_start: Option<usize> = None;
            let flush = |from: usize, to: usize, emit: &mut dyn FnMut(usize, usize)| {
                let run = &s[from..to];
                for w in jieba().cut(run, true) {
                    emit(from + w.byte_start, from + w.byte_end);
                }
            };
            let mut last = 0usize;
            for (i, c) in s.char_indices() {
                match (is_han(c), run_start) {
                    (true, None) => {
                        for (j, w) in s[last..i].split_word_bound_indices() {
                            emit(last + j, last + j + w.len());
                        }
                        run_start = Some(i);
                    }
                    (false, Some(r)) => {
                        flush(r, i, &mut emit);
                        run_start = None;
                        last = i;
                    }
                    _ => {}
                }
            }
            match run_start {
                Some(r) => flush(r, s.len(), &mut emit),
                None => {
                    for (j, w) in s[last..].split_word_bound_indices() {
                        emit(last + j, last + j + w.len());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(mode: Segmentation, fold_digits: bool, text: &str) -> Vec<(String, usize, usize)> {
        let mut v = Vec::new();
        segment(mode, fold_digits, text, |t, s, e| {
            v.push((t.to_string(), s, e))
        });
        v
    }

    fn tokens(mode: Segmentation, text: &str) -> Vec<String> {
        cut(mode, false, text).into_iter().map(|t| t.0).collect()
    }

    fn spans(mode: Segmentation, text: &str) -> Vec<(String, usize, usize)> {
        cut(mode, false, text)
    }

    #[test]
    fn word_mode_uses_unicode_boundaries_and_keeps_punctuation() {
        assert_eq!(
            tokens(Segmentation::Word, "Don't STOP!  e-mail: a.b"),
            ["don't", "stop", "!", "e", "-", "mail", ":", "a.b"]
        );
    }

    #[test]
    fn nfkc_folds_compatibility_forms_and_case() {
        // Full-width Latin and the "ﬁ" ligature become plain lower-case ASCII.
        assert_eq!(
            tokens(Segmentation::Word, "ＨＥＬＬＯ ﬁne"),
            ["hello", "fine"]
        );
        // A decomposed é composes to the same token as a precomposed one.
        assert_eq!(
            tokens(Segmentation::Word, "Cafe\u{301}"),
            tokens(Segmentation::Word, "café")
        );
    }

    #[test]
    fn fold_digits_maps_every_digit_to_zero_and_keeps_spans() {
        let v = cut(Segmentation::Word, true, "Win £250 ＣＡＬＬ ０９０６ ①");
        let want = [
            ("win", 0, 3),
            ("£", 4, 5),
            ("000", 5, 8),
            ("call", 9, 13),
            ("0000", 14, 18),
            ("0", 19, 20),
        ];
        let want: Vec<(String, usize, usize)> = want
            .iter()
            .map(|(t, s, e)| (t.to_string(), *s, *e))
            .collect();
        assert_eq!(v, want);
        // Han numerals are words, not digits; the folding leaves them alone.
        let t: Vec<String> = cut(Segmentation::Cjk, true, "三月3日")
            .into_iter()
            .map(|t| t.0)
            .collect();
        assert_eq!(t, ["三", "月", "0", "日"]);
        // Without folding the digits stay.
        assert_eq!(tokens(Segmentation::Word, "0906 12"), ["0906", "12"]);
    }

    #[test]
    fn cjk_mode_splits_han_and_keeps_latin_words() {
        assert_eq!(
            tokens(Segmentation::Cjk, "我爱NLP模型 great"),
            ["我", "爱", "nlp", "模", "型", "great"]
        );
    }

    #[test]
    fn jieba_mode_segments_chinese_words() {
        let t = tokens(Segmentation::Jieba, "我们中出了一个叛徒, OK");
        assert!(t.contains(&"我们".to_string()), "{t:?}");
        assert!(t.contains(&"叛徒".to_string()), "{t:?}");
        assert_eq!(t.last().map(String::as_str), Some("ok"));
        assert!(!t.iter().any(|w| w.trim().is_empty()));
    }

    #[test]
    fn char_mode_is_graphemes_without_spaces() {
        assert_eq!(tokens(Segmentation::Char, "Ab 中"), ["a", "b", "中"]);
    }

    #[test]
    fn spans_point_into_the_original_text() {
        let text = "ＨＩ 你好 e\u{301}t";
        for mode in [
            Segmentation::Word,
            Segmentation::Char,
            Segmentation::Cjk,
            Segmentation::Jieba,
        ] {
            let chars: Vec<char> = text.chars().collect();
            for (tok, s, e) in spans(mode, text) {
                assert!(s < e && e <= chars.len(), "{mode}: {tok} {s}..{e}");
                let orig: String = chars[s..e].iter().collect();
                let renorm = Normalized::new(&orig, false).text;
                assert!(renorm.contains(&tok), "{mode}: {tok:?} from {orig:?}");
            }
        }
    }

    #[test]
    fn detects_chinese() {
        assert_eq!(
            detect(&["这部电影很好看", "太差了"], Segmentation::Keras),
            Segmentation::Cjk
        );
        assert_eq!(
            detect(&["a fine film", "awful"], Segmentation::Keras),
            Segmentation::Keras
        );
    }
}
