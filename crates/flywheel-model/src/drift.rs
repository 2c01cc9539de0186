//! Drift: how far recent traffic has moved from the data a model was trained on.
//!
//! At training, a [`DriftProfile`] — a sketch of the training data, not the data — goes into the
//! model file: the label shares, deciles of text length (in words), a Bloom filter of the
//! vocabulary with the out-of-vocabulary share that unseen in-distribution text shows, and
//! hashed word and word-pair features of a sample of texts. At serving, each text becomes an
//! [`Observation`] (O(words)) and [`check`] compares a window of them with the profile by four
//! tests: the predicted-label distribution (PSI), the length distribution (PSI), the
//! out-of-vocabulary share (a one-sided z-test with a floor), and a domain classifier (naive
//! Bayes on the hashed features, cross-fitted, telling the window's texts from the sample; its
//! ROC-AUC against what a random classifier reaches: Evidently's text-drift test).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use flywheel_data::Record;
use flywheel_nn::Rng;
use flywheel_text::segment::is_cjk;
use serde::{Deserialize, Serialize};

/// Bits of the vocabulary's Bloom filter (2^18: under 1 % false positives for 20,000 words).
const BLOOM_BITS: usize = 1 << 18;
/// Hash functions of the Bloom filter.
const BLOOM_HASHES: u64 = 3;
/// Buckets of the domain classifier's hashed features.
const FEATURE_BUCKETS: u32 = 1 << 20;
/// Distinct features kept per text.
const FEATURES_PER_TEXT: usize = 128;
/// Texts in the profile's sample (and at most this many recent texts in the domain test).
pub const SAMPLE_TEXTS: usize = 256;
/// Length bins (deciles).
const LENGTH_BINS: usize = 10;

/// PSI above this is a shift (the usual "significant change" line).
pub const PSI_ALARM: f64 = 0.25;
/// The out-of-vocabulary share must rise by at least this much (absolute) to alarm.
pub const OOV_RISE_FLOOR: f64 = 0.05;
/// z-score of the one-sided tests (out-of-vocabulary share, domain AUC): about one false
/// alarm in 30,000 checks of undrifted traffic.
pub const Z_ALARM: f64 = 4.0;
/// The domain classifier's AUC must also reach this.
pub const AUC_FLOOR: f64 = 0.6;

/// A sketch of a model's training data (kept in the model file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftProfile {
    /// Label names (the model's).
    pub labels: Vec<String>,
    /// Share of the training rows given each label (empty: no label test, e.g. regression).
    pub label_shares: Vec<f64>,
    /// Upper edges of the length bins but the last (words per text).
    pub length_edges: Vec<f64>,
    /// Share of the training texts in each length bin.
    pub length_shares: Vec<f64>,
    /// Mean out-of-vocabulary share of unseen training texts (a fifth held out from the rest).
    pub oov_mean: f64,
    /// Its standard deviation across texts.
    pub oov_sd: f64,
    /// The vocabulary (words of at least two training texts) as a Bloom filter, base64.
    pub vocabulary: String,
    /// Hashed features of a sample of training texts, base64 (per text: a count, then ids).
    pub sample: String,
}

/// What the monitor keeps of one served text.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Index of the predicted label (`None`: none, or a task without one).
    pub label: Option<usize>,
    /// Words in the text.
    pub words: u32,
    /// Share of its words outside the vocabulary.
    pub oov: f32,
    /// Hashed word and word-pair features (distinct, at most [`FEATURES_PER_TEXT`]).
    pub features: Vec<u32>,
}

/// One test's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftTest {
    /// `label_psi`, `length_psi`, `oov_share` or `domain_auc`.
    pub name: &'static str,
    /// The statistic.
    pub value: f64,
    /// The alarm line.
    pub threshold: f64,
    /// `value > threshold`.
    pub alarm: bool,
}

/// The tests of one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    /// Texts in the window.
    pub window: usize,
    /// Mean out-of-vocabulary share of the window (reference: `profile.oov_mean`).
    pub oov_share: f64,
    /// Share of each label among the window's predictions.
    pub label_shares: Vec<f64>,
    /// Every test that ran.
    pub tests: Vec<DriftTest>,
    /// Whether any test alarmed.
    pub alarm: bool,
}

