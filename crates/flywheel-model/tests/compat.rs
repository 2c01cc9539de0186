//! Model files written by earlier versions keep loading: their checksum covers the metadata
//! fields they were written with, and new fields take their defaults.

use std::path::Path;

use flywheel_model::{Artifact, Prediction};
use flywheel_text::Segmentation;

#[test]
fn a_model_written_before_the_new_families_loads_and_predicts_the_same() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-lstm-before-families.fw");
    let a = Artifact::load(&path).unwrap();
    assert_eq!(a.meta.spec.family, flywheel_model::Family::Lstm);
    assert_eq!(a.meta.spec.tokenizer.segmentation, Segmentation::Keras);
    assert!(
        !a.meta.spec.detect_cjk,
        "an old file's spec has no detection"
    );
    let p = a.pipeline.predict(&["good movie", "awful plot"]).unwrap();
    // Printed by the version that wrote the file (see the fixture's .md).
    let want = [
        ("neg", 0.500_975_906_848_907_5_f64),
        ("pos", 0.501_853_227_615_356_4),
    ];
    for (got, (label, score)) in p.iter().zip(want) {
        match got {
            Prediction::Class {
                label: l, score: s, ..
            } => {
                assert_eq!(l, label);
                assert!((f64::from(*s) - score).abs() < 1e-6, "{s} vs {score}");
            }
            other => panic!("{other:?}"),
        }
    }
    // An edited old file is still refused.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 1;
    let e = Artifact::from_bytes(&bytes, "edited")
        .unwrap_err()
        .to_string();
    assert!(e.contains("checksum"), "{e}");
}
