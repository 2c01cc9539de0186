//! Gated recurrent unit with Keras 3's default semantics (`reset_after=True`): gate order z, r,
//! h; two bias vectors (input and recurrent); the reset gate applied *after* the recurrent
//! product: `hh = tanh(x·W_h + b_h + r ⊙ (h·U_h + b'_h))`, `h = z ⊙ h_prev + (1 − z) ⊙ hh`.
//!
//! Dropout follows Keras's GRU cell: with recurrent dropout one input and one recurrent mask per
//! gate (its "implementation 1"), each drawn once per sequence and reused at every step. An
//! optional step mask leaves a row's state unchanged at masked steps (Keras `mask_zero=True`).
//!
//! Data is time-major like [`Lstm`](super::Lstm): the input projection of all steps is one GEMM
//! (`[T·B, E] × [E, 3H]`), the recurrence one `[B, H] × [H, 3H]` GEMM per step followed by one
//! fused pass over the gates, and the buffers live in a [`GruCache`] reused across batches.

use super::recurrent::{Recurrent, SeqMasks};
use crate::{init, Parameters, Real, Rng, Tensor};

/// A GRU layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Gru<T> {
    /// Input kernel `[inputs, 3·hidden]` (gates z, r, h).
    pub kernel: Tensor<T>,
    /// Recurrent kernel `[hidden, 3·hidden]`.
    pub recurrent: Tensor<T>,
    /// Biases `[2, 3·hidden]`: row 0 is added to the input projection, row 1 to the recurrent.
    pub bias: Tensor<T>,
}

/// Buffers of one forward/backward pass, kept between batches.
#[derive(Debug, Clone, Default)]
pub struct GruCache<T> {
    steps: usize,
    batch: usize,
    /// `[T, B, 3H]`: z, r, hh after the forward pass; gradients of the input projection after
    /// the backward pass.
    gates: Vec<T>,
    /// `[T, B, 3H]`: gradients of the recurrent projection (backward pass).
    drec: Vec<T>,
    /// `[B, 3H]`: the recurrent projection of the current step.
    rec: Vec<T>,
    /// `[T, B, H]`: `h_prev·U_h + b'_h` of every step (before the reset gate).
    rec_h: Vec<T>,
    /// `[T + 1, B, H]`: hidden states, `hs[0] = 0`.
    hs: Vec<T>,
    /// `[T, B, 3H]`: the previous state under each gate's recurrent mask (with recurrent dropout).
    h_in: Vec<T>,
    /// `[T·B, 3E]`: each row's input under each gate's input mask (with input dropout).
    xm: Vec<T>,
    /// `[B, H]`: gradient w.r.t. the state.
    dh: Vec<T>,
    /// `[T·B, 3E]` scratch of the backward pass (with input dropout).
    tmp: Vec<T>,
    /// `[3H, H]`: the transposed recurrent kernel.
    u_t: Vec<T>,
}

impl<T> GruCache<T> {
    /// The last hidden state `[B, H]` of the latest forward pass.
    pub fn last_hidden(&self) -> &[T] {
        let bh = self.hs.len() / (self.steps + 1).max(1);
        &self.hs[self.steps * bh..]
    }
}

fn resize<T: Real>(v: &mut Vec<T>, n: usize) {
    if v.len() != n {
        v.resize(n, T::ZERO);
    }
}

impl<T: Real> Gru<T> {
    /// Keras's initialisation: Glorot-uniform kernel, orthogonal recurrent kernel, zero biases.
    pub fn new(inputs: usize, hidden: usize, rng: &mut Rng) -> Self {
        Gru {
            kernel: init::glorot_uniform(inputs, 3 * hidden, rng),
            recurrent: init::orthogonal(hidden, 3 * hidden, rng),
            bias: Tensor::zeros(&[2, 3 * hidden]),
        }
    }

