//! Features of the n-gram families (`fasttext`, `linear`, and `encoder` with n-grams): a
//! text's words, the hashed word n-grams and character n-grams of its tokens, and an
//! end-of-text marker, as embedding or feature rows; and their TF-IDF weighting.
//!
//! Rows: 0 is the end-of-text marker (fastText's `</s>`, present in every text), `1..=words`
//! the tokenizer's words, then one row per hash bucket that occurs in the training data, in
//! order of first occurrence. Buckets never seen in training have no row and are skipped
//! (fastText keeps a randomly initialised row for every bucket, which only adds noise for
//! unseen n-grams and costs `buckets × dim` floats of memory and file size).
//!
//! TF-IDF as scikit-learn's `TfidfVectorizer(sublinear_tf=True)`: `tf = 1 + ln(count)`,
//! `idf = ln((1 + n) / (1 + df)) + 1` over the training rows, each vector L2-normalised.

use std::collections::HashMap;

use flywheel_nn::SparseRows;
use flywheel_text::{ngrams, KerasTokenizer};

use crate::spec::{BagSpec, ModelSpec};
use crate::ModelError;

/// fastText's end-of-line token, whose hash takes part in word n-grams.
const EOS: &str = "</s>";

/// Turns tokens into embedding rows.
#[derive(Debug, Clone, PartialEq)]
pub struct BagFeaturizer {
    spec: BagSpec,
    /// Rows before the bucket rows: the marker and the words.
    base: u32,
    /// Bucket of each bucket row (`row - base`).
    buckets: Vec<u32>,
    rows_of: HashMap<u32, u32>,
}

impl BagFeaturizer {
    /// A featurizer for a tokenizer with `words` words and no buckets yet.
    pub fn new(spec: BagSpec, words: usize) -> Self {
        BagFeaturizer {
            spec,
            base: words as u32 + 1,
            buckets: Vec::new(),
            rows_of: HashMap::new(),
        }
    }

    /// Rebuilds a featurizer from its saved bucket list.
    pub fn with_buckets(spec: BagSpec, words: usize, buckets: Vec<u32>) -> Self {
        let base = words as u32 + 1;
        let rows_of = buckets
            .iter()
            .enumerate()
            .map(|(i, &b)| (b, base + i as u32))
            .collect();
        BagFeaturizer {
            spec,
            base,
            buckets,
            rows_of,
        }
    }

    /// Number of embedding rows.
    pub fn rows(&self) -> usize {
        self.base as usize + self.buckets.len()
    }

    /// The hash bucket of each bucket row, in row order.
    pub fn bucket_list(&self) -> &[u32] {
        &self.buckets
    }

    /// Rows of a text's tokens, appended to `out`, adding rows for buckets not seen before
    /// (fitting).
    pub fn fit_tokens(&mut self, tokenizer: &KerasTokenizer, tokens: &[&str], out: &mut Vec<u32>) {
        let (base, rows_of, list) = (self.base, &mut self.rows_of, &mut self.buckets);
        featurize(&self.spec, tokenizer, tokens, out, |b| {
            Some(*rows_of.entry(b).or_insert_with(|| {
                list.push(b);
                base + list.len() as u32 - 1
            }))
        });
    }

    /// Drops the bucket rows that `keep` rejects and renumbers the others in order (word rows
    /// stay); returns each old row's new row, `None` where it was dropped.
    pub fn retain_buckets(&mut self, mut keep: impl FnMut(u32) -> bool) -> Vec<Option<u32>> {
        let base = self.base;
        let mut map: Vec<Option<u32>> = (0..base).map(Some).collect();
        let mut kept = Vec::new();
        for (i, &b) in self.buckets.iter().enumerate() {
            let row = base + i as u32;
            match keep(row) {
                true => {
                    map.push(Some(base + kept.len() as u32));
                    kept.push(b);
                }
                false => map.push(None),
            }
        }
        *self = BagFeaturizer::with_buckets(self.spec.clone(), base as usize - 1, kept);
        map
    }

