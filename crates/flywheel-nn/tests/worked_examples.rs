//! The article's worked examples, computed with the engine's own losses, layer and optimiser
//! (see docs/seed-examples.md).

use flywheel_nn::{Dense, Loss, Optimizer, OptimizerKind, Parameters, Targets, Tensor};

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

#[test]
fn mse_of_the_example_is_2_68() {
    let y = [5.0f32, 6.0, 7.0, 8.0, 9.0];
    let y_hat = [4.8f64, 5.2, 5.6, 6.0, 6.4];
    let mut grad = vec![0.0; 5];
    let sum = Loss::MeanSquaredError
        .forward_backward(&y_hat, 1, Targets::Values(&y), 1.0, &mut grad)
        .unwrap();
    let mse = sum / 5.0;
    assert!((mse - 2.68).abs() < 1e-6, "MSE = {mse}");
}

#[test]
fn cross_entropy_of_the_example_is_3_0366_nats() {
    let y = [1.0f32, 0.0, 1.0, 0.0, 1.0];
    let p = [0.3f64, 0.6, 0.8, 0.9, 0.2];
    let z: Vec<f64> = p.iter().map(|&p| logit(p)).collect();
    let mut grad = vec![0.0; 5];
    // The article's figure is -Σ y·ln p: the positive examples' terms.
    let pos: Vec<usize> = (0..5).filter(|&i| y[i] == 1.0).collect();
    let zp: Vec<f64> = pos.iter().map(|&i| z[i]).collect();
    let yp: Vec<f32> = pos.iter().map(|&i| y[i]).collect();
    let positive_terms = Loss::BinaryCrossEntropy
        .forward_backward(&zp, 1, Targets::Values(&yp), 1.0, &mut grad[..3])
        .unwrap();
    assert!((positive_terms - 3.0366).abs() < 1e-4, "{positive_terms}");
    // Binary cross-entropy also charges the negatives: -Σ [y ln p + (1-y) ln(1-p)] = 6.2554.
    let full = Loss::BinaryCrossEntropy
        .forward_backward(&z, 1, Targets::Values(&y), 1.0, &mut grad)
        .unwrap();
    assert!((full - 6.2554).abs() < 1e-4, "{full}");
}

/// Full-batch gradient descent on y = θ0 + θ1·x, x = 2..6, y = 3 + x, lr 0.1, with the loss
/// scaled by `scale` (loss = scale · Σ (ŷ - y)²). Returns θ after `steps` updates.
fn gradient_descent(scale: f64, steps: usize) -> (f64, f64) {
    let x: Vec<f64> = (2..=6).map(f64::from).collect();
    let y: Vec<f32> = x.iter().map(|v| (3.0 + v) as f32).collect();
    let mut layer = Dense::<f64> {
        kernel: Tensor::zeros(&[1, 1]),
        bias: Tensor::zeros(&[1]),
    };
    let mut opt = Optimizer::new(OptimizerKind::Sgd {
        lr: 0.1,
        momentum: 0.0,
    });
    let mut out = vec![0.0; 5];
    let mut dout = vec![0.0; 5];
    for _ in 0..steps {
        layer.forward(&x, 5, &mut out);
        Loss::MeanSquaredError
            .forward_backward(&out, 1, Targets::Values(&y), scale, &mut dout)
            .unwrap();
        let mut grads = layer.zeros_like();
        layer.backward(&x, &dout, 5, &mut grads, None);
        let g: Vec<&Tensor<f64>> = grads.tensors().into_iter().map(|t| t.1).collect();
        opt.step(&mut layer.tensors_mut(), &g).unwrap();
    }
    (layer.bias.data()[0], layer.kernel.data()[0])
}

#[test]
fn gradient_descent_diverges_on_half_sum_and_converges_on_the_mean() {
    // Hessian of ½·Σ(θ0 + θ1 x - y)² is XᵀX = [[5, 20], [20, 90]]: eigenvalues (95 ± √8825)/2.
    let lambda_max = (95.0 + 8825.0f64.sqrt()) / 2.0;
    assert!((lambda_max - 94.47).abs() < 0.01);
    // lr 0.1 > 2 / 94.5: ½·Σ diverges.
    let (t0, t1) = gradient_descent(0.5, 200);
    assert!(
        !(t0.is_finite() && t1.is_finite() && t0.abs() < 1e6),
        "θ = {t0}, {t1}"
    );
    // The mean (½·mean, Hessian XᵀX / 5, λ_max ≈ 18.9 < 20) converges to θ = [3, 1].
    let (t0, t1) = gradient_descent(0.5 / 5.0, 5000);
    assert!(
        (t0 - 3.0).abs() < 1e-6 && (t1 - 1.0).abs() < 1e-6,
        "θ = {t0}, {t1}"
    );
}
