//! Parity with scikit-learn for the linear models fitted by L-BFGS: on the same sparse rows and
//! `C`, each loss matches its scikit-learn model — weights, biases, decision values, and the
//! model's own `predict` against scikit-learn's outputs (`predict_proba`, Ridge's `predict`,
//! or for `LinearSVC` the softmax of its margins and its predicted labels): every tensor within
//! `1e-5 · max|reference| + 1e-7` (`tests/common`).
//!
//! | case | flywheel | scikit-learn |
//! |---|---|---|
//! | `logistic_multiclass` | `Softmax`, 3 classes | `LogisticRegression` (multinomial) |
//! | `logistic_binary` | `Softmax`, 2 outputs | `LogisticRegression` at `2C` (see below) |
//! | `sigmoid_multilabel` | `Sigmoid`, 3 labels | `OneVsRestClassifier(LogisticRegression)` |
//! | `squared_hinge_multiclass` | `SquaredHinge`, 3 classes | `LinearSVC` |
//! | `squared_hinge_binary` | `SquaredHinge`, 2 outputs | `LinearSVC` |
//! | `ridge` | `Mse`, 1 output | `Ridge(alpha = 1/C)` |
//!
//! A binary softmax's loss sees only `w1 - w0`, and its penalty on both outputs is minimised at
//! `w0 = -w1`, where it is half of scikit-learn's penalty on its single output: flywheel's
//! binary logistic regression at `C` is scikit-learn's at `2C`.
//!
//! Fixture: `tests/fixtures/sklearn_linear.json`, made by
//! `tests/fixtures/gen_sklearn_linear_fixture.py` at the repository root
//! (`bench/requirements-sklearn.txt`).

mod common;

use common::{array, assert_close_rel, flat64, get, number, string, usize_of, zip_exact};
use flywheel_nn::{LinearLoss, LinearModel, LinearTargets, SparseRows};
use serde_json::Value;

/// Both sides are optima of the same strictly convex objective: scikit-learn's from a Newton
/// solver (or, for LinearSVC and Ridge, an exact one), ours from L-BFGS stopped by its line
/// search near double precision, stored as float32. Observed: at most 2.5e-6 of the scale.
const REL: f64 = 1e-5;

fn fixture() -> Value {
    common::load("sklearn_linear.json")
}

fn case<'a>(file: &'a Value, name: &str) -> &'a Value {
    let cases = array(file, "cases");
    let found: Vec<&Value> = cases.iter().filter(|c| c["name"] == name).collect();
    assert_eq!(found.len(), 1, "fixture case {name}");
    found[0]
}

fn ints(v: &Value) -> Vec<u32> {
    flat64(v).iter().map(|&x| x as u32).collect()
}

/// The case's rows.
fn rows_of(file: &Value, case: &Value) -> SparseRows {
    let data = get(get(file, "data"), string(case, "data"));
    let mut x = SparseRows::new();
    for row in array(data, "rows") {
        let idx = ints(get(row, "indices"));
        let val: Vec<f32> = flat64(get(row, "values"))
            .iter()
            .map(|&v| v as f32)
            .collect();
        assert_eq!(idx.len(), val.len(), "a row's indices and values");
        x.push(&idx, &val);
    }
    x
}