    /// Rows of already-cut tokens (buckets not seen in training are skipped).
    pub fn encode_tokens(&self, tokenizer: &KerasTokenizer, tokens: &[&str], out: &mut Vec<u32>) {
        featurize(&self.spec, tokenizer, tokens, out, |b| {
            self.rows_of.get(&b).copied()
        });
    }

    /// Rows of a text.
    pub fn encode_into(&self, tokenizer: &KerasTokenizer, text: &str, out: &mut Vec<u32>) {
        let mut buf = String::new();
        let tokens = cut(tokenizer, text, &mut buf);
        self.encode_tokens(tokenizer, &tokens, out);
    }
}

/// The tokens of `text`, kept in one buffer (no allocation per token).
fn cut<'a>(tokenizer: &KerasTokenizer, text: &str, buf: &'a mut String) -> Vec<&'a str> {
    buf.clear();
    let mut ends = Vec::new();
    tokenizer.for_each_token(text, |t| {
        buf.push_str(t);
        ends.push(buf.len());
    });
    let buf: &'a String = buf;
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let t = &buf[start..end];
            start = end;
            t
        })
        .collect()
}

/// Word rows, character n-gram buckets, the end marker and word n-gram buckets of `tokens`,
/// in fastText's order; `row_of` maps a bucket to its row (or skips it).
fn featurize(
    spec: &BagSpec,
    tokenizer: &KerasTokenizer,
    tokens: &[&str],
    out: &mut Vec<u32>,
    mut row_of: impl FnMut(u32) -> Option<u32>,
) {
    let start = out.len();
    let buckets = spec.buckets as u64;
    let mut push = |b: u64, out: &mut Vec<u32>| {
        if let Some(r) = row_of(b as u32) {
            out.push(r);
        }
    };
    let mut hashes = Vec::with_capacity(tokens.len() + 1);
    for t in tokens {
        if let Some(id) = tokenizer.word_index(t) {
            out.push(id);
        }
        if spec.maxn > 0 {
            ngrams::char_ngrams(t, spec.minn, spec.maxn, buckets, |b| push(b, out));
        }
        if spec.word_ngrams > 1 {
            hashes.push(ngrams::hash(t));
        }
    }
    out.push(0);
    if spec.word_ngrams > 1 {
        hashes.push(ngrams::hash(EOS));
        ngrams::word_ngrams(&hashes, spec.word_ngrams, buckets, |b| push(b, out));
    }
    // The model's mean is order-free; sorted rows make repeats runs (one read and one update
    // per distinct row) and the memory accesses monotone.
    out[start..].sort_unstable();
}

/// Feature rows of many texts, stored flat, with each text's token count (the marker
/// included), which fastText's learning-rate schedule counts.
pub struct Rows {
    rows: Vec<u32>,
    offsets: Vec<usize>,
    tokens: Vec<u32>,
}

impl Rows {
    /// The rows of `texts`; the first `n_train` add their new buckets to `featurizer`, the
    /// others only look theirs up.
    pub fn featurize(
        tokenizer: &KerasTokenizer,
        featurizer: &mut BagFeaturizer,
        texts: &[&str],
        n_train: usize,
    ) -> Rows {
        let mut all = Rows {
            rows: Vec::new(),
            offsets: vec![0],
            tokens: Vec::with_capacity(texts.len()),
        };
        let mut buf = String::new();
        for (i, t) in texts.iter().enumerate() {
            let refs = cut(tokenizer, t, &mut buf);
            if i < n_train {
                featurizer.fit_tokens(tokenizer, &refs, &mut all.rows);
            } else {
                featurizer.encode_tokens(tokenizer, &refs, &mut all.rows);
            }
            all.offsets.push(all.rows.len());
            all.tokens.push(refs.len() as u32 + 1);
        }
        all
    }