/// Calls `f` with each word of `text`, lower-cased: runs of letters and digits, every CJK
/// character on its own. Cheaper than the models' segmenters (no NFKC, no UAX #29 tables), and
/// the same for the profile and the traffic, which is all drift needs.
fn words(text: &str, mut f: impl FnMut(&str)) {
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() && !is_cjk(c) {
            word.extend(c.to_lowercase());
            continue;
        }
        if !word.is_empty() {
            f(&word);
            word.clear();
        }
        if is_cjk(c) {
            let mut buf = [0u8; 4];
            f(c.encode_utf8(&mut buf));
        }
    }
    if !word.is_empty() {
        f(&word);
    }
}

/// FNV-1a, 64 bits.
fn fnv(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

struct Bloom(Vec<u8>);

impl Bloom {
    fn new() -> Self {
        Bloom(vec![0; BLOOM_BITS / 8])
    }
    fn positions(word: &str) -> impl Iterator<Item = usize> {
        let h1 = fnv(word.as_bytes(), 0);
        let h2 = fnv(word.as_bytes(), 0x9e37_79b9_7f4a_7c15) | 1;
        (0..BLOOM_HASHES)
            .map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % BLOOM_BITS as u64) as usize)
    }
    fn insert(&mut self, word: &str) {
        for p in Self::positions(word) {
            self.0[p / 8] |= 1 << (p % 8);
        }
    }
    fn contains(&self, word: &str) -> bool {
        Self::positions(word).all(|p| self.0.get(p / 8).is_some_and(|b| b & (1 << (p % 8)) != 0))
    }
}

/// Words of the texts that appear in at least two of them.
fn vocabulary<'a>(texts: impl Iterator<Item = &'a str>) -> Bloom {
    let mut counts: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    for t in texts {
        let mut seen = std::collections::HashSet::new();
        words(t, |w| {
            if seen.insert(w.to_string()) {
                *counts.entry(w.to_string()).or_default() += 1;
            }
        });
    }
    let mut bloom = Bloom::new();
    for (w, c) in counts {
        if c >= 2 {
            bloom.insert(&w);
        }
    }
    bloom
}

/// Words, out-of-vocabulary share and hashed features of a text.
fn describe(text: &str, vocab: &Bloom) -> (u32, f32, Vec<u32>) {
    let mut n = 0u32;
    let mut oov = 0u32;
    let mut features = Vec::new();
    let mut prev: Option<u64> = None;
    words(text, |w| {
        n += 1;
        if !vocab.contains(w) {
            oov += 1;
        }
        let h = fnv(w.as_bytes(), 1);
        if features.len() < FEATURES_PER_TEXT * 2 {
            features.push((h % u64::from(FEATURE_BUCKETS)) as u32);
            if let Some(p) = prev {
                let pair = p.rotate_left(17) ^ h;
                features.push((pair % u64::from(FEATURE_BUCKETS)) as u32);
            }
        }
        prev = Some(h);
    });
    features.sort_unstable();
    features.dedup();
    features.truncate(FEATURES_PER_TEXT);
    let share = if n == 0 { 0.0 } else { oov as f32 / n as f32 };
    (n, share, features)
}

