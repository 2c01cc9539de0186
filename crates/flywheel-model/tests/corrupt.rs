//! Damaged model files: every truncation and a spread of single-bit flips of a real file are
//! refused with an error (or, where a flip lands on bytes the format ignores, load to the very
//! same model) — never a panic.

use flywheel_model::Artifact;

const FILE: &[u8] = include_bytes!("fixtures/v1-lstm-before-families.fw");
const TEXTS: [&str; 3] = ["good movie", "bad movie", "nothing known here"];

fn outputs(a: &Artifact) -> Vec<f32> {
    a.pipeline.outputs_of_texts(&TEXTS).unwrap()
}

#[test]
fn truncated_files_are_refused() {
    let whole = Artifact::from_bytes(FILE, "whole").unwrap();
    assert!(!outputs(&whole).is_empty());
    let n = FILE.len();
    let cuts: Vec<usize> = (0..n).step_by(37).chain(n.saturating_sub(64)..n).collect();
    for cut in cuts {
        let r = Artifact::from_bytes(&FILE[..cut], "cut");
        assert!(r.is_err(), "a file cut at {cut} of {n} bytes loaded");
    }
}

#[test]
fn flipped_bits_are_refused_or_harmless() {
    let expected = outputs(&Artifact::from_bytes(FILE, "whole").unwrap());
    let mut refused = 0;
    let positions: Vec<usize> = (0..FILE.len()).step_by(13).collect();
    for &at in &positions {
        for bit in [0u8, 3, 7] {
            let mut bytes = FILE.to_vec();
            bytes[at] ^= 1 << bit;
            match Artifact::from_bytes(&bytes, "flipped") {
                Err(_) => refused += 1,
                Ok(a) => assert_eq!(
                    outputs(&a),
                    expected,
                    "bit {bit} of byte {at} changed the model and still loaded"
                ),
            }
        }
    }
    // Nearly every byte is covered by the checksum.
    assert!(
        refused * 100 >= positions.len() * 3 * 95,
        "only {refused} refused"
    );
}
