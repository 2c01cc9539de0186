//! Parity with scikit-learn for the linear models fitted by L-BFGS: on the same sparse rows and
//! `C`, multinomial logistic regression matches `LogisticRegression(solver="lbfgs")` and the
//! one-vs-rest squared hinge matches `LinearSVC(loss="squared_hinge")` — weights, biases and
//! decision values to 1e-5.
//!
//! Fixture: `tests/fixtures/sklearn_linear.json`, made by
//! `tests/fixtures/gen_sklearn_linear_fixture.py` at the repository root.

use flywheel_nn::{LinearLoss, LinearModel, LinearTargets, SparseRows};
use serde_json::Value;

const TOL: f64 = 1e-5;

fn cases() -> Vec<Value> {
    let path = format!(
        "{}/tests/fixtures/sklearn_linear.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn numbers(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(numbers).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number: {other}"),
    }
}

fn close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= TOL * (1.0 + want.abs()),
        "{what}: got {got}, scikit-learn {want}"
    );
}

/// Fits the fixture's case with `loss` and compares it with scikit-learn's fit.
fn check(case: &Value, loss: LinearLoss) {
    let name = case["name"].as_str().unwrap();
    let features = case["features"].as_u64().unwrap() as usize;
    let classes = case["classes"].as_u64().unwrap() as usize;
    let c = case["c"].as_f64().unwrap();
    let mut x = SparseRows::new();
    for row in case["rows"].as_array().unwrap() {
        let idx: Vec<u32> = numbers(&row["indices"]).iter().map(|&i| i as u32).collect();
        let val: Vec<f32> = numbers(&row["values"]).iter().map(|&v| v as f32).collect();
        x.push(&idx, &val);
    }
    let y: Vec<u32> = numbers(&case["labels"]).iter().map(|&l| l as u32).collect();
    let l2 = 1.0 / (c * y.len() as f64);
    let mut m = LinearModel::new(features, classes, loss);
    m.fit(&x, LinearTargets::Classes(&y), l2, 10_000, 1e-12)
        .unwrap();

    // scikit-learn keeps one output for two classes (the second class's); ours keeps both,
    // and the first is the negation of the second.
    let coef = numbers(&case["coef"]);
    let intercept = numbers(&case["intercept"]);
    let decision = numbers(&case["decision"]);
    let outputs = intercept.len();
    let sign_of = |j: usize| match (outputs, j) {
        (1, 0) => (-1.0, 0),
        (1, _) => (1.0, 0),
        (_, j) => (1.0, j),
    };
    let (w, b) = (m.weight.data(), m.bias.data());
    for j in 0..classes {
        let (s, o) = sign_of(j);
        close(
            &format!("{name} bias {j}"),
            f64::from(b[j]),
            s * intercept[o],
        );
        for f in 0..features {
            close(
                &format!("{name} weight [{f}, {j}]"),
                f64::from(w[f * classes + j]),
                s * coef[o * features + f],
            );
        }
    }
    for i in 0..x.len() {
        let (idx, val) = x.row(i);
        for j in 0..classes {
            let (s, o) = sign_of(j);
            let mut z = f64::from(b[j]);
            for (&f, &v) in idx.iter().zip(val) {
                z += f64::from(v) * f64::from(w[f as usize * classes + j]);
            }
            close(
                &format!("{name} decision [{i}, {j}]"),
                z,
                s * decision[i * outputs + o],
            );
        }
    }
}

#[test]
fn logistic_regression_matches_scikit_learn() {
    let all = cases();
    let case = all
        .iter()
        .find(|c| c["name"] == "logistic_multiclass")
        .unwrap();
    check(case, LinearLoss::Softmax);
}

#[test]
fn squared_hinge_matches_linear_svc() {
    let all = cases();
    for name in ["squared_hinge_multiclass", "squared_hinge_binary"] {
        let case = all.iter().find(|c| c["name"] == name).unwrap();
        check(case, LinearLoss::SquaredHinge);
    }
}