fn softmax(z: &[f64]) -> Vec<f64> {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

fn argmax(v: &[f64]) -> u32 {
    (0..v.len()).fold(0, |b, j| if v[j] > v[b] { j } else { b }) as u32
}

/// Fits the case's rows with `loss` and `k` outputs at the case's `C`, then compares the
/// weights, decision values and `predict` with scikit-learn's.
fn check(name: &str, loss: LinearLoss, k: usize) {
    let file = fixture();
    let case = case(&file, name);
    let features = usize_of(&file, "features");
    let c = number(case, "c");
    let x = rows_of(&file, case);
    let n = x.len();
    let l2 = 1.0 / (c * n as f64);
    let labels = ints(get(get(get(&file, "data"), string(case, "data")), "labels"));
    // Multi-label and regression cases carry their own targets; the others use the labels.
    let values: Vec<f32> = if loss.takes_classes() {
        Vec::new()
    } else {
        flat64(get(case, "targets"))
            .iter()
            .map(|&v| v as f32)
            .collect()
    };
    let targets = if loss.takes_classes() {
        assert_eq!(labels.len(), n, "labels");
        LinearTargets::Classes(&labels)
    } else {
        assert_eq!(values.len(), n * k, "targets");
        LinearTargets::Values(&values)
    };
    let mut m = LinearModel::new(features, k, loss);
    m.fit(&x, targets, l2, 10_000, 1e-12).unwrap();

    // scikit-learn keeps one output for two classes (the second class's margin); ours keeps
    // both, the first the negation of the second. The squared hinge's second output is
    // scikit-learn's; a softmax sees only their difference, so each is half of it.
    let half = if loss == LinearLoss::Softmax {
        0.5
    } else {
        1.0
    };
    let coef = flat64(get(case, "coef"));
    let intercept = flat64(get(case, "intercept"));
    let outputs = intercept.len();
    assert_eq!(coef.len(), outputs * features, "{name}: coef");
    assert_eq!(outputs, if k == 2 { 1 } else { k }, "{name}: outputs");
    let sign_of = |j: usize| match (outputs, j) {
        (1, 0) if k == 2 => (-half, 0),
        (1, _) if k == 2 => (half, 0),
        (_, j) => (1.0, j),
    };
    let (w, b) = (m.weight.data(), m.bias.data());
    let mut got_w = Vec::new();
    let mut want_w = Vec::new();
    let mut got_b = Vec::new();
    let mut want_b = Vec::new();
    for j in 0..k {
        let (s, o) = sign_of(j);
        got_b.push(f64::from(b[j]));
        want_b.push(s * intercept[o]);
        for f in 0..features {
            got_w.push(f64::from(w[f * k + j]));
            want_w.push(s * coef[o * features + f]);
        }
    }
    // Weights and biases as the one parameter vector the fit optimises: its tolerance leaves
    // the same absolute error in both (a bias's scale can be much smaller than the weights').
    got_w.extend(got_b);
    want_w.extend(want_b);
    assert_close_rel(&format!("{name} parameters"), &got_w, &want_w, REL);

    // The model's own predictions, row by row.
    let mut got = Vec::new();
    let mut out = vec![0.0f32; k];
    for i in 0..n {
        let (idx, val) = x.row(i);
        m.predict(idx, val, &mut out).unwrap();
        got.extend(out.iter().map(|&v| f64::from(v)));
    }
    match loss {
        LinearLoss::Mse => {
            assert_close_rel(
                &format!("{name} predict"),
                &got,
                &flat64(get(case, "values")),
                REL,
            );
        }
        LinearLoss::Softmax | LinearLoss::Sigmoid => {
            let proba = flat64(get(case, "proba"));
            assert_close_rel(&format!("{name} predict"), &got, &proba, REL);
        }
        LinearLoss::SquaredHinge => {
            // No probabilities in scikit-learn: the model predicts the softmax of its margins.
            let decision = flat64(get(case, "decision"));
            assert_eq!(decision.len(), n * outputs, "{name}: decision");
            let margins: Vec<f64> = decision
                .chunks_exact(outputs)
                .flat_map(|d| {
                    (0..k)
                        .map(|j| sign_of(j).0 * d[sign_of(j).1])
                        .collect::<Vec<_>>()
                })
                .collect();
            let want: Vec<f64> = margins.chunks_exact(k).flat_map(softmax).collect();
            assert_close_rel(&format!("{name} predict"), &got, &want, REL);
        }
    }
    // The predicted class is scikit-learn's (`predict`) for the single-label losses.
    if loss.takes_classes() {
        let predicted = ints(get(case, "predicted"));
        let ours: Vec<u32> = got.chunks_exact(k).map(argmax).collect();
        for (i, (a, b)) in zip_exact("predicted labels", &ours, &predicted).enumerate() {
            assert_eq!(a, b, "{name} row {i}: predicted class");
        }
    }
}

#[test]
fn logistic_regression_matches_scikit_learn() {
    check("logistic_multiclass", LinearLoss::Softmax, 3);
}

#[test]
fn binary_logistic_regression_matches_scikit_learn_at_twice_c() {
    let file = fixture();
    let case = case(&file, "logistic_binary");
    assert_eq!(number(case, "sklearn_c"), 2.0 * number(case, "c"));
    check("logistic_binary", LinearLoss::Softmax, 2);
}

#[test]
fn multi_label_sigmoid_matches_one_vs_rest_logistic_regression() {
    check("sigmoid_multilabel", LinearLoss::Sigmoid, 3);
}

#[test]
fn squared_hinge_matches_linear_svc() {
    check("squared_hinge_multiclass", LinearLoss::SquaredHinge, 3);
    check("squared_hinge_binary", LinearLoss::SquaredHinge, 2);
}

#[test]
fn least_squares_matches_ridge() {
    check("ridge", LinearLoss::Mse, 1);
}
