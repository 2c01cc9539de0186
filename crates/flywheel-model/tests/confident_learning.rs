//! Confident learning against cleanlab: the same out-of-fold probabilities and given labels
//! give the same calibrated confident joint and the same flagged rows as cleanlab's
//! `compute_confident_joint` and `find_label_issues` (fixture made by
//! `tests/fixtures/confident_learning/make.py`).

use flywheel_model::audit::confident_learning;
use serde_json::Value;

#[test]
fn the_joint_and_the_issues_match_cleanlab() {
    let text = include_str!("fixtures/confident_learning/cases.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    for case in doc["cases"].as_array().unwrap() {
        let k = case["k"].as_u64().unwrap() as usize;
        let given: Vec<usize> = case["given"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let probs: Vec<f64> = case["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let issues: Vec<usize> = case["issues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let joint: Vec<Vec<u64>> = case["joint"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect()
            })
            .collect();
        let cl = confident_learning(&given, &probs, k);
        assert_eq!(cl.joint, joint, "{k} classes: the calibrated joint");
        assert_eq!(cl.issues, issues, "{k} classes: the flagged rows");
        assert!(!issues.is_empty());
    }
}
