//! The labelled-data and text readers on arbitrary bytes: errors are fine, panics are not.
#![no_main]

use flywheel_data::{read_labelled_from, read_texts_from, Format, ReadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let format = match selector % 4 {
        0 => Format::Csv,
        1 => Format::Tsv,
        2 => Format::Jsonl,
        _ => Format::FastText,
    };
    let opts = ReadOptions::default();
    if let Ok(records) = read_labelled_from(bytes, format, "fuzz", &opts) {
        for r in &records {
            assert!(!r.labels.is_empty(), "a labelled record without a label");
        }
    }
    let _ = read_texts_from(bytes, Some(format), &opts);
    let _ = read_texts_from(bytes, None, &opts);
});
