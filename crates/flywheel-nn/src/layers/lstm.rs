//! Long short-term memory layer with Keras's semantics (gate order i, f, c, o; sigmoid gates,
//! tanh cell; `dropout` on the inputs and `recurrent_dropout` on the carried state, each a mask
//! drawn once per sequence and reused at every step).
//!
//! Data is time-major: step `t` of a batch is the contiguous block `[t * batch, (t + 1) * batch)`.
//! The input projection of all steps is one GEMM (`[T·B, E] × [E, 4H]`), the recurrence is one
//! small matrix product per step fused with the gate non-linearities, and every buffer lives in
//! an [`LstmCache`] that is reused across batches of the same shape.

use crate::{init, Parameters, Real, Rng, Tensor};

/// An LSTM layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Lstm<T> {
    /// Input kernel `[inputs, 4·hidden]`.
    pub kernel: Tensor<T>,
    /// Recurrent kernel `[hidden, 4·hidden]`.
    pub recurrent: Tensor<T>,
    /// Bias `[4·hidden]`.
    pub bias: Tensor<T>,
}

/// Buffers of one forward/backward pass, kept between batches.
#[derive(Debug, Clone, Default)]
pub struct LstmCache<T> {
    steps: usize,
    batch: usize,
    /// `[T, B, 4H]`: gate activations after the forward pass; pre-activation gradients after
    /// the backward pass.
    gates: Vec<T>,
    /// `[T + 1, B, H]`: cell states, `c[0] = 0`.
    cells: Vec<T>,
    /// `[T, B, H]`: `tanh(c_t)`.
    tanh_cells: Vec<T>,
    /// `[T, B, H]`: the (masked) previous hidden state fed to the recurrent product at step t.
    h_in: Vec<T>,
    /// `[B, H]`: the last hidden state.
    h: Vec<T>,
    /// `[B, H]` scratch: gradient w.r.t. h and c.
    dh: Vec<T>,
    dc: Vec<T>,
    /// `[4H, H]`: transposed recurrent kernel.
    u_t: Vec<T>,
    /// `[T·B, E + H]`: inputs and recurrent inputs side by side (backward scratch).
    xh: Vec<T>,
    /// `[E + H, 4H]`: their weight gradients (backward scratch).
    dwu: Vec<T>,
}

impl<T: Real> LstmCache<T> {
    fn ensure(&mut self, steps: usize, batch: usize, hidden: usize) {
        let g = 4 * hidden;
        self.steps = steps;
        self.batch = batch;
        resize(&mut self.gates, steps * batch * g);
        resize(&mut self.cells, (steps + 1) * batch * hidden);
        resize(&mut self.tanh_cells, steps * batch * hidden);
        resize(&mut self.h_in, steps * batch * hidden);
        resize(&mut self.h, batch * hidden);
        resize(&mut self.dh, batch * hidden);
        resize(&mut self.dc, batch * hidden);
        resize(&mut self.u_t, g * hidden);
    }

    /// The last hidden state `[B, H]` of the latest forward pass.
    pub fn last_hidden(&self) -> &[T] {
        &self.h
    }
}

fn resize<T: Real>(v: &mut Vec<T>, n: usize) {
    if v.len() != n {
        v.resize(n, T::ZERO);
    }
}

/// Recurrent state of a batch during inference.
#[derive(Debug, Clone, Default)]
pub struct LstmState<T> {
    /// `[B, H]` hidden states.
    pub h: Vec<T>,
    /// `[B, H]` cell states.
    pub c: Vec<T>,
}

impl<T: Real> Lstm<T> {
    /// Keras's initialisation: Glorot-uniform kernel, orthogonal recurrent kernel, zero bias with
    /// the forget gate's bias set to 1 (`unit_forget_bias=True`).
    pub fn new(inputs: usize, hidden: usize, rng: &mut Rng) -> Self {
        let kernel = init::glorot_uniform(inputs, 4 * hidden, rng);
        let recurrent = init::orthogonal(hidden, 4 * hidden, rng);
        let mut bias = Tensor::zeros(&[4 * hidden]);
        bias.data_mut()[hidden..2 * hidden].fill(T::ONE);
        Lstm {
            kernel,
            recurrent,
            bias,
        }
    }

