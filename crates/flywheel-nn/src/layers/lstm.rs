//! Long short-term memory layer with Keras's semantics (gate order i, f, c, o; sigmoid gates,
//! tanh cell; `dropout` on the inputs and `recurrent_dropout` on the carried state, each a mask
//! drawn once per sequence and reused at every step).
//!
//! Data is time-major: step `t` of a batch is the contiguous block `[t * batch, (t + 1) * batch)`.
//! The input projection of all steps is one GEMM (`[T·B, E] × [E, 4H]`), the recurrence is one
//! small matrix product per step fused with the gate non-linearities, and every buffer lives in
//! an [`LstmCache`] that is reused across batches of the same shape.

use super::recurrent::{Recurrent, SeqMasks};
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
    /// `[T, B, H]` (no recurrent mask) or `[T, B, 4H]` (one masked copy per gate): the previous
    /// hidden state fed to the recurrent product at step t.
    h_in: Vec<T>,
    /// `[T·B, 4E]`: each row's input under the four gates' dropout masks.
    xm: Vec<T>,
    /// `[4H, E]`: transposed input kernel (backward with input masks).
    w_t: Vec<T>,
    /// `[B, H]`: the last hidden state.
    h: Vec<T>,
    /// `[B, H]` scratch: gradient w.r.t. h and c.
    dh: Vec<T>,
    dc: Vec<T>,
    /// `[4H, H]`: transposed recurrent kernel.
    u_t: Vec<T>,
}

