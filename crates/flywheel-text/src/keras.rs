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

    /// Calls `f` on every token of `text`, as Keras splits it.
    pub fn for_each_token(&self, text: &str, mut f: impl FnMut(&str)) {
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
    }
}