    /// Zero parameters of the same shapes (a gradient buffer).
    pub fn zeros_like(&self) -> Self {
        Lstm {
            kernel: Tensor::zeros(self.kernel.shape()),
            recurrent: Tensor::zeros(self.recurrent.shape()),
            bias: Tensor::zeros(self.bias.shape()),
        }
    }

    /// Input width.
    pub fn inputs(&self) -> usize {
        self.kernel.shape()[0]
    }

    /// Hidden width.
    pub fn hidden(&self) -> usize {
        self.recurrent.shape()[0]
    }

    /// Training forward pass over a time-major `[steps, batch, inputs]` input (already
    /// dropped-out). `rec_mask` (`[batch, hidden]`) is the recurrent dropout mask. The last
    /// hidden state is in `cache.last_hidden()`.
    #[inline(always)]
    pub fn forward_train(
        &self,
        x: &[T],
        steps: usize,
        batch: usize,
        rec_mask: Option<&[T]>,
        cache: &mut LstmCache<T>,
    ) {
        let (e, h) = (self.inputs(), self.hidden());
        let g = 4 * h;
        let bh = batch * h;
        cache.ensure(steps, batch, h);
        project_inputs(self, x, steps * batch, &mut cache.gates);
        cache.cells[..bh].fill(T::ZERO);
        cache.h.fill(T::ZERO);
        let u = self.recurrent.data();
        for t in 0..steps {
            let z = &mut cache.gates[t * batch * g..(t + 1) * batch * g];
            let h_in = &mut cache.h_in[t * bh..(t + 1) * bh];
            match rec_mask {
                Some(m) => {
                    for ((a, &b), &m) in h_in.iter_mut().zip(&cache.h).zip(m) {
                        *a = b * m;
                    }
                }
                None => h_in.copy_from_slice(&cache.h),
            }
            if t > 0 {
                recurrent_product(z, h_in, u, batch, h);
            }
            let (before, after) = cache.cells.split_at_mut((t + 1) * bh);
            let c_prev = &before[t * bh..];
            let c_next = &mut after[..bh];
            let tc = &mut cache.tanh_cells[t * bh..(t + 1) * bh];
            for b in 0..batch {
                let zr = &mut z[b * g..(b + 1) * g];
                activate_gates(zr, h);
                let r = b * h..(b + 1) * h;
                cell_update(
                    zr,
                    &c_prev[r.clone()],
                    &mut c_next[r.clone()],
                    &mut tc[r.clone()],
                    &mut cache.h[r],
                    h,
                );
            }
        }
        let _ = e;
    }

