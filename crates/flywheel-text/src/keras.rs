//! A word/character tokenizer with the exact semantics of Keras's `Tokenizer`
//! (`keras.preprocessing.text.Tokenizer`, kept in Keras 3 as
//! `keras.src.legacy.preprocessing.text.Tokenizer`).
//!
//! * `fit` counts words in insertion order and ranks them by count, ties broken by first
//!   occurrence (Python's stable sort); index 0 is reserved, an OOV token (if any) takes index 1.
//! * `texts_to_sequences` keeps only indices `< num_words` and drops unknown words, unless an OOV
//!   token is set, in which case both become the OOV index.
//! * Word splitting lower-cases, replaces every character of `filters` with `split`, splits on
//!   `split` and drops empty pieces. With `char_level`, every character is a token and the filters
//!   are *not* applied (as in Keras).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::segment::{segment, Segmentation};
use crate::TextError;

/// Keras's default filter characters: ``!"#$%&()*+,-./:;<=>?@[\]^_`{|}~\t\n``.
pub const DEFAULT_FILTERS: &str = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n";

/// Tokenizer settings, with Keras's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerConfig {
    /// Keep only words with index `< num_words` (the `num_words - 1` most frequent); `None` keeps all.
    pub num_words: Option<usize>,
    /// Characters replaced by `split` before splitting.
    pub filters: String,
    /// Lower-case the text first.
    pub lower: bool,
    /// The separator to split on (Keras: a single space).
    pub split: String,
    /// Every character is a token.
    pub char_level: bool,
    /// Token that stands for words outside the vocabulary; `None` drops them.
    pub oov_token: Option<String>,
    /// How texts are cut: Keras's rules (the fields above) or a Unicode-aware segmenter, which
    /// always applies NFKC and lower-casing and ignores `filters`, `lower`, `split` and
    /// `char_level`.
    #[serde(default)]
    pub segmentation: Segmentation,
    /// Fold every digit to `0` (numbers read by their shape: phone numbers, prices, years);
    /// only with a Unicode-aware segmenter.
    #[serde(default)]
    pub fold_digits: bool,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        TokenizerConfig {
            num_words: None,
            filters: DEFAULT_FILTERS.to_string(),
            lower: true,
            split: " ".to_string(),
            char_level: false,
            oov_token: None,
            segmentation: Segmentation::Keras,
            fold_digits: false,
        }
    }
}

impl TokenizerConfig {
    /// The segmentation's name, with `fold-digits` when digits are folded (`"word fold-digits"`).
    pub fn describe(&self) -> String {
        if self.fold_digits {
            format!("{} fold-digits", self.segmentation)
        } else {
            self.segmentation.to_string()
        }
    }
}

/// A fitted (or empty) Keras-compatible tokenizer.
#[derive(Debug, Clone, PartialEq)]
pub struct KerasTokenizer {
    config: TokenizerConfig,
    /// Words in index order: `vocab[i]` has index `i + 1`.
    vocab: Vec<String>,
    index: HashMap<String, u32>,
    filters: CharSet,
    document_count: u64,
}

/// A set of characters with a constant-time test for ASCII.
#[derive(Debug, Clone, PartialEq)]
struct CharSet {
    ascii: [bool; 128],
    other: Vec<char>,
}

impl CharSet {
    fn new(chars: &str) -> Self {
        let mut ascii = [false; 128];
        let mut other = Vec::new();
        for c in chars.chars() {
            if c.is_ascii() {
                ascii[c as usize] = true;
            } else if !other.contains(&c) {
                other.push(c);
            }
        }
        CharSet { ascii, other }
    }

    #[inline]
    fn contains(&self, c: char) -> bool {
        if c.is_ascii() {
            self.ascii[c as usize]
        } else {
            !self.other.is_empty() && self.other.contains(&c)
        }
    }
}

