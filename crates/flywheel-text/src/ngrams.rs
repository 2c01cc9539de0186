//! fastText's hashing of word n-grams and character n-grams into a fixed number of buckets.
//!
//! The hash is fastText's (32-bit FNV-1a over the UTF-8 bytes, each byte sign-extended as a C
//! `int8_t`), and the n-gram recurrences are the same, so a text yields the same bucket numbers
//! as in fastText for the same `bucket` setting.

/// fastText's string hash.
pub fn hash(s: &str) -> u32 {
    let mut h: u32 = 2_166_136_261;
    for &b in s.as_bytes() {
        h ^= (b as i8) as i32 as u32;
        h = h.wrapping_mul(16_777_619);
    }
    h
}

/// Calls `f(bucket)` for every word n-gram of length `2..=n` of the token hashes `hashes`
/// (as fastText's `addWordNgrams`).
pub fn word_ngrams(hashes: &[u32], n: usize, buckets: u64, mut f: impl FnMut(u64)) {
    if n < 2 || buckets == 0 {
        return;
    }
    for i in 0..hashes.len() {
        // fastText keeps hashes as int32 and widens them to uint64 with sign extension.
        let mut h = hashes[i] as i32 as i64 as u64;
        for &next in hashes.iter().take((i + n).min(hashes.len())).skip(i + 1) {
            h = h
                .wrapping_mul(116_049_371)
                .wrapping_add(next as i32 as i64 as u64);
            f(h % buckets);
        }
    }
}

/// Calls `f(bucket)` for every character n-gram of `<word>` with `minn..=maxn` characters,
/// leaving out the lone `<` and `>` (as fastText's `computeSubwords`).
pub fn char_ngrams(word: &str, minn: usize, maxn: usize, buckets: u64, mut f: impl FnMut(u64)) {
    if maxn == 0 || buckets == 0 || minn > maxn {
        return;
    }
    let wrapped = format!("<{word}>");
    let starts: Vec<usize> = wrapped
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(wrapped.len()))
        .collect();
    let chars = starts.len() - 1;
    for i in 0..chars {
        for n in minn.max(1)..=maxn {
            let j = i + n;
            if j > chars {
                break;
            }
            if n == 1 && (i == 0 || j == chars) {
                continue;
            }
            let gram = &wrapped[starts[i]..starts[j]];
            f(u64::from(hash(gram)) % buckets);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_fnv1a_with_signed_bytes() {
        // FNV-1a 32 of "a" (ASCII bytes are the same signed or not).
        assert_eq!(hash("a"), 0xe40c292c);
        assert_eq!(hash(""), 2_166_136_261);
        // A byte >= 0x80 is sign-extended before the xor: differs from plain FNV-1a.
        let plain = (2_166_136_261u32 ^ 0xc3).wrapping_mul(16_777_619);
        let plain = (plain ^ 0xa9).wrapping_mul(16_777_619);
        assert_ne!(hash("é"), plain);
    }

    #[test]
    fn word_ngrams_cover_each_window_once() {
        let mut got = Vec::new();
        word_ngrams(&[1, 2, 3], 2, 1 << 40, |b| got.push(b));
        assert_eq!(got, vec![116_049_371 + 2, 2 * 116_049_371 + 3]);
        let mut tri = 0;
        word_ngrams(&[1, 2, 3, 4], 3, 100, |_| tri += 1);
        assert_eq!(tri, 3 + 2); // bigrams and trigrams
        let mut none = 0;
        word_ngrams(&[1, 2, 3], 1, 100, |_| none += 1);
        assert_eq!(none, 0);
    }

    #[test]
    fn char_ngrams_match_fasttext_subwords() {
        // "<ab>" with 1..=3: a, b, <a, ab, b>, <ab, ab> (not the lone < or >).
        let mut got = Vec::new();
        char_ngrams("ab", 1, 3, u64::MAX, |b| got.push(b));
        let want: Vec<u64> = ["<a", "<ab", "a", "ab", "ab>", "b", "b>"]
            .iter()
            .map(|g| u64::from(hash(g)))
            .collect();
        let (mut g, mut w) = (got.clone(), want.clone());
        g.sort_unstable();
        w.sort_unstable();
        assert_eq!(g, w);
        // Multi-byte characters count as one.
        let mut n = 0;
        char_ngrams("中文", 2, 2, 97, |b| {
            assert!(b < 97);
            n += 1
        });
        assert_eq!(n, 3); // <中, 中文, 文>
    }
}