    /// Backward pass for the latest [`Lstm::forward_train`]: `dh_last` is `d loss / d h_T`
    /// (`[batch, hidden]`). Parameter gradients are added to `grads`; `dx` (if given) receives
    /// `d loss / d x` (`[steps, batch, inputs]`, before the input dropout mask).
    #[inline(always)]
    pub fn backward(
        &self,
        x: &[T],
        rec_mask: Option<&[T]>,
        dh_last: &[T],
        cache: &mut LstmCache<T>,
        grads: &mut Lstm<T>,
        dx: Option<&mut [T]>,
    ) {
        let (e, h) = (self.inputs(), self.hidden());
        let g = 4 * h;
        let (steps, batch) = (cache.steps, cache.batch);
        let bh = batch * h;
        let u = self.recurrent.data();
        for k in 0..h {
            for j in 0..g {
                cache.u_t[j * h + k] = u[k * g + j];
            }
        }
        cache.dh.copy_from_slice(&dh_last[..bh]);
        cache.dc.fill(T::ZERO);
        for t in (0..steps).rev() {
            let z = &mut cache.gates[t * batch * g..(t + 1) * batch * g];
            let c_prev = &cache.cells[t * bh..(t + 1) * bh];
            let tc = &cache.tanh_cells[t * bh..(t + 1) * bh];
            for b in 0..batch {
                let r = b * h..(b + 1) * h;
                gate_gradients(
                    &mut z[b * g..(b + 1) * g],
                    &c_prev[r.clone()],
                    &tc[r.clone()],
                    &cache.dh[r.clone()],
                    &mut cache.dc[r],
                    h,
                );
            }
            if t > 0 {
                for b in 0..batch {
                    let dhr = &mut cache.dh[b * h..(b + 1) * h];
                    backprop_hidden(&z[b * g..(b + 1) * g], &cache.u_t, dhr, h);
                    if let Some(m) = rec_mask {
                        for (d, &m) in dhr.iter_mut().zip(&m[b * h..(b + 1) * h]) {
                            *d *= m;
                        }
                    }
                }
            }
        }
        let rows = steps * batch;
        let dz = &cache.gates[..rows * g];
        // d[W; U] = [x, h_in]ᵀ · dZ as one GEMM (dZ is packed once, not twice).
        let w = e + h;
        resize(&mut cache.xh, rows * w);
        for ((xh, xr), hr) in cache
            .xh
            .chunks_exact_mut(w)
            .zip(x.chunks_exact(e))
            .zip(cache.h_in.chunks_exact(h))
        {
            xh[..e].copy_from_slice(xr);
            xh[e..].copy_from_slice(hr);
        }
        resize(&mut cache.dwu, w * g);
        T::gemm(
            w,
            rows,
            g,
            T::ONE,
            &cache.xh,
            true,
            dz,
            false,
            T::ZERO,
            &mut cache.dwu,
        );
        let (dw, du) = cache.dwu.split_at(e * g);
        for (a, &b) in grads.kernel.data_mut().iter_mut().zip(dw) {
            *a += b;
        }
        for (a, &b) in grads.recurrent.data_mut().iter_mut().zip(du) {
            *a += b;
        }
        let gb = grads.bias.data_mut();
        for row in dz.chunks_exact(g) {
            for (a, &b) in gb.iter_mut().zip(row) {
                *a += b;
            }
        }
        if let Some(dx) = dx {
            T::gemm(
                rows,
                g,
                e,
                T::ONE,
                dz,
                false,
                self.kernel.data(),
                true,
                T::ZERO,
                dx,
            );
        }
    }

    /// Inference over a *packed* time-major input: step `t` has `active[t]` rows (non-decreasing
    /// in `t`), the first `active[t]` rows of the batch, stored one step after another in `x`
    /// (`[Σ active, inputs]`). Rows that are not yet active keep their state untouched, so
    /// `state` must hold each row's starting state (e.g. the state after its padding).
    /// `gates` is scratch space.
    #[inline(always)]
    pub fn forward_packed(
        &self,
        x: &[T],
        active: &[usize],
        state: &mut LstmState<T>,
        gates: &mut Vec<T>,
    ) {
        let h = self.hidden();
        let g = 4 * h;
        let rows: usize = active.iter().sum();
        resize(gates, rows * g);
        project_inputs(self, x, rows, gates);
        let u = self.recurrent.data();
        let mut off = 0;
        for &n in active {
            let z = &mut gates[off * g..(off + n) * g];
            off += n;
            recurrent_product(z, &state.h[..n * h], u, n, h);
            for b in 0..n {
                let zr = &mut z[b * g..(b + 1) * g];
                activate_gates(zr, h);
                let r = b * h..(b + 1) * h;
                cell_update_in_place(zr, &mut state.c[r.clone()], &mut state.h[r], h);
            }
        }
    }