impl DriftProfile {
    /// The profile of training records: `labels` are the model's label names, `seed` draws the
    /// held-out fifth and the sample.
    pub fn build(records: &[Record], labels: &[String], single_label: bool, seed: u64) -> Self {
        let n = records.len();
        let label_shares = if single_label && n > 0 {
            let mut counts = vec![0f64; labels.len()];
            for r in records {
                if let Some(i) = r
                    .labels
                    .first()
                    .and_then(|l| labels.iter().position(|m| m == l))
                {
                    counts[i] += 1.0;
                }
            }
            counts.iter().map(|c| c / n as f64).collect()
        } else {
            Vec::new()
        };
        let mut lengths: Vec<f64> = records
            .iter()
            .map(|r| {
                let mut k = 0u32;
                words(&r.text, |_| k += 1);
                f64::from(k)
            })
            .collect();
        lengths.sort_by(f64::total_cmp);
        let mut length_edges: Vec<f64> = (1..LENGTH_BINS)
            .map(|q| lengths.get(q * n / LENGTH_BINS).copied().unwrap_or(0.0))
            .collect();
        length_edges.dedup();
        let mut length_shares = vec![0f64; length_edges.len() + 1];
        for &l in &lengths {
            length_shares[bin(&length_edges, l)] += 1.0 / n.max(1) as f64;
        }
        // Out-of-vocabulary share of unseen texts: vocabulary of four fifths, measured on the
        // fifth held out.
        let mut rng = Rng::with_stream(seed, 11);
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let held = n / 5;
        let (test, rest) = order.split_at(held);
        let partial = vocabulary(rest.iter().map(|&i| records[i].text.as_str()));
        let shares: Vec<f64> = test
            .iter()
            .filter_map(|&i| {
                let (w, s, _) = describe(&records[i].text, &partial);
                (w > 0).then_some(f64::from(s))
            })
            .collect();
        let oov_mean = mean(&shares);
        let oov_sd = (shares.iter().map(|s| (s - oov_mean).powi(2)).sum::<f64>()
            / shares.len().max(1) as f64)
            .sqrt();
        let vocab = vocabulary(records.iter().map(|r| r.text.as_str()));
        let mut sample = Vec::new();
        for &i in order.iter().take(SAMPLE_TEXTS) {
            let (_, _, features) = describe(&records[i].text, &vocab);
            sample.extend_from_slice(&(features.len() as u32).to_le_bytes());
            for f in features {
                sample.extend_from_slice(&f.to_le_bytes());
            }
        }
        DriftProfile {
            labels: labels.to_vec(),
            label_shares,
            length_edges,
            length_shares,
            oov_mean,
            oov_sd,
            vocabulary: B64.encode(&vocab.0),
            sample: B64.encode(&sample),
        }
    }

    /// The profile's working form (decoded once per loaded model).
    pub fn reader(&self) -> ProfileReader {
        let bloom = B64
            .decode(&self.vocabulary)
            .ok()
            .filter(|b| b.len() == BLOOM_BITS / 8)
            .map(Bloom)
            .unwrap_or_else(Bloom::new);
        let bytes = B64.decode(&self.sample).unwrap_or_default();
        let mut words32 = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        let mut sample = Vec::new();
        while let Some(count) = words32.next() {
            let features: Vec<u32> = words32.by_ref().take(count as usize).collect();
            sample.push(features);
        }
        let sample_counts = [0, 1].map(|half| counts(sample.iter().map(Vec::as_slice), half));
        ProfileReader {
            profile: self.clone(),
            bloom,
            sample,
            sample_counts,
        }
    }
}

/// A profile ready to observe texts and check windows.
pub struct ProfileReader {
    profile: DriftProfile,
    bloom: Bloom,
    sample: Vec<Vec<u32>>,
    /// The sample's feature counts in each cross-fitting half.
    sample_counts: [Counts; 2],
}

impl std::fmt::Debug for ProfileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileReader")
            .field("labels", &self.profile.labels)
            .field("sample", &self.sample.len())
            .finish()
    }
}

fn bin(edges: &[f64], v: f64) -> usize {
    edges.iter().take_while(|&&e| v > e).count()
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Population stability index of `actual` against `expected` shares (each share floored at
/// 0.001 so an empty bin counts but does not explode).
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(1e-3), a.max(1e-3));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// ROC-AUC of scores where `positive` marks the positives (ties count half).
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut i) = (0f64, 0usize);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if positive[k] {
                rank_sum += avg;
            }
        }
        i = j + 1;
    }
    let p = positive.iter().filter(|&&x| x).count() as f64;
    let q = positive.len() as f64 - p;
    if p == 0.0 || q == 0.0 {
        return 0.5;
    }
    (rank_sum - p * (p + 1.0) / 2.0) / (p * q)
}

/// A hasher for keys that are hashes already (the features): one multiply spreads the bits.
#[derive(Default)]
struct FeatureHasher(u64);

impl std::hash::Hasher for FeatureHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// How many texts of a set hold each feature, and how many texts there are.
type Counts = (
    std::collections::HashMap<u32, u32, std::hash::BuildHasherDefault<FeatureHasher>>,
    f64,
);

