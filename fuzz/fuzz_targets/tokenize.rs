//! Every tokenizer mode, n-gram hashing and PII redaction on arbitrary text: no panics, spans
//! inside the text, and redaction leaves nothing it would redact again.
#![no_main]

use flywheel_text::redact::{find_pii, redact};
use flywheel_text::segment::Segmentation;
use flywheel_text::{ngrams, KerasTokenizer, TokenizerConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(bytes);
    let segmentation = match selector % 5 {
        0 => Segmentation::Keras,
        1 => Segmentation::Word,
        2 => Segmentation::Char,
        3 => Segmentation::Cjk,
        _ => Segmentation::Jieba,
    };
    let config = TokenizerConfig {
        char_level: selector & 0x10 != 0,
        oov_token: (selector & 0x20 != 0).then(|| "<oov>".to_string()),
        num_words: (selector & 0x40 != 0).then_some(8),
        segmentation,
        ..TokenizerConfig::default()
    };
    let Ok(mut tokenizer) = KerasTokenizer::new(config) else {
        return;
    };
    tokenizer.fit(&[text.as_ref()]);
    let ids = tokenizer.text_to_sequence(&text);
    assert!(ids.iter().all(|&id| (id as usize) <= tokenizer.vocab_size()));
    let chars = text.chars().count();
    for span in tokenizer.token_spans(&text) {
        assert!(span.start <= span.end && span.end <= chars, "{span:?} outside {chars} chars");
    }
    let mut words = Vec::new();
    tokenizer.for_each_token(&text, |w| words.push(ngrams::hash(w)));
    ngrams::word_ngrams(&words, 3, 1 << 20, |b| assert!(b < 1 << 20));
    for w in text.split_whitespace().take(16) {
        ngrams::char_ngrams(w, 1, 6, 1 << 20, |b| assert!(b < 1 << 20));
    }
    let (redacted, _) = redact(&text);
    assert!(find_pii(&redacted).is_empty(), "redaction left PII in {redacted:?}");
});
