//! De-duplication and the seeded stratified train/test split.
//!
//! The split reproduces the reference build exactly: Python's
//! `random.Random(seed)` (MT19937 seeded with `init_by_array`), labels in sorted
//! order, each label's rows (in source order) shuffled with the one generator and
//! the first `round(0.2 * n)` taken as test, then the train list and the test
//! list shuffled with the same generator.

use std::collections::{BTreeMap, HashMap};

/// One example: (text, label).
pub type Row = (String, String);

/// The seed of the published splits.
pub const SEED: u32 = 20240601;

/// The fraction of each label that goes to the test file.
pub const TEST_FRACTION: f64 = 0.2;

/// What [`dedupe`] dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DedupeStats {
    /// Repeated copies of a text with one label (the first copy is kept).
    pub repeats: usize,
    /// Rows dropped because their text occurs with more than one label.
    pub conflicting: usize,
}

/// Removes exact-duplicate texts (first copy kept) and every row whose text
/// occurs with different labels; keeps the source order.
pub fn dedupe(rows: Vec<Row>) -> (Vec<Row>, DedupeStats) {
    let mut first_label: HashMap<&str, (&str, bool)> = HashMap::with_capacity(rows.len());
    for (text, label) in &rows {
        first_label
            .entry(text.as_str())
            .and_modify(|(l, conflict)| *conflict |= *l != label.as_str())
            .or_insert((label.as_str(), false));
    }
    let conflicting: std::collections::HashSet<String> = first_label
        .iter()
        .filter(|(_, (_, c))| *c)
        .map(|(t, _)| (*t).to_string())
        .collect();
    drop(first_label);
    let mut stats = DedupeStats::default();
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let mut out = Vec::with_capacity(rows.len());
    for (text, label) in rows {
        if conflicting.contains(&text) {
            stats.conflicting += 1;
        } else if seen.contains(&text) {
            stats.repeats += 1;
        } else {
            seen.insert(text.clone());
            out.push((text, label));
        }
    }
    (out, stats)
}

/// Splits rows into (train, test): per label (sorted), `round(fraction * n)`
/// rows go to test; both files are shuffled. Deterministic for a seed.
pub fn stratified_split(rows: Vec<Row>, seed: u32, fraction: f64) -> (Vec<Row>, Vec<Row>) {
    let mut by_label: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for row in rows {
        by_label.entry(row.1.clone()).or_default().push(row);
    }
    let mut rng = PyRandom::new(seed);
    let mut train = Vec::new();
    let mut test = Vec::new();
    for (_, mut group) in by_label {
        rng.shuffle(&mut group);
        let n_test = ((group.len() as f64) * fraction).round_ties_even() as usize;
        let n_test = n_test.min(group.len());
        let rest = group.split_off(n_test);
        test.extend(group);
        train.extend(rest);
    }
    rng.shuffle(&mut train);
    rng.shuffle(&mut test);
    (train, test)
}

/// Python's `random.Random` for an integer seed below 2**32: MT19937 with
/// `init_by_array([seed])`, `getrandbits` and `shuffle` as CPython implements them.
#[derive(Clone)]
pub struct PyRandom {
    mt: [u32; N],
    index: usize,
}

const N: usize = 624;
const M: usize = 397;

impl PyRandom {
    /// The generator `random.Random(seed)` gives.
    pub fn new(seed: u32) -> Self {
        let mut r = PyRandom {
            mt: [0; N],
            index: N,
        };
        r.init_by_array(&[seed]);
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..N {
            let prev = self.mt[i - 1];
            self.mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let mut i = 1usize;
        let mut j = 0usize;
        for _ in 0..N.max(key.len()) {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
        }
        self.mt[0] = 0x8000_0000;
    }

    /// The next 32-bit output (`genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            for k in 0..N {
                let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % N] & 0x7fff_ffff);
                let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
                self.mt[k] = self.mt[(k + M) % N] ^ (y >> 1) ^ mag;
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `getrandbits(k)` for `1 <= k <= 32`.
    fn getrandbits(&mut self, k: u32) -> u32 {
        self.next_u32() >> (32 - k)
    }

    /// `_randbelow(n)` for `n >= 1` (rejection sampling on `n.bit_length()` bits).
    fn randbelow(&mut self, n: usize) -> usize {
        let n = n as u64;
        let k = 64 - n.leading_zeros();
        if k > 32 {
            // Lists this long do not occur here; fall back to two draws.
            loop {
                let r = ((self.next_u32() as u64) << 32 | self.next_u32() as u64) >> (64 - k);
                if r < n {
                    return r as usize;
                }
            }
        }
        loop {
            let r = self.getrandbits(k) as u64;
            if r < n {
                return r as usize;
            }
        }
    }

    /// `random.shuffle(x)` (Fisher-Yates from the end).
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i + 1);
            x.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_random() {
        // Values from CPython: random.Random(20240601).getrandbits(32), three times.
        let mut r = PyRandom::new(20240601);
        assert_eq!(
            [r.next_u32(), r.next_u32(), r.next_u32()],
            [506791070, 1956151858, 1804907957]
        );
        let mut x: Vec<u32> = (0..10).collect();
        PyRandom::new(20240601).shuffle(&mut x);
        assert_eq!(x, [0, 5, 8, 9, 4, 2, 3, 6, 7, 1]);
        let mut y: Vec<u32> = (0..1000).collect();
        PyRandom::new(7).shuffle(&mut y);
        assert_eq!(
            &y[..10],
            &[878, 857, 349, 313, 382, 850, 927, 194, 261, 946]
        );
    }

    fn rows(spec: &[(&str, &str)]) -> Vec<Row> {
        spec.iter()
            .map(|(t, l)| (t.to_string(), l.to_string()))
            .collect()
    }

    #[test]
    fn dedupe_keeps_first_and_drops_conflicts() {
        let (out, stats) = dedupe(rows(&[
            ("a", "x"),
            ("b", "y"),
            ("a", "x"),
            ("c", "x"),
            ("c", "y"),
            ("d", "y"),
        ]));
        assert_eq!(out, rows(&[("a", "x"), ("b", "y"), ("d", "y")]));
        assert_eq!(
            stats,
            DedupeStats {
                repeats: 1,
                conflicting: 2
            }
        );
    }

    #[test]
    fn split_is_stratified_and_deterministic() {
        let mut input = Vec::new();
        for i in 0..50 {
            input.push((format!("a{i}"), "a".to_string()));
        }
        for i in 0..12 {
            input.push((format!("b{i}"), "b".to_string()));
        }
        let (train, test) = stratified_split(input.clone(), SEED, TEST_FRACTION);
        let count = |v: &[Row], l: &str| v.iter().filter(|r| r.1 == l).count();
        assert_eq!(count(&test, "a"), 10);
        assert_eq!(count(&test, "b"), 2); // round(2.4) = 2
        assert_eq!(count(&train, "a"), 40);
        assert_eq!(count(&train, "b"), 10);
        let (train2, test2) = stratified_split(input.clone(), SEED, TEST_FRACTION);
        assert_eq!((&train, &test), (&train2, &test2));
        let (train3, _) = stratified_split(input, SEED + 1, TEST_FRACTION);
        assert_ne!(train, train3);
        let mut all: Vec<_> = train.iter().chain(test.iter()).cloned().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 62);
    }
}