/// Feature counts of the texts whose index is not `half` modulo 2 (a cross-fitting half).
fn counts<'a>(texts: impl Iterator<Item = &'a [u32]>, half: usize) -> Counts {
    let mut m = std::collections::HashMap::default();
    let mut n = 0.0;
    for (i, x) in texts.enumerate() {
        if i % 2 != half {
            n += 1.0;
            for &f in x {
                *m.entry(f).or_insert(0u32) += 1;
            }
        }
    }
    (m, n)
}

/// Cross-fitted naive Bayes (Bernoulli features, Laplace smoothing) telling the window's texts
/// `b` from the sample `a`: each half of both is scored by a model of the other halves (the
/// sample's half counts, `a_counts`, are computed once per profile); the AUC over all.
fn domain_auc(a: &[Vec<u32>], a_counts: &[Counts; 2], b: &[&[u32]]) -> f64 {
    let (mut scores, mut positive) = (Vec::new(), Vec::new());
    for (half, (ma, na)) in a_counts.iter().enumerate() {
        let (mb, nb) = counts(b.iter().copied(), half);
        let score = |x: &[u32]| -> f64 {
            x.iter()
                .map(|f| {
                    let ca = f64::from(ma.get(f).copied().unwrap_or(0));
                    let cb = f64::from(mb.get(f).copied().unwrap_or(0));
                    ((cb + 1.0) * (na + 2.0) / ((ca + 1.0) * (nb + 2.0))).ln()
                })
                .sum()
        };
        let held_a = a.iter().map(Vec::as_slice).map(|x| (x, false));
        let held_b = b.iter().map(|&x| (x, true));
        for (i, (x, is_b)) in held_a.enumerate().chain(held_b.enumerate()) {
            if i % 2 == half {
                scores.push(score(x));
                positive.push(is_b);
            }
        }
    }
    roc_auc(&scores, &positive)
}

impl ProfileReader {
    /// The profile.
    pub fn profile(&self) -> &DriftProfile {
        &self.profile
    }

    /// What the monitor keeps of a served text with predicted label `label` (O(words)).
    pub fn observe(&self, text: &str, label: Option<usize>) -> Observation {
        let (words, oov, features) = describe(text, &self.bloom);
        Observation {
            label,
            words,
            oov,
            features,
        }
    }

