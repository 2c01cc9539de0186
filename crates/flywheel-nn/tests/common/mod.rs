//! What the parity tests share: reading fixtures strictly (a missing key or a list of the wrong
//! length fails the test, it never skips a comparison) and one bound for comparing a tensor
//! with its reference.
//!
//! The bound is relative to the reference tensor's scale: `max|got - want| ≤ REL · max|want| +
//! ABS`. An absolute bound alone is blind to small tensors: a recurrent kernel's gradient has a
//! median of about 4e-6 and an SGD step moves weights by about 1e-7, so `1e-5` absolute would
//! pass with all of them zeroed.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use serde_json::Value;

/// Relative part of the bound (of the reference tensor's largest magnitude).
pub const REL: f64 = 1e-4;
/// Absolute part of the bound: float32 resolution of values of order 1.
pub const ABS: f64 = 1e-7;

/// Reads a fixture file below `tests/fixtures/`.
pub fn load(relative: &str) -> Value {
    let path = format!("{}/tests/fixtures/{relative}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `v[key]`, failing when the key is missing (serde_json's indexing gives `null` instead).
#[track_caller]
pub fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or_else(|| {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("?");
        panic!("fixture {name}: missing key {key:?}")
    })
}

/// `v[key]` as an array.
#[track_caller]
pub fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    get(v, key)
        .as_array()
        .unwrap_or_else(|| panic!("fixture key {key:?} is not a list"))
}

/// `v[key]` as a number.
#[track_caller]
pub fn number(v: &Value, key: &str) -> f64 {
    get(v, key)
        .as_f64()
        .unwrap_or_else(|| panic!("fixture key {key:?} is not a number"))
}

/// `v[key]` as a non-negative integer.
#[track_caller]
pub fn usize_of(v: &Value, key: &str) -> usize {
    get(v, key)
        .as_u64()
        .unwrap_or_else(|| panic!("fixture key {key:?} is not a non-negative integer")) as usize
}

/// `v[key]` as a string.
#[track_caller]
pub fn string<'a>(v: &'a Value, key: &str) -> &'a str {
    get(v, key)
        .as_str()
        .unwrap_or_else(|| panic!("fixture key {key:?} is not a string"))
}

/// All numbers of a (nested) list, in order.
pub fn flat64(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat64).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number: {other}"),
    }
}

/// All numbers of a (nested) list as `f32` (the fixtures' floats are float32 values).
pub fn flat(v: &Value) -> Vec<f32> {
    flat64(v).into_iter().map(|x| x as f32).collect()
}

/// Pairs two lists that must have the same length (`zip` alone stops at the shorter one).
#[track_caller]
pub fn zip_exact<'a, A, B>(
    what: &str,
    a: &'a [A],
    b: &'a [B],
) -> impl Iterator<Item = (&'a A, &'a B)> {
    assert_eq!(
        a.len(),
        b.len(),
        "{what}: {} items vs {} expected",
        a.len(),
        b.len()
    );
    a.iter().zip(b)
}

/// The largest magnitude of a tensor.
pub fn scale(want: &[f64]) -> f64 {
    want.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Asserts `max|got - want| ≤ REL · max|want| + ABS` (and equal lengths, finite values).
#[track_caller]
pub fn assert_close64(what: &str, got: &[f64], want: &[f64]) {
    assert_close_rel(what, got, want, REL);
}

/// Asserts `max|got - want| ≤ rel · max|want| + ABS`, for references known more tightly than
/// the float32 training tests' (a converged convex fit).
#[track_caller]
pub fn assert_close_rel(what: &str, got: &[f64], want: &[f64], rel: f64) {
    assert_within(what, got, want, rel * scale(want) + ABS);
}

/// Asserts `max|got - want| ≤ tol` (and equal lengths, finite values).
#[track_caller]
fn assert_within(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert!(!want.is_empty(), "{what}: empty reference");
    let (i, err) = got
        .iter()
        .zip(want)
        .map(|(a, b)| {
            if a.is_finite() {
                (a - b).abs()
            } else {
                f64::INFINITY
            }
        })
        .enumerate()
        .fold((0, -1.0f64), |m, (i, e)| if e > m.1 { (i, e) } else { m });
    if std::env::var_os("FLYWHEEL_PARITY_REPORT").is_some() {
        eprintln!(
            "PARITY {what}: error {err:.2e} bound {tol:.2e} scale {:.2e} ratio {:.2e}",
            scale(want),
            err / scale(want)
        );
    }
    assert!(
        err <= tol,
        "{what}: max error {err:.3e} > bound {tol:.3e} at {i} (got {}, want {})",
        got[i],
        want[i]
    );
}

/// [`assert_close64`] for `f32` tensors.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    let g: Vec<f64> = got.iter().map(|&v| f64::from(v)).collect();
    let w: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
    assert_close64(what, &g, &w);
}

/// Asserts a scalar within the bound of its own magnitude.
#[track_caller]
pub fn assert_close_scalar(what: &str, got: f64, want: f64) {
    assert_close64(what, &[got], &[want]);
}

/// Asserts that a step moved the weights as the reference did: the change `after - before` of
/// every tensor within the bound of the reference's change (a step is small next to the
/// weights, so comparing the weights alone would not see a missing step), and the weights
/// themselves within the bound of theirs.
///
/// A change is the difference of two float32 weights, which each side rounds on its own, so
/// the change's bound also allows one float32 unit in the last place of the largest weight
/// (`f32::EPSILON · max|w|`, 1.2e-7 for weights up to 1; a step of Adam is about 1e-3).
#[track_caller]
pub fn assert_step(
    what: &str,
    before: &[f32],
    after: &[f32],
    want_before: &[f32],
    want_after: &[f32],
) {
    let delta = |a: &[f32], b: &[f32]| -> Vec<f64> {
        assert_eq!(a.len(), b.len(), "{what}: length");
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) - f64::from(y))
            .collect()
    };
    let want_change = delta(want_after, want_before);
    let weights: Vec<f64> = want_after.iter().map(|&v| f64::from(v)).collect();
    let ulp = f64::from(f32::EPSILON) * scale(&weights);
    assert_within(
        &format!("{what} (change)"),
        &delta(after, before),
        &want_change,
        REL * scale(&want_change) + ABS + ulp,
    );
    assert_close(what, after, want_after);
}

/// Time-major ids from a `[batch, steps]` matrix.
pub fn time_major(x: &Value) -> (Vec<u32>, usize, usize) {
    let rows: Vec<Vec<u32>> = x
        .as_array()
        .expect("x is a list of rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("a row of ids")
                .iter()
                .map(|v| v.as_u64().expect("an id") as u32)
                .collect()
        })
        .collect();
    let (b, t) = (rows.len(), rows[0].len());
    let mut ids = vec![0; b * t];
    for (j, r) in rows.iter().enumerate() {
        assert_eq!(r.len(), t, "row {j} of x");
        for (s, &id) in r.iter().enumerate() {
            ids[s * b + j] = id;
        }
    }
    (ids, t, b)
}