    /// States after feeding the same input vector `x` for `0..=steps` steps from a zero state:
    /// `(h, c)` each `[(steps + 1), hidden]`. With `x` = the padding token's embedding this gives
    /// the state of every pre-padded sequence when its first real token arrives.
    pub fn constant_input_states(&self, x: &[T], steps: usize) -> (Vec<T>, Vec<T>) {
        let h = self.hidden();
        let mut hs = vec![T::ZERO; (steps + 1) * h];
        let mut cs = vec![T::ZERO; (steps + 1) * h];
        let mut state = LstmState {
            h: vec![T::ZERO; h],
            c: vec![T::ZERO; h],
        };
        let mut gates = Vec::new();
        for t in 1..=steps {
            self.forward_packed(x, &[1], &mut state, &mut gates);
            hs[t * h..(t + 1) * h].copy_from_slice(&state.h);
            cs[t * h..(t + 1) * h].copy_from_slice(&state.c);
        }
        (hs, cs)
    }
}

/// `gates[r] = bias + x[r] · W` for `rows` rows.
#[inline(always)]
fn project_inputs<T: Real>(lstm: &Lstm<T>, x: &[T], rows: usize, gates: &mut [T]) {
    let g = lstm.bias.len();
    let bias = lstm.bias.data();
    for row in gates[..rows * g].chunks_exact_mut(g) {
        row.copy_from_slice(bias);
    }
    T::gemm(
        rows,
        lstm.inputs(),
        g,
        T::ONE,
        x,
        false,
        lstm.kernel.data(),
        false,
        T::ONE,
        gates,
    );
}

/// `z[b] += h_in[b] · U` for every row `b` (U is `[H, 4H]`).
#[inline(always)]
fn recurrent_product<T: Real>(z: &mut [T], h_in: &[T], u: &[T], batch: usize, h: usize) {
    match h {
        4 => recurrent_product_fixed::<T, 4, 16>(z, h_in, u, batch),
        8 => recurrent_product_fixed::<T, 8, 32>(z, h_in, u, batch),
        16 => recurrent_product_fixed::<T, 16, 64>(z, h_in, u, batch),
        _ => {
            let g = 4 * h;
            for (zr, hr) in z.chunks_exact_mut(g).zip(h_in.chunks_exact(h)).take(batch) {
                for (&s, ur) in hr.iter().zip(u.chunks_exact(g)) {
                    for (a, &w) in zr.iter_mut().zip(ur) {
                        *a += s * w;
                    }
                }
            }
        }
    }
}

/// [`recurrent_product`] for a fixed width: a row of `z` stays in registers over the product.
#[inline(always)]
fn recurrent_product_fixed<T: Real, const H: usize, const G: usize>(
    z: &mut [T],
    h_in: &[T],
    u: &[T],
    batch: usize,
) {
    for (zr, hr) in z.chunks_exact_mut(G).zip(h_in.chunks_exact(H)).take(batch) {
        let mut acc = [T::ZERO; G];
        acc.copy_from_slice(zr);
        for (&s, ur) in hr.iter().zip(u.chunks_exact(G)) {
            for (a, &w) in acc.iter_mut().zip(ur) {
                *a += s * w;
            }
        }
        zr.copy_from_slice(&acc);
    }
}

/// `dh = dz · Uᵀ` for one row (`u_t` is the transposed recurrent kernel, `[4H, H]`).
#[inline(always)]
fn backprop_hidden<T: Real>(dz: &[T], u_t: &[T], dh: &mut [T], h: usize) {
    match h {
        4 => backprop_hidden_fixed::<T, 4>(dz, u_t, dh),
        8 => backprop_hidden_fixed::<T, 8>(dz, u_t, dh),
        16 => backprop_hidden_fixed::<T, 16>(dz, u_t, dh),
        _ => {
            dh.fill(T::ZERO);
            for (&s, ut_row) in dz.iter().zip(u_t.chunks_exact(h)) {
                for (d, &w) in dh.iter_mut().zip(ut_row) {
                    *d += s * w;
                }
            }
        }
    }
}