    /// Zero parameters of the same shapes (a gradient buffer).
    pub fn zeros_like(&self) -> Self {
        Gru {
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

    /// Forward pass over a time-major `[steps, batch, inputs]` input. Masks: input dropout
    /// `[batch, 3, inputs]`, recurrent dropout `[batch, 3, hidden]` (gates z, r, h), step mask
    /// `[steps, batch]` (false: the row keeps its state). The last state is in
    /// `cache.last_hidden()`.
    #[inline(always)]
    pub fn forward_train(
        &self,
        x: &[T],
        steps: usize,
        batch: usize,
        masks: &SeqMasks<'_, T>,
        cache: &mut GruCache<T>,
    ) {
        let (e, h) = (self.inputs(), self.hidden());
        let g = 3 * h;
        let bh = batch * h;
        let rows = steps * batch;
        cache.steps = steps;
        cache.batch = batch;
        resize(&mut cache.gates, rows * g);
        resize(&mut cache.rec, batch * g);
        resize(&mut cache.rec_h, rows * h);
        resize(&mut cache.hs, (steps + 1) * bh);
        let (b_in, b_rec) = self.bias.data().split_at(g);
        let w = self.kernel.data();
        for row in cache.gates.chunks_exact_mut(g) {
            row.copy_from_slice(b_in);
        }
        match masks.input {
            None => T::gemm(
                rows,
                e,
                g,
                T::ONE,
                x,
                false,
                w,
                false,
                T::ONE,
                &mut cache.gates,
            ),
            Some(m) => {
                resize(&mut cache.xm, rows * 3 * e);
                for (r, (xr, xo)) in x
                    .chunks_exact(e)
                    .zip(cache.xm.chunks_exact_mut(3 * e))
                    .enumerate()
                {
                    let mr = &m[(r % batch) * 3 * e..][..3 * e];
                    for (xo, mg) in xo.chunks_exact_mut(e).zip(mr.chunks_exact(e)) {
                        for ((o, &v), &mv) in xo.iter_mut().zip(xr).zip(mg) {
                            *o = v * mv;
                        }
                    }
                }
                for gate in 0..3 {
                    T::gemm_strided(
                        rows,
                        e,
                        h,
                        T::ONE,
                        (&cache.xm[gate * e..], 3 * e, 1),
                        (&w[gate * h..], g, 1),
                        T::ONE,
                        (&mut cache.gates[gate * h..], g, 1),
                    );
                }
            }
        }
        if masks.recurrent.is_some() {
            resize(&mut cache.h_in, rows * g);
        }
        cache.hs[..bh].fill(T::ZERO);
        let u = self.recurrent.data();
        for t in 0..steps {
            let (before, after) = cache.hs.split_at_mut((t + 1) * bh);
            let prev = &before[t * bh..];
            let next = &mut after[..bh];
            for row in cache.rec.chunks_exact_mut(g) {
                row.copy_from_slice(b_rec);
            }
            match masks.recurrent {
                None => gate_product(&mut cache.rec, prev, h, 0, u, batch, h),
                Some(m) => {
                    let h_in = &mut cache.h_in[t * batch * g..(t + 1) * batch * g];
                    for (b, hr) in h_in.chunks_exact_mut(g).enumerate() {
                        let hb = &prev[b * h..(b + 1) * h];
                        for (o, mr) in hr.chunks_exact_mut(h).zip(m[b * g..][..g].chunks_exact(h)) {
                            for ((o, &v), &mv) in o.iter_mut().zip(hb).zip(mr) {
                                *o = v * mv;
                            }
                        }
                    }
                    gate_product(&mut cache.rec, h_in, g, h, u, batch, h);
                }
            }
            let z = &mut cache.gates[t * batch * g..(t + 1) * batch * g];
            let rec_h = &mut cache.rec_h[t * bh..(t + 1) * bh];
            for b in 0..batch {
                let r = b * h..(b + 1) * h;
                if masks.steps.is_some_and(|s| !s[t * batch + b]) {
                    next[r.clone()].copy_from_slice(&prev[r]);
                    continue;
                }
                gru_cell(
                    &mut z[b * g..(b + 1) * g],
                    &cache.rec[b * g..(b + 1) * g],
                    &prev[r.clone()],
                    &mut next[r.clone()],
                    &mut rec_h[r],
                    h,
                );
            }
        }
    }

    /// Backward pass for the latest [`Gru::forward_train`] (same masks): `dh_last` is
    /// `d loss / d h_T` (`[batch, hidden]`). Parameter gradients are added to `grads`; `dx` (if
    /// given) receives `d loss / d x` (`[steps, batch, inputs]`).
    #[inline(always)]
    pub fn backward(
        &self,
        x: &[T],
        masks: &SeqMasks<'_, T>,
        dh_last: &[T],
        cache: &mut GruCache<T>,
        grads: &mut Gru<T>,
        dx: Option<&mut [T]>,
    ) {
        let (e, h) = (self.inputs(), self.hidden());
        let g = 3 * h;
        let (steps, batch) = (cache.steps, cache.batch);
        let bh = batch * h;
        let rows = steps * batch;
        let u = self.recurrent.data();
        resize(&mut cache.drec, rows * g);
        resize(&mut cache.dh, bh);
        resize(&mut cache.u_t, g * h);
        for k in 0..h {
            for j in 0..g {
                cache.u_t[j * h + k] = u[k * g + j];
            }
        }
        cache.dh.copy_from_slice(&dh_last[..bh]);
        for t in (0..steps).rev() {
            let prev = &cache.hs[t * bh..(t + 1) * bh];
            let z = &mut cache.gates[t * batch * g..(t + 1) * batch * g];
            let drec = &mut cache.drec[t * batch * g..(t + 1) * batch * g];
            let rec_h = &cache.rec_h[t * bh..(t + 1) * bh];
            for b in 0..batch {
                let r = b * h..(b + 1) * h;
                let gr = b * g..(b + 1) * g;
                if masks.steps.is_some_and(|s| !s[t * batch + b]) {
                    z[gr.clone()].fill(T::ZERO);
                    drec[gr].fill(T::ZERO);
                    continue;
                }
                gru_cell_backward(
                    &mut z[gr.clone()],
                    &mut drec[gr],
                    &rec_h[r.clone()],
                    &prev[r.clone()],
                    &mut cache.dh[r],
                    h,
                );
            }
            if t == 0 {
                break;
            }
            // dh_prev += Σ_gate m_gate ⊙ (drec_gate · U_gateᵀ); masked rows have drec = 0.
            gate_backprop(&mut cache.dh, drec, &cache.u_t, masks.recurrent, batch, h);
        }
        let dxp = &cache.gates[..rows * g];
        let drec = &cache.drec[..rows * g];
        match masks.input {
            None => T::gemm(
                e,
                rows,
                g,
                T::ONE,
                x,
                true,
                dxp,
                false,
                T::ONE,
                grads.kernel.data_mut(),
            ),
            Some(_) => {
                for gate in 0..3 {
                    T::gemm_strided(
                        e,
                        rows,
                        h,
                        T::ONE,
                        (&cache.xm[gate * e..], 1, 3 * e),
                        (&dxp[gate * h..], g, 1),
                        T::ONE,
                        (&mut grads.kernel.data_mut()[gate * h..], g, 1),
                    );
                }
            }
        }
        match masks.recurrent {
            None => T::gemm(
                h,
                rows,
                g,
                T::ONE,
                &cache.hs[..rows * h],
                true,
                drec,
                false,
                T::ONE,
                grads.recurrent.data_mut(),
            ),
            Some(_) => {
                for gate in 0..3 {
                    T::gemm_strided(
                        h,
                        rows,
                        h,
                        T::ONE,
                        (&cache.h_in[gate * h..], 1, g),
                        (&drec[gate * h..], g, 1),
                        T::ONE,
                        (&mut grads.recurrent.data_mut()[gate * h..], g, 1),
                    );
                }
            }
        }
        let (gb_in, gb_rec) = grads.bias.data_mut().split_at_mut(g);
        for (a, b) in dxp.chunks_exact(g).zip(drec.chunks_exact(g)) {
            for (s, &v) in gb_in.iter_mut().zip(a) {
                *s += v;
            }
            for (s, &v) in gb_rec.iter_mut().zip(b) {
                *s += v;
            }
        }
        let Some(dx) = dx else { return };
        let w = self.kernel.data();
        match masks.input {
            None => T::gemm(rows, g, e, T::ONE, dxp, false, w, true, T::ZERO, dx),
            Some(m) => {
                resize(&mut cache.tmp, rows * 3 * e);
                for gate in 0..3 {
                    T::gemm_strided(
                        rows,
                        h,
                        e,
                        T::ONE,
                        (&dxp[gate * h..], g, 1),
                        (&w[gate * h..], 1, g),
                        T::ZERO,
                        (&mut cache.tmp[gate * e..], 3 * e, 1),
                    );
                }
                for (r, (dxr, tr)) in dx
                    .chunks_exact_mut(e)
                    .zip(cache.tmp.chunks_exact(3 * e))
                    .take(rows)
                    .enumerate()
                {
                    let mr = &m[(r % batch) * 3 * e..][..3 * e];
                    dxr.fill(T::ZERO);
                    for gate in 0..3 {
                        let span = gate * e..(gate + 1) * e;
                        for ((d, &v), &mv) in dxr.iter_mut().zip(&tr[span.clone()]).zip(&mr[span]) {
                            *d += v * mv;
                        }
                    }
                }
            }
        }
    }
}

impl<T: Real> Gru<T> {
    /// Inference over a *packed* time-major input, as [`Lstm::forward_packed`](super::Lstm::forward_packed):
    /// step `t` has `active[t]` rows (non-decreasing), the first rows of the batch, stored one step
    /// after another in `x` (`[Σ active, inputs]`); `h` (`[batch, hidden]`) holds each row's
    /// starting state and receives its last state. `gates` and `rec` are scratch space.
    #[inline(always)]
    pub fn forward_packed(
        &self,
        x: &[T],
        active: &[usize],
        h: &mut [T],
        gates: &mut Vec<T>,
        rec: &mut Vec<T>,
    ) {
        let (e, hd) = (self.inputs(), self.hidden());
        let g = 3 * hd;
        let rows: usize = active.iter().sum();
        resize(gates, rows * g);
        resize(rec, active.iter().copied().max().unwrap_or(0) * g);
        let (b_in, b_rec) = self.bias.data().split_at(g);
        for row in gates.chunks_exact_mut(g) {
            row.copy_from_slice(b_in);
        }
        T::gemm(
            rows,
            e,
            g,
            T::ONE,
            x,
            false,
            self.kernel.data(),
            false,
            T::ONE,
            gates,
        );
        let u = self.recurrent.data();
        let mut off = 0;
        for &n in active {
            let z = &mut gates[off * g..(off + n) * g];
            off += n;
            let rc = &mut rec[..n * g];
            for row in rc.chunks_exact_mut(g) {
                row.copy_from_slice(b_rec);
            }
            gate_product(rc, &h[..n * hd], hd, 0, u, n, hd);
            for ((zr, rr), hr) in z
                .chunks_exact_mut(g)
                .zip(rc.chunks_exact(g))
                .zip(h.chunks_exact_mut(hd))
            {
                gru_cell_in_place(zr, rr, hr, hd);
            }
        }
    }

    /// Hidden states after feeding the same input vector `x` for `0..=steps` steps from a zero
    /// state (`[(steps + 1), hidden]`): with the padding embedding, the state of every
    /// pre-padded sequence when its first real token arrives.
    pub fn constant_input_states(&self, x: &[T], steps: usize) -> Vec<T> {
        let hd = self.hidden();
        let mut hs = vec![T::ZERO; (steps + 1) * hd];
        let mut h = vec![T::ZERO; hd];
        let (mut gates, mut rec) = (Vec::new(), Vec::new());
        for t in 1..=steps {
            self.forward_packed(x, &[1], &mut h, &mut gates, &mut rec);
            hs[t * hd..(t + 1) * hd].copy_from_slice(&h);
        }
        hs
    }
}

/// Inference variant of [`gru_cell`]: updates the state `h` in place.
#[inline(always)]
fn gru_cell_in_place<T: Real>(xr: &mut [T], rec: &[T], h: &mut [T], hd: usize) {
    let (xz, rest) = xr.split_at_mut(hd);
    let (xrr, xh) = rest.split_at_mut(hd);
    let (rz, rest) = rec.split_at(hd);
    let (rr, rh) = rest.split_at(hd);
    for (a, &b) in xz.iter_mut().zip(rz) {
        *a = (*a + b).sigmoid();
    }
    for (a, &b) in xrr.iter_mut().zip(rr) {
        *a = (*a + b).sigmoid();
    }
    for ((((&xv, &r), &rv), &z), hv) in xh
        .iter()
        .zip(xrr.iter())
        .zip(rh)
        .zip(xz.iter())
        .zip(h.iter_mut())
    {
        let hh = (xv + r * rv).tanh();
        *hv = z * *hv + (T::ONE - z) * hh;
    }
}

/// `z[r, gate] += xin[r, gate] · w[:, gate]` for `rows` rows of `z` (`[rows, 3h]`), gate by
/// gate: `w` is `[h, 3h]`, row `r`'s input for `gate` starts at `xin[r·stride + gate·gate_stride]`
/// (`gate_stride` 0: one input for all gates). The recurrent product of a step; a row of `z`
/// stays in registers for the common widths.
#[inline(always)]
fn gate_product<T: Real>(
    z: &mut [T],
    xin: &[T],
    stride: usize,
    gate_stride: usize,
    w: &[T],
    rows: usize,
    h: usize,
) {
    match h {
        8 => gate_product_fixed::<T, 8, 24>(z, xin, stride, gate_stride, w, rows),
        16 => gate_product_fixed::<T, 16, 48>(z, xin, stride, gate_stride, w, rows),
        _ => {
            let g = 3 * h;
            for (r, zr) in z.chunks_exact_mut(g).take(rows).enumerate() {
                let xr = &xin[r * stride..];
                for (l, wr) in w.chunks_exact(g).take(h).enumerate() {
                    for (gate, (zg, wg)) in
                        zr.chunks_exact_mut(h).zip(wr.chunks_exact(h)).enumerate()
                    {
                        let s = xr[gate * gate_stride + l];
                        for (a, &v) in zg.iter_mut().zip(wg) {
                            *a += s * v;
                        }
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn gate_product_fixed<T: Real, const H: usize, const G: usize>(
    z: &mut [T],
    xin: &[T],
    stride: usize,
    gate_stride: usize,
    w: &[T],
    rows: usize,
) {
    for (r, zr) in z.chunks_exact_mut(G).take(rows).enumerate() {
        let xr = &xin[r * stride..];
        let mut acc = [T::ZERO; G];
        acc.copy_from_slice(zr);
        for (l, wr) in w.chunks_exact(G).take(H).enumerate() {
            for gate in 0..3 {
                let s = xr[gate * gate_stride + l];
                for j in 0..H {
                    acc[gate * H + j] += s * wr[gate * H + j];
                }
            }
        }
        zr.copy_from_slice(&acc);
    }
}

/// `dh[b] += Σ_gate m[b, gate] ⊙ (drec[b, gate] · U_gateᵀ)` (no mask: `m = 1`); `u_t` is the
/// transposed recurrent kernel `[3h, h]`.
#[inline(always)]
fn gate_backprop<T: Real>(
    dh: &mut [T],
    drec: &[T],
    u_t: &[T],
    mask: Option<&[T]>,
    batch: usize,
    h: usize,
) {
    match h {
        8 => gate_backprop_fixed::<T, 8>(dh, drec, u_t, mask, batch),
        16 => gate_backprop_fixed::<T, 16>(dh, drec, u_t, mask, batch),
        _ => {
            let g = 3 * h;
            let mut acc = vec![T::ZERO; h];
            for (b, (dr, zr)) in dh
                .chunks_exact_mut(h)
                .zip(drec.chunks_exact(g))
                .take(batch)
                .enumerate()
            {
                for gate in 0..3 {
                    acc.fill(T::ZERO);
                    for (&s, row) in zr[gate * h..(gate + 1) * h]
                        .iter()
                        .zip(u_t[gate * h * h..(gate + 1) * h * h].chunks_exact(h))
                    {
                        for (a, &v) in acc.iter_mut().zip(row) {
                            *a += s * v;
                        }
                    }
                    let mg = mask.map(|m| &m[b * g + gate * h..b * g + (gate + 1) * h]);
                    for (i, (d, &a)) in dr.iter_mut().zip(&acc).enumerate() {
                        *d += match mg {
                            Some(m) => a * m[i],
                            None => a,
                        };
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn gate_backprop_fixed<T: Real, const H: usize>(
    dh: &mut [T],
    drec: &[T],
    u_t: &[T],
    mask: Option<&[T]>,
    batch: usize,
) {
    let g = 3 * H;
    for (b, (dr, zr)) in dh
        .chunks_exact_mut(H)
        .zip(drec.chunks_exact(g))
        .take(batch)
        .enumerate()
    {
        let mut total = [T::ZERO; H];
        for gate in 0..3 {
            let mut acc = [T::ZERO; H];
            for (&s, row) in zr[gate * H..(gate + 1) * H]
                .iter()
                .zip(u_t[gate * H * H..(gate + 1) * H * H].chunks_exact(H))
            {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += s * v;
                }
            }
            match mask {
                Some(m) => {
                    let mg = &m[b * g + gate * H..b * g + (gate + 1) * H];
                    for ((t, &a), &mv) in total.iter_mut().zip(&acc).zip(mg) {
                        *t += a * mv;
                    }
                }
                None => {
                    for (t, &a) in total.iter_mut().zip(&acc) {
                        *t += a;
                    }
                }
            }
        }
        for (d, &t) in dr.iter_mut().zip(&total) {
            *d += t;
        }
    }
}

/// One row of the forward step: `xr` holds the input projection (z, r, h) and is overwritten
/// with the activations (z, r, hh); `rec` is the recurrent projection with its bias.
#[inline(always)]
fn gru_cell<T: Real>(
    xr: &mut [T],
    rec: &[T],
    prev: &[T],
    next: &mut [T],
    rec_h: &mut [T],
    h: usize,
) {
    let (xz, rest) = xr.split_at_mut(h);
    let (xrr, xh) = rest.split_at_mut(h);
    let (rz, rest) = rec.split_at(h);
    let (rr, rh) = rest.split_at(h);
    for (a, &b) in xz.iter_mut().zip(rz) {
        *a = (*a + b).sigmoid();
    }
    for (a, &b) in xrr.iter_mut().zip(rr) {
        *a = (*a + b).sigmoid();
    }
    for ((((a, &r), &rv), rhs), ((&z, &p), n)) in xh
        .iter_mut()
        .zip(xrr.iter())
        .zip(rh)
        .zip(rec_h.iter_mut())
        .zip(xz.iter().zip(prev).zip(next.iter_mut()))
    {
        let hh = (*a + r * rv).tanh();
        *a = hh;
        *rhs = rv;
        *n = z * p + (T::ONE - z) * hh;
    }
}

/// One row of the backward step: turns the activations in `zr` into the gradients of the input
/// projection, writes those of the recurrent projection into `drec`, and replaces `dh` by its
/// direct share `dh ⊙ z` of the previous state's gradient.
#[inline(always)]
fn gru_cell_backward<T: Real>(
    zr: &mut [T],
    drec: &mut [T],
    rec_h: &[T],
    prev: &[T],
    dh: &mut [T],
    h: usize,
) {
    let (gz, rest) = zr.split_at_mut(h);
    let (gr, gh) = rest.split_at_mut(h);
    let (dz_rec, rest) = drec.split_at_mut(h);
    let (dr_rec, dh_rec) = rest.split_at_mut(h);
    let gates = gz.iter_mut().zip(gr.iter_mut()).zip(gh.iter_mut());
    let recs = dz_rec
        .iter_mut()
        .zip(dr_rec.iter_mut())
        .zip(dh_rec.iter_mut());
    let state = rec_h.iter().zip(prev).zip(dh.iter_mut());
    for (((gz, gr), gh), (((dzr, drr), dhr), ((&rv, &p), d))) in gates.zip(recs.zip(state)) {
        let (z, r, hh, dv) = (*gz, *gr, *gh, *d);
        let da_h = dv * (T::ONE - z) * (T::ONE - hh * hh);
        let da_r = da_h * rv * r * (T::ONE - r);
        let da_z = dv * (p - hh) * z * (T::ONE - z);
        *gz = da_z;
        *gr = da_r;
        *gh = da_h;
        *dzr = da_z;
        *drr = da_r;
        *dhr = da_h * r;
        *d = dv * z;
    }
}

impl<T: Real> Parameters<T> for Gru<T> {
    fn tensors(&self) -> Vec<(String, &Tensor<T>)> {
        vec![
            ("gru.kernel".to_string(), &self.kernel),
            ("gru.recurrent_kernel".to_string(), &self.recurrent),
            ("gru.bias".to_string(), &self.bias),
        ]
    }
    fn tensors_mut(&mut self) -> Vec<&mut Tensor<T>> {
        vec![&mut self.kernel, &mut self.recurrent, &mut self.bias]
    }
}

impl<T: Real> Recurrent<T> for Gru<T> {
    type Cache = GruCache<T>;
    fn gates(&self) -> usize {
        3
    }
    fn inputs(&self) -> usize {
        Gru::inputs(self)
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
        self.forward_train(x, steps, batch, masks, cache)
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
        Gru::backward(self, x, masks, d_out, cache, grads, dx)
    }
}
