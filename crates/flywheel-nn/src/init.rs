//! Keras's weight initialisers.

use crate::{Real, Rng, Tensor};

/// Uniform in `[-limit, limit]` (Keras `RandomUniform(-0.05, 0.05)` for embeddings).
pub fn uniform<T: Real>(shape: &[usize], limit: f64, rng: &mut Rng) -> Tensor<T> {
    let mut t = Tensor::zeros(shape);
    for x in t.data_mut() {
        *x = T::from_f64(rng.uniform(-limit, limit));
    }
    t
}

/// Glorot (Xavier) uniform for a `[fan_in, fan_out]` kernel: limit `sqrt(6 / (fan_in + fan_out))`.
pub fn glorot_uniform<T: Real>(fan_in: usize, fan_out: usize, rng: &mut Rng) -> Tensor<T> {
    let limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
    uniform(&[fan_in, fan_out], limit, rng)
}

/// Keras `Orthogonal(gain=1)` for a `[rows, cols]` matrix: the Q factor of a Gaussian matrix
/// (signs fixed so that R has a positive diagonal), transposed when `rows < cols`, so that the
/// rows (or columns) are orthonormal.
pub fn orthogonal<T: Real>(rows: usize, cols: usize, rng: &mut Rng) -> Tensor<T> {
    let (tall, narrow) = (rows.max(cols), rows.min(cols));
    // Columns of a [tall, narrow] Gaussian matrix, orthonormalised by modified Gram–Schmidt
    // (which yields R with a positive diagonal, i.e. Keras's sign convention).
    let mut q: Vec<Vec<f64>> = (0..narrow)
        .map(|_| (0..tall).map(|_| rng.normal()).collect())
        .collect();
    for j in 0..narrow {
        for i in 0..j {
            let (done, rest) = q.split_at_mut(j);
            let dot: f64 = done[i].iter().zip(rest[0].iter()).map(|(a, b)| a * b).sum();
            for (x, y) in rest[0].iter_mut().zip(done[i].iter()) {
                *x -= dot * y;
            }
        }
        let norm = q[j].iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
        for x in q[j].iter_mut() {
            *x /= norm;
        }
    }
    let mut t = Tensor::zeros(&[rows, cols]);
    let d = t.data_mut();
    for r in 0..rows {
        for c in 0..cols {
            // q is [tall, narrow] stored by columns; when rows < cols the result is its transpose.
            let v = if rows >= cols { q[c][r] } else { q[r][c] };
            d[r * cols + c] = T::from_f64(v);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthogonal_rows_are_orthonormal() {
        let mut rng = Rng::new(1);
        let w: Tensor<f64> = orthogonal(4, 16, &mut rng);
        let d = w.data();
        for i in 0..4 {
            for j in 0..4 {
                let dot: f64 = (0..16).map(|k| d[i * 16 + k] * d[j * 16 + k]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn glorot_respects_limit() {
        let mut rng = Rng::new(2);
        let w: Tensor<f32> = glorot_uniform(16, 64, &mut rng);
        let limit = (6.0f32 / 80.0).sqrt();
        assert!(w.data().iter().all(|x| x.abs() <= limit));
        assert!(w.data().iter().any(|x| x.abs() > limit * 0.9));
    }
}