impl<T: Real> LstmCache<T> {
    fn ensure(&mut self, steps: usize, batch: usize, hidden: usize, h_in_width: usize) {
        let g = 4 * hidden;
        self.steps = steps;
        self.batch = batch;
        resize(&mut self.gates, steps * batch * g);
        resize(&mut self.cells, (steps + 1) * batch * hidden);
        resize(&mut self.tanh_cells, steps * batch * hidden);
        resize(&mut self.h_in, steps * batch * h_in_width);
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

    /// Training forward pass over a time-major `[steps, batch, inputs]` input.
    ///
    /// Dropout follows Keras 3's LSTM cell with `recurrent_dropout > 0` (its "implementation 1"):
    /// one input mask and one recurrent mask *per gate*, each `[batch, 4, width]` (sequence-major,
    /// gates i, f, c, o), drawn once per sequence and reused at every step. For Keras's
    /// dropout-only case (one shared input mask) pass the same mask four times. The last hidden
    /// state is in `cache.last_hidden()`.
    #[inline(always)]
    pub fn forward_train(
        &self,
        x: &[T],
        steps: usize,
        batch: usize,
        in_mask: Option<&[T]>,
        rec_mask: Option<&[T]>,
        cache: &mut LstmCache<T>,
    ) {
        self.forward_train_masked(x, steps, batch, in_mask, rec_mask, None, cache)
    }

    /// [`Lstm::forward_train`] with a step mask `[steps, batch]`: where it is false the row's
    /// input is not read and its state (h and c) is carried unchanged (Keras `mask_zero=True`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn forward_train_masked(
        &self,
        x: &[T],
        steps: usize,
        batch: usize,
        in_mask: Option<&[T]>,
        rec_mask: Option<&[T]>,
        step_mask: Option<&[bool]>,
        cache: &mut LstmCache<T>,
    ) {
        let (e, h) = (self.inputs(), self.hidden());
        let g = 4 * h;
        let bh = batch * h;
        let rows = steps * batch;
        let hw = if rec_mask.is_some() { g } else { h };
        cache.ensure(steps, batch, h, hw);
        match in_mask {
            None => project_inputs(self, x, rows, &mut cache.gates),
            Some(m) => {
                // Row r holds its input under each gate's mask: [x⊙m_i | x⊙m_f | x⊙m_c | x⊙m_o].
                resize(&mut cache.xm, rows * 4 * e);
                for (r, (xr, xo)) in x
                    .chunks_exact(e)
                    .zip(cache.xm.chunks_exact_mut(4 * e))
                    .enumerate()
                {
                    let mr = &m[(r % batch) * 4 * e..][..4 * e];
                    for (xo, mg) in xo.chunks_exact_mut(e).zip(mr.chunks_exact(e)) {
                        for ((o, &v), &mv) in xo.iter_mut().zip(xr).zip(mg) {
                            *o = v * mv;
                        }
                    }
                }
                let bias = self.bias.data();
                for row in cache.gates[..rows * g].chunks_exact_mut(g) {
                    row.copy_from_slice(bias);
                }
                gated_product(&mut cache.gates, &cache.xm, self.kernel.data(), rows, e, h);
            }
        }
        cache.cells[..bh].fill(T::ZERO);
        cache.h.fill(T::ZERO);
        let u = self.recurrent.data();
        for t in 0..steps {
            let z = &mut cache.gates[t * batch * g..(t + 1) * batch * g];
            let h_in = &mut cache.h_in[t * batch * hw..(t + 1) * batch * hw];
            match rec_mask {
                Some(m) => {
                    for (b, hr) in h_in.chunks_exact_mut(g).enumerate() {
                        let hb = &cache.h[b * h..(b + 1) * h];
                        for (o, mr) in hr
                            .chunks_exact_mut(h)
                            .zip(m[b * g..(b + 1) * g].chunks_exact(h))
                        {
                            for ((o, &v), &mv) in o.iter_mut().zip(hb).zip(mr) {
                                *o = v * mv;
                            }
                        }
                    }
                    if t > 0 {
                        gated_product(z, h_in, u, batch, h, h);
                    }
                }
                None => {
                    h_in.copy_from_slice(&cache.h);
                    if t > 0 {
                        recurrent_product(z, h_in, u, batch, h);
                    }
                }
            }
            let (before, after) = cache.cells.split_at_mut((t + 1) * bh);
            let c_prev = &before[t * bh..];
            let c_next = &mut after[..bh];
            let tc = &mut cache.tanh_cells[t * bh..(t + 1) * bh];
            for b in 0..batch {
                let r = b * h..(b + 1) * h;
                if step_mask.is_some_and(|m| !m[t * batch + b]) {
                    c_next[r.clone()].copy_from_slice(&c_prev[r]);
                    continue;
                }
                let zr = &mut z[b * g..(b + 1) * g];
                activate_gates(zr, h);
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
    }

    /// Backward pass for the latest [`Lstm::forward_train`] (same masks): `dh_last` is
    /// `d loss / d h_T` (`[batch, hidden]`). Parameter gradients are added to `grads`; `dx` (if
    /// given) receives `d loss / d x` (`[steps, batch, inputs]`, the input masks included).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &[T],
        in_mask: Option<&[T]>,
        rec_mask: Option<&[T]>,
        dh_last: &[T],
        cache: &mut LstmCache<T>,
        grads: &mut Lstm<T>,
        dx: Option<&mut [T]>,
    ) {
        self.backward_masked(x, in_mask, rec_mask, None, dh_last, cache, grads, dx)
    }

    /// Backward pass for the latest [`Lstm::forward_train_masked`] (same masks).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn backward_masked(
        &self,
        x: &[T],
        in_mask: Option<&[T]>,
        rec_mask: Option<&[T]>,
        step_mask: Option<&[bool]>,
        dh_last: &[T],
        cache: &mut LstmCache<T>,
        grads: &mut Lstm<T>,
        dx: Option<&mut [T]>,
    ) {
        let (e, h) = (self.inputs(), self.hidden());
        let g = 4 * h;
        let (steps, batch) = (cache.steps, cache.batch);
        let bh = batch * h;
        let rows = steps * batch;
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
                if step_mask.is_some_and(|m| !m[t * batch + b]) {
                    // The state passed through unchanged: dh and dc carry over as they are.
                    z[b * g..(b + 1) * g].fill(T::ZERO);
                    continue;
                }
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
                    if step_mask.is_some_and(|m| !m[t * batch + b]) {
                        continue;
                    }
                    let dhr = &mut cache.dh[b * h..(b + 1) * h];
                    let dz = &z[b * g..(b + 1) * g];
                    match rec_mask {
                        Some(m) => {
                            gated_backprop(dz, &cache.u_t, &m[b * g..(b + 1) * g], dhr, h, h)
                        }
                        None => backprop_hidden(dz, &cache.u_t, dhr, h),
                    }
                }
            }
        }
        let dz = &cache.gates[..rows * g];
        match rec_mask {
            Some(_) => {
                for gate in 0..4 {
                    T::gemm_strided(
                        h,
                        rows,
                        h,
                        T::ONE,
                        (&cache.h_in[gate * h..], 1, g),
                        (&dz[gate * h..], g, 1),
                        T::ONE,
                        (&mut grads.recurrent.data_mut()[gate * h..], g, 1),
                    );
                }
            }
            None => T::gemm(
                h,
                rows,
                g,
                T::ONE,
                &cache.h_in,
                true,
                dz,
                false,
                T::ONE,
                grads.recurrent.data_mut(),
            ),
        }
        match in_mask {
            Some(_) => {
                for gate in 0..4 {
                    T::gemm_strided(
                        e,
                        rows,
                        h,
                        T::ONE,
                        (&cache.xm[gate * e..], 1, 4 * e),
                        (&dz[gate * h..], g, 1),
                        T::ONE,
                        (&mut grads.kernel.data_mut()[gate * h..], g, 1),
                    );
                }
            }
            None => T::gemm(
                e,
                rows,
                g,
                T::ONE,
                x,
                true,
                dz,
                false,
                T::ONE,
                grads.kernel.data_mut(),
            ),
        }
        let gb = grads.bias.data_mut();
        for row in dz.chunks_exact(g) {
            for (a, &b) in gb.iter_mut().zip(row) {
                *a += b;
            }
        }
        let Some(dx) = dx else { return };
        let w = self.kernel.data();
        match in_mask {
            None => T::gemm(rows, g, e, T::ONE, dz, false, w, true, T::ZERO, dx),
            Some(m) => {
                resize(&mut cache.w_t, g * e);
                for k in 0..e {
                    for j in 0..g {
                        cache.w_t[j * e + k] = w[k * g + j];
                    }
                }
                for (r, (dxr, dzr)) in dx
                    .chunks_exact_mut(e)
                    .zip(dz.chunks_exact(g))
                    .take(rows)
                    .enumerate()
                {
                    let mr = &m[(r % batch) * 4 * e..][..4 * e];
                    gated_backprop(dzr, &cache.w_t, mr, dxr, e, h);
                }
            }
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

/// `z[r] += Σ_g xin[r, g] · w[:, g]` for `rows` rows, where `xin` is `[rows, 4k]` (one input
/// block per gate, e.g. the input or hidden state under that gate's dropout mask), `w` is
/// `[k, 4h]` and `g` ranges over the four gate blocks.
#[inline(always)]
fn gated_product<T: Real>(z: &mut [T], xin: &[T], w: &[T], rows: usize, k: usize, h: usize) {
    match h {
        8 => gated_product_fixed::<T, 8, 32>(z, xin, w, rows, k),
        16 => gated_product_fixed::<T, 16, 64>(z, xin, w, rows, k),
        _ => {
            let g = 4 * h;
            for (zr, xr) in z
                .chunks_exact_mut(g)
                .zip(xin.chunks_exact(4 * k))
                .take(rows)
            {
                for (l, wr) in w.chunks_exact(g).take(k).enumerate() {
                    for (gate, (zg, wg)) in
                        zr.chunks_exact_mut(h).zip(wr.chunks_exact(h)).enumerate()
                    {
                        let s = xr[gate * k + l];
                        for (a, &v) in zg.iter_mut().zip(wg) {
                            *a += s * v;
                        }
                    }
                }
            }
        }
    }
}

/// [`gated_product`] for a fixed width: a row of `z` stays in registers.
#[inline(always)]
fn gated_product_fixed<T: Real, const H: usize, const G: usize>(
    z: &mut [T],
    xin: &[T],
    w: &[T],
    rows: usize,
    k: usize,
) {
    for (zr, xr) in z
        .chunks_exact_mut(G)
        .zip(xin.chunks_exact(4 * k))
        .take(rows)
    {
        let mut acc = [T::ZERO; G];
        acc.copy_from_slice(zr);
        for (l, wr) in w.chunks_exact(G).take(k).enumerate() {
            for gate in 0..4 {
                let s = xr[gate * k + l];
                for j in 0..H {
                    acc[gate * H + j] += s * wr[gate * H + j];
                }
            }
        }
        zr.copy_from_slice(&acc);
    }
}

/// The gradient through [`gated_product`] for one row: `out = Σ_g m_g ⊙ (dz_g · w_gᵀ)` where
/// `w_t` is `wᵀ` (`[4h, k]`), `m` this row's `[4, k]` masks and `out` has width `k`.
#[inline(always)]
fn gated_backprop<T: Real>(dz: &[T], w_t: &[T], m: &[T], out: &mut [T], k: usize, h: usize) {
    match k {
        8 => gated_backprop_fixed::<T, 8>(dz, w_t, m, out, h),
        16 => gated_backprop_fixed::<T, 16>(dz, w_t, m, out, h),
        _ => {
            out[..k].fill(T::ZERO);
            for (j, (&s, row)) in dz.iter().zip(w_t.chunks_exact(k)).enumerate() {
                let mg = &m[(j / h) * k..(j / h + 1) * k];
                for ((d, &v), &mv) in out.iter_mut().zip(row).zip(mg) {
                    *d += s * v * mv;
                }
            }
        }
    }
}

#[inline(always)]
fn gated_backprop_fixed<T: Real, const K: usize>(
    dz: &[T],
    w_t: &[T],
    m: &[T],
    out: &mut [T],
    h: usize,
) {
    let mut total = [T::ZERO; K];
    for gate in 0..4 {
        let mut acc = [T::ZERO; K];
        for (&s, row) in dz[gate * h..(gate + 1) * h]
            .iter()
            .zip(w_t[gate * h * K..(gate + 1) * h * K].chunks_exact(K))
        {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += s * v;
            }
        }
        for ((o, &a), &mv) in total.iter_mut().zip(&acc).zip(&m[gate * K..(gate + 1) * K]) {
            *o += a * mv;
        }
    }
    out[..K].copy_from_slice(&total);
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
    let gates = i.iter().zip(f).zip(g).zip(o);
    let state = c_prev
        .iter()
        .zip(c_next.iter_mut())
        .zip(tc.iter_mut())
        .zip(h_out.iter_mut());
    for ((((&i, &f), &g), &o), (((&cp, cn), t), ho)) in gates.zip(state) {
        let c = f * cp + i * g;
        let th = c.tanh();
        *cn = c;
        *t = th;
        *ho = o * th;
    }
}