    /// The four tests on a window of observations (oldest first; the domain test reads the
    /// most recent [`SAMPLE_TEXTS`]).
    pub fn check(&self, window: &[Observation]) -> DriftReport {
        let p = &self.profile;
        let n = window.len();
        let mut tests = Vec::new();
        let mut label_shares = vec![0f64; p.labels.len()];
        if n > 0 && !p.label_shares.is_empty() {
            for o in window {
                if let Some(l) = o.label.filter(|&l| l < label_shares.len()) {
                    label_shares[l] += 1.0 / n as f64;
                }
            }
            let v = psi(&p.label_shares, &label_shares);
            tests.push(DriftTest {
                name: "label_psi",
                value: v,
                threshold: PSI_ALARM,
                alarm: v > PSI_ALARM,
            });
        }
        if n > 0 && !p.length_shares.is_empty() {
            let mut shares = vec![0f64; p.length_shares.len()];
            for o in window {
                shares[bin(&p.length_edges, f64::from(o.words))] += 1.0 / n as f64;
            }
            let v = psi(&p.length_shares, &shares);
            tests.push(DriftTest {
                name: "length_psi",
                value: v,
                threshold: PSI_ALARM,
                alarm: v > PSI_ALARM,
            });
        }
        let with_words: Vec<f64> = window
            .iter()
            .filter(|o| o.words > 0)
            .map(|o| f64::from(o.oov))
            .collect();
        let oov_share = mean(&with_words);
        if !with_words.is_empty() {
            let line = p.oov_mean
                + (Z_ALARM * p.oov_sd / (with_words.len() as f64).sqrt()).max(OOV_RISE_FLOOR);
            tests.push(DriftTest {
                name: "oov_share",
                value: oov_share,
                threshold: line,
                alarm: oov_share > line,
            });
        }
        let recent: Vec<&[u32]> = window
            .iter()
            .rev()
            .take(SAMPLE_TEXTS)
            .map(|o| o.features.as_slice())
            .collect();
        if recent.len() >= 20 && self.sample.len() >= 20 {
            let auc = domain_auc(&self.sample, &self.sample_counts, &recent);
            let (n0, n1) = (self.sample.len() as f64, recent.len() as f64);
            let sd = ((n0 + n1 + 1.0) / (12.0 * n0 * n1)).sqrt();
            let line = (0.5 + Z_ALARM * sd).max(AUC_FLOOR);
            tests.push(DriftTest {
                name: "domain_auc",
                value: auc,
                threshold: line,
                alarm: auc > line,
            });
        }
        let alarm = tests.iter().any(|t| t.alarm);
        DriftReport {
            window: n,
            oov_share,
            label_shares,
            tests,
            alarm,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(text: &str, label: &str) -> Record {
        Record {
            text: text.into(),
            labels: vec![label.into()],
            line: 0,
        }
    }

    fn corpus(words: &[&str], n: usize, seed: u64, label: &str) -> Vec<Record> {
        let mut rng = Rng::with_stream(seed, 1);
        (0..n)
            .map(|_| {
                let len = 5 + rng.below(10);
                let t: Vec<&str> = (0..len).map(|_| words[rng.below(words.len())]).collect();
                rec(&t.join(" "), label)
            })
            .collect()
    }

    const SPORT: &[&str] = &[
        "goal", "match", "team", "win", "league", "coach", "season", "player", "cup", "score",
    ];
    const MONEY: &[&str] = &[
        "bank", "market", "shares", "profit", "rate", "loan", "price", "stock", "fund", "trade",
    ];

    #[test]
    fn psi_and_auc_basics() {
        assert!(psi(&[0.5, 0.5], &[0.5, 0.5]).abs() < 1e-12);
        assert!(psi(&[0.5, 0.5], &[0.9, 0.1]) > 0.5);
        assert_eq!(
            roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
            1.0
        );
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), 0.5);
    }

    #[test]
    fn same_traffic_is_quiet_and_other_traffic_alarms() {
        let mut train = corpus(SPORT, 400, 1, "sport");
        train.extend(corpus(MONEY, 400, 2, "money"));
        let labels = vec!["money".to_string(), "sport".to_string()];
        let profile = DriftProfile::build(&train, &labels, true, 7);
        let reader = profile.reader();
        let mut same = corpus(SPORT, 150, 3, "sport");
        same.extend(corpus(MONEY, 150, 4, "money"));
        let window: Vec<Observation> = same
            .iter()
            .map(|r| reader.observe(&r.text, labels.iter().position(|l| l == &r.labels[0])))
            .collect();
        let quiet = reader.check(&window);
        assert!(!quiet.alarm, "{quiet:?}");
        assert_eq!(quiet.tests.len(), 4);
        // Only one label: the label test alarms.
        let sport: Vec<Observation> = corpus(SPORT, 300, 5, "sport")
            .iter()
            .map(|r| reader.observe(&r.text, Some(1)))
            .collect();
        let r = reader.check(&sport);
        assert!(
            r.tests.iter().any(|t| t.name == "label_psi" && t.alarm),
            "{r:?}"
        );
        // New words: out-of-vocabulary share and the domain classifier alarm.
        let other: &[&str] = &[
            "recipe", "oven", "flour", "sugar", "bake", "salt", "butter", "egg",
        ];
        let foreign: Vec<Observation> = corpus(other, 300, 6, "x")
            .iter()
            .map(|r| reader.observe(&r.text, Some(0)))
            .collect();
        let r = reader.check(&foreign);
        assert!(
            r.tests.iter().any(|t| t.name == "oov_share" && t.alarm),
            "{r:?}"
        );
        assert!(
            r.tests.iter().any(|t| t.name == "domain_auc" && t.alarm),
            "{r:?}"
        );
    }

    #[test]
    fn profile_round_trips_through_json() {
        let train = corpus(SPORT, 50, 1, "sport");
        let p = DriftProfile::build(&train, &["sport".to_string()], true, 1);
        let json = serde_json::to_string(&p).unwrap();
        let back: DriftProfile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.reader().sample.len(), 50);
    }
}