/// One token and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSpan {
    /// The normalised token (what the vocabulary is keyed by).
    pub token: String,
    /// First char (Unicode scalar value) of the token in the original text.
    pub start: usize,
    /// One past its last char.
    pub end: usize,
}

/// The serialisable state of a tokenizer: its config and the words it can emit, in index order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerState {
    /// The settings.
    pub config: TokenizerConfig,
    /// Words by index (index = position + 1); only the ones `texts_to_sequences` can emit.
    pub vocab: Vec<String>,
    /// Number of texts the tokenizer was fitted on.
    pub document_count: u64,
}

impl KerasTokenizer {
    /// An unfitted tokenizer.
    pub fn new(config: TokenizerConfig) -> Result<Self, TextError> {
        if config.split.is_empty() && !config.char_level {
            return Err(TextError::Config(
                "the split separator must not be empty".to_string(),
            ));
        }
        if config.fold_digits && config.segmentation == Segmentation::Keras {
            return Err(TextError::Config(
                "folding digits needs a Unicode tokenizer (word, char, cjk or jieba), not keras"
                    .to_string(),
            ));
        }
        if config.num_words == Some(0) {
            return Err(TextError::Config(
                "num_words must be at least 1 (index 0 is reserved)".to_string(),
            ));
        }
        Ok(KerasTokenizer {
            filters: CharSet::new(&config.filters),
            config,
            vocab: Vec::new(),
            index: HashMap::new(),
            document_count: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    /// Number of texts seen by `fit`.
    pub fn document_count(&self) -> u64 {
        self.document_count
    }

    /// Size of the id space the sequences use: ids are `< vocab_size()` (0 is padding).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len() + 1
    }

    /// Words by index: `words()[i]` has index `i + 1`.
    pub fn words(&self) -> &[String] {
        &self.vocab
    }

    /// The index of a word, if it has one.
    pub fn word_index(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied()
    }

    /// Fits the vocabulary on texts (replacing any earlier fit, like a fresh Keras tokenizer).
    ///
    /// Only the words that `texts_to_sequences` can emit are kept (indices `< num_words`); the
    /// rest would map to OOV or be dropped either way, so the result is the same.
    pub fn fit<S: AsRef<str>>(&mut self, texts: &[S]) {
        let mut counts: HashMap<String, (u64, usize)> = HashMap::new();
        let mut order = 0usize;
        let mut docs = 0u64;
        for text in texts {
            docs += 1;
            self.for_each_token(text.as_ref(), |tok| {
                if let Some(entry) = counts.get_mut(tok) {
                    entry.0 += 1;
                } else {
                    counts.insert(tok.to_string(), (1, order));
                    order += 1;
                }
            });
        }
        let mut ranked: Vec<(String, (u64, usize))> = counts.into_iter().collect();
        ranked.sort_unstable_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
        let mut vocab: Vec<String> = Vec::new();
        if let Some(oov) = &self.config.oov_token {
            vocab.push(oov.clone());
        }
        vocab.extend(ranked.into_iter().map(|(w, _)| w));
        if let Some(n) = self.config.num_words {
            vocab.truncate(n.saturating_sub(1));
        }
        self.set_vocab(vocab);
        self.document_count = docs;
    }

    /// Installs a vocabulary. Like Keras's `dict(zip(words, range(1, ...)))`, a word listed twice
    /// (only possible when the OOV token also occurs as a word) keeps its *last* index.
    fn set_vocab(&mut self, vocab: Vec<String>) {
        let mut index = HashMap::with_capacity(vocab.len());
        for (i, w) in vocab.iter().enumerate() {
            index.insert(w.clone(), (i + 1) as u32);
        }
        self.index = index;
        self.vocab = vocab;
    }

    /// Calls `f` on every token of `text`, as Keras splits it (or as the configured segmenter
    /// does).
    pub fn for_each_token(&self, text: &str, mut f: impl FnMut(&str)) {
        if self.config.segmentation != Segmentation::Keras {
            segment(
                self.config.segmentation,
                self.config.fold_digits,
                text,
                |t, _, _| f(t),
            );
            return;
        }
        let lowered;
        let text = if self.config.lower {
            lowered = python_lower(text);
            lowered.as_str()
        } else {
            text
        };
        if self.config.char_level {
            let mut buf = [0u8; 4];
            for ch in text.chars() {
                f(ch.encode_utf8(&mut buf));
            }
            return;
        }
        let split = self.config.split.as_str();
        let mut chars = split.chars();
        match (chars.next(), chars.next()) {
            (Some(sep), None) => {
                // Single-character separator: tokens are the maximal runs of characters that are
                // neither a filter nor the separator (empty pieces are dropped, as in Keras).
                let mut start = None;
                for (pos, ch) in text.char_indices() {
                    let cut = ch == sep || self.filters.contains(ch);
                    match (cut, start) {
                        (true, Some(s)) => {
                            f(&text[s..pos]);
                            start = None;
                        }
                        (false, None) => start = Some(pos),
                        _ => {}
                    }
                }
                if let Some(s) = start {
                    f(&text[s..]);
                }
            }
            _ => {
                let mut replaced = String::with_capacity(text.len());
                for ch in text.chars() {
                    if self.filters.contains(ch) {
                        replaced.push_str(split);
                    } else {
                        replaced.push(ch);
                    }
                }
                for piece in replaced.split(split) {
                    if !piece.is_empty() {
                        f(piece);
                    }
                }
            }
        }
    }

    /// Calls `f(token, start, end)` on every token of `text`, exactly as
    /// [`KerasTokenizer::for_each_token`] splits it, with the token's span in the *original* text.
    ///
    /// `token` is the normalised form looked up in the vocabulary (lower-cased when `lower` is
    /// set); `start..end` are **Unicode scalar value (char) offsets** into `text`, not bytes, so a
    /// front end can highlight the original (Chinese included). Spans are computed on the original
    /// characters: where lower-casing lengthens a character (`'İ'` becomes `"i̇"`, two chars), the
    /// piece(s) it produced map back to that one character; with `char_level` both pieces then
    /// carry the same one-character span.
    pub fn for_each_token_span(&self, text: &str, mut f: impl FnMut(&str, usize, usize)) {
        if self.config.segmentation != Segmentation::Keras {
            segment(self.config.segmentation, self.config.fold_digits, text, f);
            return;
        }
        // `origin[i]` = char index in `text` of the character that produced char `i` of the
        // normalised text. Lower-casing maps every char independently, except that the final
        // sigma rule picks between two one-char forms, so per-char lengths give the mapping.
        let lowered;
        let (norm, origin): (&str, Vec<usize>) = if self.config.lower {
            lowered = python_lower(text);
            let mut origin = Vec::with_capacity(lowered.len());
            for (i, ch) in text.chars().enumerate() {
                let n = if ch.is_ascii() {
                    1
                } else {
                    ch.to_lowercase().count()
                };
                origin.extend(std::iter::repeat_n(i, n));
            }
            let n = lowered.chars().count();
            if origin.len() != n {
                // Not expected with Rust's case mapping; keep every span in bounds regardless.
                let last = origin.last().copied().unwrap_or(0);
                origin.resize(n, last);
            }
            (lowered.as_str(), origin)
        } else {
            (text, (0..text.chars().count()).collect())
        };
        let span = |a: usize, b: usize| -> (usize, usize) {
            // `a..b` is a non-empty range of normalised char indices.
            (origin[a], origin[b - 1] + 1)
        };
        if self.config.char_level {
            let mut buf = [0u8; 4];
            for (i, ch) in norm.chars().enumerate() {
                let (s, e) = span(i, i + 1);
                f(ch.encode_utf8(&mut buf), s, e);
            }
            return;
        }
        let split = self.config.split.as_str();
        let mut sep_chars = split.chars();
        match (sep_chars.next(), sep_chars.next()) {
            (Some(sep), None) => {
                // (byte start, char start) of the current token.
                let mut start: Option<(usize, usize)> = None;
                let mut ci = 0usize;
                for (pos, ch) in norm.char_indices() {
                    let cut = ch == sep || self.filters.contains(ch);
                    match (cut, start) {
                        (true, Some((bs, cs))) => {
                            let (s, e) = span(cs, ci);
                            f(&norm[bs..pos], s, e);
                            start = None;
                        }
                        (false, None) => start = Some((pos, ci)),
                        _ => {}
                    }
                    ci += 1;
                }
                if let Some((bs, cs)) = start {
                    let (s, e) = span(cs, ci);
                    f(&norm[bs..], s, e);
                }
            }
            _ => {
                // Multi-character separator: replace filters by the separator, remembering where
                // every char of the replaced text came from, then split.
                let mut replaced = String::with_capacity(norm.len());
                let mut rorigin: Vec<usize> = Vec::with_capacity(norm.len());
                let sep_len = split.chars().count();
                for (i, ch) in norm.chars().enumerate() {
                    if self.filters.contains(ch) {
                        replaced.push_str(split);
                        rorigin.extend(std::iter::repeat_n(i, sep_len));
                    } else {
                        replaced.push(ch);
                        rorigin.push(i);
                    }
                }
                // Byte offset -> char index in `replaced`.
                let mut char_at = vec![0usize; replaced.len() + 1];
                let mut ci = 0usize;
                for (b, _) in replaced.char_indices() {
                    char_at[b] = ci;
                    ci += 1;
                }
                char_at[replaced.len()] = ci;
                let base = replaced.as_ptr() as usize;
                for piece in replaced.split(split) {
                    if piece.is_empty() {
                        continue;
                    }
                    let b0 = piece.as_ptr() as usize - base;
                    let (c0, c1) = (char_at[b0], char_at[b0 + piece.len()]);
                    let (s, e) = span(rorigin[c0], rorigin[c1 - 1] + 1);
                    f(piece, s, e);
                }
            }
        }
    }

    /// Every token of `text` with its char span in the original text (see
    /// [`KerasTokenizer::for_each_token_span`]).
    pub fn token_spans(&self, text: &str) -> Vec<TokenSpan> {
        let mut out = Vec::new();
        self.for_each_token_span(text, |tok, start, end| {
            out.push(TokenSpan {
                token: tok.to_string(),
                start,
                end,
            })
        });
        out
    }

    /// The id `text_to_sequence` gives a normalised token: its index, the OOV index for unknown
    /// words when an OOV token is set, or `None` when the word is dropped.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.index.get(token).copied().or_else(|| {
            self.config
                .oov_token
                .as_deref()
                .and_then(|t| self.index.get(t).copied())
        })
    }

    /// Token ids of one text (Keras `texts_to_sequences` for a single text).
    pub fn text_to_sequence(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.text_to_sequence_into(text, &mut out);
        out
    }

    /// Appends the token ids of `text` to `out`.
    pub fn text_to_sequence_into(&self, text: &str, out: &mut Vec<u32>) {
        let oov = self
            .config
            .oov_token
            .as_deref()
            .and_then(|t| self.index.get(t).copied());
        self.for_each_token(text, |tok| match self.index.get(tok) {
            Some(&i) => out.push(i),
            None => {
                if let Some(o) = oov {
                    out.push(o);
                }
            }
        });
    }

    /// Token ids of many texts.
    pub fn texts_to_sequences<S: AsRef<str>>(&self, texts: &[S]) -> Vec<Vec<u32>> {
        texts
            .iter()
            .map(|t| self.text_to_sequence(t.as_ref()))
            .collect()
    }

    /// The state to store in a model file.
    pub fn state(&self) -> TokenizerState {
        TokenizerState {
            config: self.config.clone(),
            vocab: self.vocab.clone(),
            document_count: self.document_count,
        }
    }

    /// Rebuilds a tokenizer from its stored state, validating it.
    pub fn from_state(state: TokenizerState) -> Result<Self, TextError> {
        let mut tok = KerasTokenizer::new(state.config)?;
        if let Some(n) = tok.config.num_words {
            if state.vocab.len() >= n {
                return Err(TextError::Config(format!(
                    "stored vocabulary has {} words but num_words is {n}",
                    state.vocab.len()
                )));
            }
        }
        tok.set_vocab(state.vocab);
        tok.document_count = state.document_count;
        Ok(tok)
    }
}