/// Inference variant of [`cell_update`] that updates the state in place.
#[inline(always)]
fn cell_update_in_place<T: Real>(zr: &[T], c: &mut [T], h_out: &mut [T], h: usize) {
    let (i, rest) = zr.split_at(h);
    let (f, rest) = rest.split_at(h);
    let (g, o) = rest.split_at(h);
    let gates = i.iter().zip(f).zip(g).zip(o);
    for ((((&i, &f), &g), &o), (c, ho)) in gates.zip(c.iter_mut().zip(h_out.iter_mut())) {
        let cn = f * *c + i * g;
        *c = cn;
        *ho = o * cn.tanh();
    }
}

/// One row of the backward step: turns the gate activations in `zr` into pre-activation
/// gradients and carries the cell gradient `dc` to the previous step.
#[inline(always)]
fn gate_gradients<T: Real>(zr: &mut [T], c_prev: &[T], tc: &[T], dh: &[T], dc: &mut [T], h: usize) {
    let (zi, rest) = zr.split_at_mut(h);
    let (zf, rest) = rest.split_at_mut(h);
    let (zg, zo) = rest.split_at_mut(h);
    let gates = zi
        .iter_mut()
        .zip(zf.iter_mut())
        .zip(zg.iter_mut())
        .zip(zo.iter_mut());
    let state = c_prev.iter().zip(tc).zip(dh).zip(dc.iter_mut());
    for ((((zi, zf), zg), zo), (((&cp, &t), &dh), dc)) in gates.zip(state) {
        let (i, f, g, o) = (*zi, *zf, *zg, *zo);
        let d_o = dh * t;
        let dcv = *dc + dh * o * (T::ONE - t * t);
        *zi = dcv * g * i * (T::ONE - i);
        *zf = dcv * cp * f * (T::ONE - f);
        *zg = dcv * i * (T::ONE - g * g);
        *zo = d_o * o * (T::ONE - o);
        *dc = dcv * f;
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

impl<T: Real> Recurrent<T> for Lstm<T> {
    type Cache = LstmCache<T>;
    fn gates(&self) -> usize {
        4
    }
    fn inputs(&self) -> usize {
        Lstm::inputs(self)
    }
    fn units(&self) -> usize {
        self.hidden()
    }
    fn outputs(&self) -> usize {
        self.hidden()
    }
    fn zeros(&self) -> Self {
        self.zeros_like()
    }
    #[inline(always)]
    fn forward(
        &self,
        x: &[T],
        steps: usize,
        batch: usize,
        masks: &SeqMasks<'_, T>,
        cache: &mut Self::Cache,
    ) {
        self.forward_train_masked(
            x,
            steps,
            batch,
            masks.input,
            masks.recurrent,
            masks.steps,
            cache,
        )
    }
    #[inline(always)]
    fn output<'c>(&self, cache: &'c Self::Cache) -> &'c [T] {
        cache.last_hidden()
    }
    #[inline(always)]
    fn backward(
        &self,
        x: &[T],
        masks: &SeqMasks<'_, T>,
        d_out: &[T],
        cache: &mut Self::Cache,
        grads: &mut Self,
        dx: Option<&mut [T]>,
    ) {
        self.backward_masked(
            x,
            masks.input,
            masks.recurrent,
            masks.steps,
            d_out,
            cache,
            grads,
            dx,
        )
    }
}