#[inline(always)]
fn backprop_hidden_fixed<T: Real, const H: usize>(dz: &[T], u_t: &[T], dh: &mut [T]) {
    let mut acc = [T::ZERO; H];
    for (&s, ut_row) in dz.iter().zip(u_t.chunks_exact(H)) {
        for (d, &w) in acc.iter_mut().zip(ut_row) {
            *d += s * w;
        }
    }
    dh[..H].copy_from_slice(&acc);
}

/// Applies sigmoid to i, f, o and tanh to the candidate, in place, for one row `[4H]`.
#[inline(always)]
fn activate_gates<T: Real>(zr: &mut [T], h: usize) {
    let (if_, rest) = zr.split_at_mut(2 * h);
    let (cand, o) = rest.split_at_mut(h);
    for v in if_.iter_mut() {
        *v = v.sigmoid();
    }
    for v in cand.iter_mut() {
        *v = v.tanh();
    }
    for v in o.iter_mut() {
        *v = v.sigmoid();
    }
}

/// `c = f·c_prev + i·g; h = o·tanh(c)` for one row, keeping `tanh(c)` for the backward pass.
#[inline(always)]
fn cell_update<T: Real>(
    zr: &[T],
    c_prev: &[T],
    c_next: &mut [T],
    tc: &mut [T],
    h_out: &mut [T],
    h: usize,
) {
    let (i, rest) = zr.split_at(h);
    let (f, rest) = rest.split_at(h);
    let (g, o) = rest.split_at(h);
    for j in 0..h {
        let c = f[j] * c_prev[j] + i[j] * g[j];
        let t = c.tanh();
        c_next[j] = c;
        tc[j] = t;
        h_out[j] = o[j] * t;
    }
}

/// Inference variant of [`cell_update`] that updates the state in place.
#[inline(always)]
fn cell_update_in_place<T: Real>(zr: &[T], c: &mut [T], h_out: &mut [T], h: usize) {
    let (i, rest) = zr.split_at(h);
    let (f, rest) = rest.split_at(h);
    let (g, o) = rest.split_at(h);
    for j in 0..h {
        let cn = f[j] * c[j] + i[j] * g[j];
        c[j] = cn;
        h_out[j] = o[j] * cn.tanh();
    }
}

/// One row of the backward step: turns the gate activations in `zr` into pre-activation
/// gradients and carries the cell gradient `dc` to the previous step.
#[inline(always)]
fn gate_gradients<T: Real>(zr: &mut [T], c_prev: &[T], tc: &[T], dh: &[T], dc: &mut [T], h: usize) {
    let (zi, rest) = zr.split_at_mut(h);
    let (zf, rest) = rest.split_at_mut(h);
    let (zg, zo) = rest.split_at_mut(h);
    for j in 0..h {
        let (i, f, g, o) = (zi[j], zf[j], zg[j], zo[j]);
        let t = tc[j];
        let d_o = dh[j] * t;
        let dcv = dc[j] + dh[j] * o * (T::ONE - t * t);
        zi[j] = dcv * g * i * (T::ONE - i);
        zf[j] = dcv * c_prev[j] * f * (T::ONE - f);
        zg[j] = dcv * i * (T::ONE - g * g);
        zo[j] = d_o * o * (T::ONE - o);
        dc[j] = dcv * f;
    }
}

impl<T: Real> Parameters<T> for Lstm<T> {
    fn tensors(&self) -> Vec<(String, &Tensor<T>)> {
        vec![
            ("lstm.kernel".to_string(), &self.kernel),
            ("lstm.recurrent_kernel".to_string(), &self.recurrent),
            ("lstm.bias".to_string(), &self.bias),
        ]
    }
    fn tensors_mut(&mut self) -> Vec<&mut Tensor<T>> {
        vec![&mut self.kernel, &mut self.recurrent, &mut self.bias]
    }
}