/// Lower-cases like Python's `str.lower()`.
///
/// Rust's `to_lowercase` follows the same Unicode default case mapping (including the final
/// sigma rule), so this is a thin, named wrapper that documents the intent.
pub fn python_lower(text: &str) -> String {
    if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        text.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(cfg: TokenizerConfig, fit: &[&str]) -> KerasTokenizer {
        let mut t = KerasTokenizer::new(cfg).unwrap();
        t.fit(fit);
        t
    }

    #[test]
    fn ranks_by_count_then_first_occurrence() {
        let t = tok(TokenizerConfig::default(), &["b a c", "a c d", "c"]);
        assert_eq!(t.words(), &["c", "a", "b", "d"]);
        assert_eq!(t.text_to_sequence("D, c! unknown"), vec![4, 1]);
    }

    #[test]
    fn num_words_keeps_num_words_minus_one() {
        let cfg = TokenizerConfig {
            num_words: Some(3),
            ..Default::default()
        };
        let t = tok(cfg, &["x x x y y z"]);
        assert_eq!(t.text_to_sequence("z y x"), vec![2, 1]);
        assert_eq!(t.vocab_size(), 3);
    }

    #[test]
    fn oov_token_takes_index_one() {
        let cfg = TokenizerConfig {
            num_words: Some(3),
            oov_token: Some("<OOV>".into()),
            ..Default::default()
        };
        let t = tok(cfg, &["x x y z"]);
        assert_eq!(t.text_to_sequence("x y z new"), vec![2, 1, 1, 1]);
    }

    #[test]
    fn char_level_ignores_filters() {
        let cfg = TokenizerConfig {
            char_level: true,
            ..Default::default()
        };
        let t = tok(cfg, &["a!a"]);
        assert_eq!(t.words(), &["a", "!"]);
    }

    #[test]
    fn state_round_trips() {
        let t = tok(TokenizerConfig::default(), &["hello world", "hello"]);
        let back = KerasTokenizer::from_state(t.state()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn rejects_bad_config() {
        let cfg = TokenizerConfig {
            num_words: Some(0),
            ..Default::default()
        };
        assert!(KerasTokenizer::new(cfg).is_err());
        let cfg = TokenizerConfig {
            fold_digits: true,
            ..Default::default()
        };
        assert!(KerasTokenizer::new(cfg).is_err());
    }

    #[test]
    fn fold_digits_shares_one_token_between_numbers_of_one_shape() {
        let cfg = TokenizerConfig {
            segmentation: Segmentation::Word,
            fold_digits: true,
            ..Default::default()
        };
        let t = tok(cfg, &["call 0906 now", "call 0871 now"]);
        assert_eq!(t.words(), &["call", "0000", "now"]);
        assert_eq!(t.text_to_sequence("Call 1234"), vec![1, 2]);
        let back = KerasTokenizer::from_state(t.state()).unwrap();
        assert_eq!(back, t);
    }

    /// Tokens from the span method equal `for_each_token`'s, and each span, re-normalised,
    /// reproduces its token.
    fn check_spans(t: &KerasTokenizer, text: &str) -> Vec<(String, String)> {
        let mut plain = Vec::new();
        t.for_each_token(text, |tok| plain.push(tok.to_string()));
        let spans = t.token_spans(text);
        let toks: Vec<String> = spans.iter().map(|s| s.token.clone()).collect();
        assert_eq!(toks, plain, "text {text:?}");
        let chars: Vec<char> = text.chars().collect();
        spans
            .iter()
            .map(|s| {
                assert!(s.start < s.end && s.end <= chars.len(), "{s:?} in {text:?}");
                (s.token.clone(), chars[s.start..s.end].iter().collect())
            })
            .collect()
    }

    #[test]
    fn spans_english() {
        let t = KerasTokenizer::new(TokenizerConfig::default()).unwrap();
        let got = check_spans(&t, "Hello, World!  it's  @United");
        assert_eq!(
            got,
            vec![
                ("hello".into(), "Hello".into()),
                ("world".into(), "World".into()),
                ("it's".into(), "it's".into()),
                ("united".into(), "United".into()),
            ]
        );
        let s = t.token_spans("Hello, World!");
        assert_eq!((s[1].start, s[1].end), (7, 12));
    }

    #[test]
    fn spans_multibyte_and_dotted_i() {
        let t = KerasTokenizer::new(TokenizerConfig::default()).unwrap();
        // 'İ' lower-cases to two chars; offsets stay on the original characters.
        let text = "İstanbul café ΣΟΦΟΣ — naïve 😀 ok";
        let got = check_spans(&t, text);
        let originals: Vec<&str> = got.iter().map(|(_, o)| o.as_str()).collect();
        assert_eq!(
            originals,
            vec!["İstanbul", "café", "ΣΟΦΟΣ", "—", "naïve", "😀", "ok"]
        );
        assert_eq!(got[0].0, "i\u{307}stanbul");
        assert_eq!(got[2].0, "σοφος");
        let s = t.token_spans(text);
        assert_eq!((s[6].start, s[6].end), (30, 32));
    }

    #[test]
    fn spans_char_level_chinese() {
        let cfg = TokenizerConfig {
            char_level: true,
            ..Default::default()
        };
        let t = KerasTokenizer::new(cfg).unwrap();
        let s = t.token_spans("好的İ!");
        let spans: Vec<(&str, usize, usize)> = s
            .iter()
            .map(|x| (x.token.as_str(), x.start, x.end))
            .collect();
        assert_eq!(
            spans,
            vec![
                ("好", 0, 1),
                ("的", 1, 2),
                ("i", 2, 3),
                ("\u{307}", 2, 3),
                ("!", 3, 4)
            ]
        );
        check_spans(&t, "好的İ!");
    }

    #[test]
    fn spans_match_tokens_for_many_texts() {
        let configs = [
            TokenizerConfig::default(),
            TokenizerConfig {
                lower: false,
                ..Default::default()
            },
            TokenizerConfig {
                split: "ab".into(),
                ..Default::default()
            },
            TokenizerConfig {
                split: "İ".into(),
                ..Default::default()
            },
        ];
        let alphabet: Vec<char> = "aAbB İıΣσς,. !\t\n好的😀é-".chars().collect();
        let mut state = 12345u64;
        for cfg in configs {
            let t = KerasTokenizer::new(cfg).unwrap();
            for _ in 0..300 {
                let mut text = String::new();
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let len = (state >> 59) as usize;
                for _ in 0..len {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    text.push(alphabet[(state >> 33) as usize % alphabet.len()]);
                }
                check_spans(&t, &text);
            }
        }
    }

    #[test]
    fn token_id_follows_text_to_sequence() {
        let cfg = TokenizerConfig {
            oov_token: Some("<OOV>".into()),
            ..Default::default()
        };
        let t = tok(cfg, &["x x y"]);
        assert_eq!(t.token_id("x"), Some(2));
        assert_eq!(t.token_id("nope"), Some(1));
        let t = tok(TokenizerConfig::default(), &["x x y"]);
        assert_eq!(t.token_id("nope"), None);
    }
}