    /// Renumbers every row by `map` (monotone, so each text stays sorted), dropping the rows
    /// it maps to `None`.
    pub fn remap(&mut self, map: &[Option<u32>]) {
        let mut rows = Vec::with_capacity(self.rows.len());
        let mut offsets = Vec::with_capacity(self.offsets.len());
        offsets.push(0);
        for i in 0..self.offsets.len() - 1 {
            rows.extend(
                self.get(i)
                    .iter()
                    .filter_map(|&r| map.get(r as usize).copied().flatten()),
            );
            offsets.push(rows.len());
        }
        self.rows = rows;
        self.offsets = offsets;
    }

    /// Each text's token count, the marker included.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Text `i`'s rows (sorted).
    pub fn get(&self, i: usize) -> &[u32] {
        &self.rows[self.offsets[i]..self.offsets[i + 1]]
    }
}

/// TF-IDF of sorted rows with repeats: one entry per distinct row, L2-normalised.
pub fn tfidf(idf: &[f32], rows: &[u32], idx: &mut Vec<u32>, val: &mut Vec<f32>) {
    idx.clear();
    val.clear();
    let mut i = 0;
    while i < rows.len() {
        let f = rows[i];
        let start = i;
        while i < rows.len() && rows[i] == f {
            i += 1;
        }
        let w = idf.get(f as usize).copied().unwrap_or(0.0);
        if w > 0.0 {
            idx.push(f);
            val.push((1.0 + ((i - start) as f32).ln()) * w);
        }
    }
    let norm = val.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        val.iter_mut().for_each(|v| *v /= norm);
    }
}

/// TF-IDF features fitted on the first `n_train` texts.
pub struct Tfidf {
    /// The tokenizer, fitted.
    pub tokenizer: KerasTokenizer,
    /// Tokens to feature rows.
    pub featurizer: BagFeaturizer,
    /// IDF weight of every feature row.
    pub idf: Vec<f32>,
    /// Every text's TF-IDF vector.
    pub x: SparseRows,
    /// Every text's sorted feature rows.
    pub all: Rows,
}

/// Fits the tokenizer, the n-gram features and their IDF on the first `n_train` texts, and
/// computes every text's TF-IDF vector.
pub fn fit_tfidf(spec: &ModelSpec, texts: &[&str], n_train: usize) -> Result<Tfidf, ModelError> {
    let mut tokenizer = KerasTokenizer::new(spec.tokenizer.clone())?;
    tokenizer.fit(&texts[..n_train]);
    let mut featurizer = BagFeaturizer::new(spec.bag.clone(), tokenizer.words().len());
    let mut all = Rows::featurize(&tokenizer, &mut featurizer, texts, n_train);
    // Document frequencies over the training rows (rows are sorted within a text).
    let mut df = vec![0u32; featurizer.rows()];
    for i in 0..n_train {
        let text = all.get(i);
        for (j, &f) in text.iter().enumerate() {
            if j == 0 || text[j - 1] != f {
                df[f as usize] += 1;
            }
        }
    }
    // N-grams in fewer than `min_df` training texts lose their rows; words keep theirs (the
    // tokenizer's vocabulary) with weight 0, which drops them from every text's features.
    let min_df = spec.linear.min_df.max(1) as u32;
    if min_df > 1 {
        let map = featurizer.retain_buckets(|row| df[row as usize] >= min_df);
        all.remap(&map);
        // The renumbering keeps row order, so the kept rows' counts stay in order too.
        df = map
            .iter()
            .zip(&df)
            .filter_map(|(new, &d)| new.map(|_| d))
            .collect();
    }
    let idf: Vec<f32> = df
        .iter()
        .map(|&d| match d >= min_df {
            true => (((1 + n_train) as f64 / (1 + d) as f64).ln() + 1.0) as f32,
            false => 0.0,
        })
        .collect();
    let mut x = SparseRows::new();
    let (mut idx, mut val) = (Vec::new(), Vec::new());
    for i in 0..texts.len() {
        tfidf(&idf, all.get(i), &mut idx, &mut val);
        x.push(&idx, &val);
    }
    Ok(Tfidf {
        tokenizer,
        featurizer,
        idf,
        x,
        all,
    })
}
