//! The model-file loader on arbitrary bytes (seeded with real files, truncated and bit-flipped
//! by the fuzzer): a clear error, never a panic, and a file that loads predicts.
#![no_main]

use flywheel_model::Artifact;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(artifact) = Artifact::from_bytes(data, "fuzz") {
        let _ = artifact.pipeline.outputs_of_texts(&["a short text", ""]);
    }
});
