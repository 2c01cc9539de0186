//! BERT — the encoder of sentence-transformers models such as all-MiniLM-L6-v2 — with an
//! explicit forward and backward pass, for fine-tuning every layer on the CPU.
//!
//! The weights live in one flat buffer ([`Bert::weights`]) with a named range per Hugging Face
//! tensor ([`BertParam`]), so gradients, the optimiser ([`AdamW`]) and clipping are loops over
//! one slice. The query, key and value projections of a layer are adjacent (one `[3H, H]`
//! matrix, one GEMM).
//!
//! A batch is a list of token-id sequences packed end to end (no padding): the projections and
//! the feed-forward run as GEMMs over all tokens, attention runs per sequence and head. The
//! output is each sequence's mean-pooled last hidden state (sentence-transformers' mean pooling
//! over the attention mask). Dropout follows Hugging Face's BERT: after the embeddings'
//! LayerNorm, on the attention probabilities, and on the outputs of the attention and
//! feed-forward blocks before their residual sums. GELU is the exact (erf) form.

use std::ops::Range;

use rayon::prelude::*;

use crate::{NnError, Real, Rng};

/// The shape of a BERT model (Hugging Face's `config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    /// Word pieces.
    pub vocab: usize,
    /// Width of the hidden states (`hidden_size`).
    pub hidden: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads (divides `hidden`).
    pub heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate: usize,
    /// Longest input (`max_position_embeddings`).
    pub max_positions: usize,
    /// Token types (`type_vocab_size`).
    pub type_vocab: usize,
    /// LayerNorm's ε (`layer_norm_eps`).
    pub eps: f64,
    /// Dropout on hidden states (`hidden_dropout_prob`) while training.
    pub hidden_dropout: f64,
    /// Dropout on attention probabilities (`attention_probs_dropout_prob`) while training.
    pub attention_dropout: f64,
}

impl BertConfig {
    fn check(&self) -> Result<(), NnError> {
        if self.hidden == 0 || self.heads == 0 || !self.hidden.is_multiple_of(self.heads) {
            return Err(NnError::Shape(format!(
                "{} heads do not divide a hidden width of {}",
                self.heads, self.hidden
            )));
        }
        if self.vocab == 0 || self.layers == 0 || self.intermediate == 0 || self.type_vocab == 0 {
            return Err(NnError::Shape("an empty BERT configuration".into()));
        }
        Ok(())
    }
}

/// One named tensor inside [`Bert::weights`].
#[derive(Debug, Clone, PartialEq)]
pub struct BertParam {
    /// The Hugging Face name (`encoder.layer.0.attention.self.query.weight`, …).
    pub name: String,
    /// Its shape (`[out, in]` for a linear layer's weight, as PyTorch stores it).
    pub shape: Vec<usize>,
    /// Where its values start in the flat buffer.
    pub offset: usize,
}

impl BertParam {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its range in the flat buffer.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }

    /// Whether weight decay applies (Hugging Face's trainers exempt biases and LayerNorm).
    pub fn decays(&self) -> bool {
        !(self.name.ends_with(".bias") || self.name.contains("LayerNorm"))
    }
}

/// Offsets of one layer's tensors.
#[derive(Debug, Clone)]
struct LayerAt {
    qkv_w: usize,
    qkv_b: usize,
    ao_w: usize,
    ao_b: usize,
    ln1_g: usize,
    ln1_b: usize,
    i_w: usize,
    i_b: usize,
    o_w: usize,
    o_b: usize,
    ln2_g: usize,
    ln2_b: usize,
}

/// Offsets of every tensor.
#[derive(Debug, Clone)]
struct At {
    word: usize,
    pos: usize,
    typ: usize,
    ln_g: usize,
    ln_b: usize,
    layers: Vec<LayerAt>,
}

/// A BERT encoder's weights with its forward and backward pass.
#[derive(Debug, Clone)]
pub struct Bert<R> {
    cfg: BertConfig,
    params: Vec<BertParam>,
    at: At,
    /// Every tensor, flat, in the order of [`Bert::params`].
    pub weights: Vec<R>,
}

/// What one layer's forward pass keeps for the backward pass.
#[derive(Debug, Default, Clone)]
struct LayerCache<R> {
    input: Vec<R>,
    qkv: Vec<R>,
    probs: Vec<R>,
    probs_mask: Vec<R>,
    ctx: Vec<R>,
    ao_mask: Vec<R>,
    ln1_xhat: Vec<R>,
    ln1_rstd: Vec<R>,
    h1: Vec<R>,
    pre: Vec<R>,
    act: Vec<R>,
    o_mask: Vec<R>,
    ln2_xhat: Vec<R>,
    ln2_rstd: Vec<R>,
}

/// The forward pass's record of one batch, reused across batches.
#[derive(Debug, Default, Clone)]
pub struct BertCache<R> {
    starts: Vec<usize>,
    prob_starts: Vec<usize>,
    ids: Vec<u32>,
    emb_xhat: Vec<R>,
    emb_rstd: Vec<R>,
    emb_mask: Vec<R>,
    layers: Vec<LayerCache<R>>,
    hidden: Vec<R>,
}

impl<R: Real> BertCache<R> {
    /// An empty cache.
    pub fn new() -> Self {
        BertCache {
            starts: Vec::new(),
            prob_starts: Vec::new(),
            ids: Vec::new(),
            emb_xhat: Vec::new(),
            emb_rstd: Vec::new(),
            emb_mask: Vec::new(),
            layers: Vec::new(),
            hidden: Vec::new(),
        }
    }

    /// Sequences in the batch last run forward.
    pub fn sequences(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }
}

/// Dropout while training: the generator masks are drawn from.
pub struct Dropout<'a> {
    /// Draws the masks.
    pub rng: &'a mut Rng,
}

fn resize<R: Real>(v: &mut Vec<R>, n: usize) {
    v.clear();
    v.resize(n, R::ZERO);
}

fn draw_mask<R: Real>(mask: &mut Vec<R>, n: usize, rate: f64, dropout: &mut Option<Dropout<'_>>) {
    mask.clear();
    if let Some(d) = dropout.as_mut() {
        if rate > 0.0 {
            let keep = R::from_f64(1.0 / (1.0 - rate));
            let rate = rate as f32;
            mask.extend((0..n).map(|_| {
                if d.rng.unit_f32() < rate {
                    R::ZERO
                } else {
                    keep
                }
            }));
        }
    }
}

fn apply_mask<R: Real>(x: &mut [R], mask: &[R]) {
    if !mask.is_empty() {
        for (v, m) in x.iter_mut().zip(mask) {
            *v *= *m;
        }
    }
}

/// `y = x · Wᵀ + b` for `x: [n, inp]`, `W: [out, inp]`.
fn linear<R: Real>(x: &[R], n: usize, inp: usize, w: &[R], b: &[R], out: usize, y: &mut [R]) {
    for row in y.chunks_exact_mut(out) {
        row.copy_from_slice(b);
    }
    R::gemm(n, inp, out, R::ONE, x, false, w, true, R::ONE, y);
}

/// Backward of [`linear`]: `dx (+)= dy · W`, `dW += dyᵀ · x`, `db += Σ dy`.
#[allow(clippy::too_many_arguments)]
fn linear_back<R: Real>(
    dy: &[R],
    x: &[R],
    n: usize,
    inp: usize,
    out: usize,
    w: &[R],
    dw: &mut [R],
    db: &mut [R],
    dx: &mut [R],
    accumulate: bool,
) {
    let beta = if accumulate { R::ONE } else { R::ZERO };
    R::gemm(n, out, inp, R::ONE, dy, false, w, false, beta, dx);
    R::gemm(out, n, inp, R::ONE, dy, true, x, false, R::ONE, dw);
    for row in dy.chunks_exact(out) {
        for (d, g) in db.iter_mut().zip(row) {
            *d += *g;
        }
    }
}

/// LayerNorm over rows of `width`: writes `y`, keeps `x̂` and `1/σ`.
#[allow(clippy::too_many_arguments)]
fn layer_norm<R: Real>(
    x: &[R],
    width: usize,
    gamma: &[R],
    beta: &[R],
    eps: f64,
    xhat: &mut [R],
    rstd: &mut [R],
    y: &mut [R],
) {
    let w = R::from_f64(width as f64);
    for (r, ((xr, hr), yr)) in x
        .chunks_exact(width)
        .zip(xhat.chunks_exact_mut(width))
        .zip(y.chunks_exact_mut(width))
        .enumerate()
    {
        let mean = xr.iter().copied().sum::<R>() / w;
        let var = xr.iter().map(|&v| (v - mean) * (v - mean)).sum::<R>() / w;
        let s = R::ONE / (var + R::from_f64(eps)).sqrt();
        rstd[r] = s;
        for j in 0..width {
            hr[j] = (xr[j] - mean) * s;
            yr[j] = hr[j] * gamma[j] + beta[j];
        }
    }
}

/// Backward of [`layer_norm`]: `dx = dy`'s gradient through it (overwritten), `dγ`, `dβ` added.
#[allow(clippy::too_many_arguments)]
fn layer_norm_back<R: Real>(
    dy: &[R],
    width: usize,
    gamma: &[R],
    xhat: &[R],
    rstd: &[R],
    dgamma: &mut [R],
    dbeta: &mut [R],
    dx: &mut [R],
) {
    let w = R::from_f64(width as f64);
    let mut dxhat = vec![R::ZERO; width];
    for (r, ((dyr, hr), dxr)) in dy
        .chunks_exact(width)
        .zip(xhat.chunks_exact(width))
        .zip(dx.chunks_exact_mut(width))
        .enumerate()
    {
        let (mut m1, mut m2) = (R::ZERO, R::ZERO);
        for j in 0..width {
            dxhat[j] = dyr[j] * gamma[j];
            dgamma[j] += dyr[j] * hr[j];
            dbeta[j] += dyr[j];
            m1 += dxhat[j];
            m2 += dxhat[j] * hr[j];
        }
        m1 = m1 / w;
        m2 = m2 / w;
        for j in 0..width {
            dxr[j] = rstd[r] * (dxhat[j] - m1 - hr[j] * m2);
        }
    }
}

const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// `1 / √(2π)`.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

fn gelu<R: Real>(x: R) -> R {
    R::from_f64(0.5) * x * (R::ONE + (x * R::from_f64(FRAC_1_SQRT_2)).erf())
}

fn gelu_grad<R: Real>(x: R) -> R {
    let cdf = R::from_f64(0.5) * (R::ONE + (x * R::from_f64(FRAC_1_SQRT_2)).erf());
    let pdf = R::from_f64(FRAC_1_SQRT_2PI) * (-(x * x) * R::from_f64(0.5)).exp();
    cdf + x * pdf
}

impl<R: Real> Bert<R> {
    /// A model of shape `cfg` with every weight 0 (fill it with [`Bert::set`]).
    pub fn zeros(cfg: BertConfig) -> Result<Self, NnError> {
        cfg.check()?;
        let (h, i) = (cfg.hidden, cfg.intermediate);
        let mut params = Vec::new();
        let mut next = 0usize;
        let mut add = |name: String, shape: Vec<usize>| -> usize {
            let p = BertParam {
                name,
                shape,
                offset: next,
            };
            next += p.len();
            let at = p.offset;
            params.push(p);
            at
        };
        let word = add(
            "embeddings.word_embeddings.weight".into(),
            vec![cfg.vocab, h],
        );
        let pos = add(
            "embeddings.position_embeddings.weight".into(),
            vec![cfg.max_positions, h],
        );
        let typ = add(
            "embeddings.token_type_embeddings.weight".into(),
            vec![cfg.type_vocab, h],
        );
        let ln_g = add("embeddings.LayerNorm.weight".into(), vec![h]);
        let ln_b = add("embeddings.LayerNorm.bias".into(), vec![h]);
        let mut layers = Vec::new();
        for l in 0..cfg.layers {
            let p = format!("encoder.layer.{l}");
            let qkv_w = add(format!("{p}.attention.self.query.weight"), vec![h, h]);
            add(format!("{p}.attention.self.key.weight"), vec![h, h]);
            add(format!("{p}.attention.self.value.weight"), vec![h, h]);
            let qkv_b = add(format!("{p}.attention.self.query.bias"), vec![h]);
            add(format!("{p}.attention.self.key.bias"), vec![h]);
            add(format!("{p}.attention.self.value.bias"), vec![h]);
            let ao_w = add(format!("{p}.attention.output.dense.weight"), vec![h, h]);
            let ao_b = add(format!("{p}.attention.output.dense.bias"), vec![h]);
            let ln1_g = add(format!("{p}.attention.output.LayerNorm.weight"), vec![h]);
            let ln1_b = add(format!("{p}.attention.output.LayerNorm.bias"), vec![h]);
            let i_w = add(format!("{p}.intermediate.dense.weight"), vec![i, h]);
            let i_b = add(format!("{p}.intermediate.dense.bias"), vec![i]);
            let o_w = add(format!("{p}.output.dense.weight"), vec![h, i]);
            let o_b = add(format!("{p}.output.dense.bias"), vec![h]);
            let ln2_g = add(format!("{p}.output.LayerNorm.weight"), vec![h]);
            let ln2_b = add(format!("{p}.output.LayerNorm.bias"), vec![h]);
            layers.push(LayerAt {
                qkv_w,
                qkv_b,
                ao_w,
                ao_b,
                ln1_g,
                ln1_b,
                i_w,
                i_b,
                o_w,
                o_b,
                ln2_g,
                ln2_b,
            });
        }
        Ok(Bert {
            cfg,
            weights: vec![R::ZERO; next],
            params,
            at: At {
                word,
                pos,
                typ,
                ln_g,
                ln_b,
                layers,
            },
        })
    }

    /// The shape.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// The named tensors, in buffer order.
    pub fn params(&self) -> &[BertParam] {
        &self.params
    }

    /// The tensor called `name`.
    pub fn param(&self, name: &str) -> Option<&BertParam> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Copies `values` into the tensor called `name`.
    pub fn set(
        &mut self,
        name: &str,
        values: impl ExactSizeIterator<Item = R>,
    ) -> Result<(), NnError> {
        let p = self
            .param(name)
            .ok_or_else(|| NnError::Shape(format!("BERT has no tensor {name}")))?;
        if values.len() != p.len() {
            return Err(NnError::Shape(format!(
                "{name}: {} values for a tensor of shape {:?}",
                values.len(),
                p.shape
            )));
        }
        let range = p.range();
        for (w, v) in self.weights[range].iter_mut().zip(values) {
            *w = v;
        }
        Ok(())
    }

    /// The values of the tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&[R]> {
        self.param(name).map(|p| &self.weights[p.range()])
    }

    /// The same model in another precision.
    pub fn cast<U: Real>(&self) -> Bert<U> {
        Bert {
            cfg: self.cfg.clone(),
            params: self.params.clone(),
            at: self.at.clone(),
            weights: self
                .weights
                .iter()
                .map(|&w| U::from_f64(w.to_f64()))
                .collect(),
        }
    }

    /// Mean-pooled last hidden states of `seqs` (each non-empty, at most `max_positions`
    /// long, ids below `vocab`), `[seqs.len() · hidden]`; with `dropout`, in training mode.
    /// `cache` keeps what [`Bert::backward`] needs.
    pub fn forward(
        &self,
        seqs: &[&[u32]],
        mut dropout: Option<Dropout<'_>>,
        cache: &mut BertCache<R>,
    ) -> Result<Vec<R>, NnError> {
        let cfg = &self.cfg;
        let (h, nh) = (cfg.hidden, cfg.heads);
        let d = h / nh;
        for (i, s) in seqs.iter().enumerate() {
            if s.is_empty() || s.len() > cfg.max_positions {
                return Err(NnError::Shape(format!(
                    "sequence {i} has {} word pieces; BERT reads 1 to {}",
                    s.len(),
                    cfg.max_positions
                )));
            }
            if let Some(&bad) = s.iter().find(|&&t| t as usize >= cfg.vocab) {
                return Err(NnError::Shape(format!(
                    "sequence {i}: word piece {bad} is outside the vocabulary of {}",
                    cfg.vocab
                )));
            }
        }
        cache.starts.clear();
        cache.prob_starts.clear();
        cache.ids.clear();
        let (mut at, mut pat) = (0usize, 0usize);
        for s in seqs {
            cache.starts.push(at);
            cache.prob_starts.push(pat);
            cache.ids.extend_from_slice(s);
            at += s.len();
            pat += nh * s.len() * s.len();
        }
        cache.starts.push(at);
        cache.prob_starts.push(pat);
        let n = at;
        let w = &self.weights;

        // Embeddings: word + position + type 0, LayerNorm, dropout.
        let mut x = vec![R::ZERO; n * h];
        for (si, s) in seqs.iter().enumerate() {
            let base = cache.starts[si];
            for (j, &id) in s.iter().enumerate() {
                let row = &mut x[(base + j) * h..(base + j + 1) * h];
                let word = &w[self.at.word + id as usize * h..][..h];
                let pos = &w[self.at.pos + j * h..][..h];
                let typ = &w[self.at.typ..][..h];
                for k in 0..h {
                    row[k] = word[k] + pos[k] + typ[k];
                }
            }
        }
        resize(&mut cache.emb_xhat, n * h);
        resize(&mut cache.emb_rstd, n);
        cache.layers.resize_with(cfg.layers, LayerCache::default);
        let mut input = std::mem::take(&mut cache.layers[0].input);
        resize(&mut input, n * h);
        layer_norm(
            &x,
            h,
            &w[self.at.ln_g..][..h],
            &w[self.at.ln_b..][..h],
            cfg.eps,
            &mut cache.emb_xhat,
            &mut cache.emb_rstd,
            &mut input,
        );
        draw_mask(&mut cache.emb_mask, n * h, cfg.hidden_dropout, &mut dropout);
        apply_mask(&mut input, &cache.emb_mask);

        let scale = R::from_f64(1.0 / (d as f64).sqrt());
        for l in 0..cfg.layers {
            let a = &self.at.layers[l];
            let c = &mut cache.layers[l];
            c.input = input;
            let i = cfg.intermediate;
            // Self-attention.
            resize(&mut c.qkv, n * 3 * h);
            linear(
                &c.input,
                n,
                h,
                &w[a.qkv_w..][..3 * h * h],
                &w[a.qkv_b..][..3 * h],
                3 * h,
                &mut c.qkv,
            );
            resize(&mut c.probs, pat);
            draw_mask(&mut c.probs_mask, pat, cfg.attention_dropout, &mut dropout);
            resize(&mut c.ctx, n * h);
            let mut dropped = Vec::new();
            for (si, seq) in seqs.iter().enumerate() {
                let (s0, t) = (cache.starts[si], seq.len());
                for head in 0..nh {
                    let p0 = cache.prob_starts[si] + head * t * t;
                    let q = &c.qkv[s0 * 3 * h + head * d..];
                    let k = &c.qkv[s0 * 3 * h + h + head * d..];
                    let v = &c.qkv[s0 * 3 * h + 2 * h + head * d..];
                    let probs = &mut c.probs[p0..p0 + t * t];
                    R::gemm_strided(
                        t,
                        d,
                        t,
                        scale,
                        (q, 3 * h, 1),
                        (k, 1, 3 * h),
                        R::ZERO,
                        (probs, t, 1),
                    );
                    for row in probs.chunks_exact_mut(t) {
                        softmax_row(row);
                    }
                    let used: &[R] = if c.probs_mask.is_empty() {
                        probs
                    } else {
                        dropped.clear();
                        dropped.extend(
                            probs
                                .iter()
                                .zip(&c.probs_mask[p0..p0 + t * t])
                                .map(|(&p, &m)| p * m),
                        );
                        &dropped
                    };
                    R::gemm_strided(
                        t,
                        t,
                        d,
                        R::ONE,
                        (used, t, 1),
                        (v, 3 * h, 1),
                        R::ZERO,
                        (&mut c.ctx[s0 * h + head * d..], h, 1),
                    );
                }
            }
            let mut r1 = vec![R::ZERO; n * h];
            linear(
                &c.ctx,
                n,
                h,
                &w[a.ao_w..][..h * h],
                &w[a.ao_b..][..h],
                h,
                &mut r1,
            );
            draw_mask(&mut c.ao_mask, n * h, cfg.hidden_dropout, &mut dropout);
            apply_mask(&mut r1, &c.ao_mask);
            for (r, x) in r1.iter_mut().zip(&c.input) {
                *r += *x;
            }
            resize(&mut c.ln1_xhat, n * h);
            resize(&mut c.ln1_rstd, n);
            resize(&mut c.h1, n * h);
            layer_norm(
                &r1,
                h,
                &w[a.ln1_g..][..h],
                &w[a.ln1_b..][..h],
                cfg.eps,
                &mut c.ln1_xhat,
                &mut c.ln1_rstd,
                &mut c.h1,
            );
            // Feed-forward.
            resize(&mut c.pre, n * i);
            linear(
                &c.h1,
                n,
                h,
                &w[a.i_w..][..i * h],
                &w[a.i_b..][..i],
                i,
                &mut c.pre,
            );
            c.act.clear();
            c.act.extend(c.pre.iter().map(|&v| gelu(v)));
            let mut r2 = vec![R::ZERO; n * h];
            linear(
                &c.act,
                n,
                i,
                &w[a.o_w..][..h * i],
                &w[a.o_b..][..h],
                h,
                &mut r2,
            );
            draw_mask(&mut c.o_mask, n * h, cfg.hidden_dropout, &mut dropout);
            apply_mask(&mut r2, &c.o_mask);
            for (r, x) in r2.iter_mut().zip(&c.h1) {
                *r += *x;
            }
            resize(&mut c.ln2_xhat, n * h);
            resize(&mut c.ln2_rstd, n);
            let mut out = match cache.layers.get_mut(l + 1) {
                Some(next) => std::mem::take(&mut next.input),
                None => std::mem::take(&mut cache.hidden),
            };
            let c = &mut cache.layers[l];
            resize(&mut out, n * h);
            layer_norm(
                &r2,
                h,
                &w[a.ln2_g..][..h],
                &w[a.ln2_b..][..h],
                cfg.eps,
                &mut c.ln2_xhat,
                &mut c.ln2_rstd,
                &mut out,
            );
            input = out;
        }
        cache.hidden = input;
        let mut pooled = vec![R::ZERO; seqs.len() * h];
        for (si, p) in pooled.chunks_exact_mut(h).enumerate() {
            let (s0, s1) = (cache.starts[si], cache.starts[si + 1]);
            for row in cache.hidden[s0 * h..s1 * h].chunks_exact(h) {
                for (a, b) in p.iter_mut().zip(row) {
                    *a += *b;
                }
            }
            let inv = R::ONE / R::from_f64((s1 - s0) as f64);
            for a in p.iter_mut() {
                *a *= inv;
            }
        }
        Ok(pooled)
    }

    /// Adds to `grads` (one value per weight) the gradient of a loss whose gradient with
    /// respect to the pooled outputs of the last [`Bert::forward`] is `d_pooled`.
    pub fn backward(
        &self,
        cache: &BertCache<R>,
        d_pooled: &[R],
        grads: &mut [R],
    ) -> Result<(), NnError> {
        let cfg = &self.cfg;
        let (h, nh, i) = (cfg.hidden, cfg.heads, cfg.intermediate);
        let d = h / nh;
        let seqs = cache.sequences();
        if d_pooled.len() != seqs * h || grads.len() != self.weights.len() {
            return Err(NnError::Shape(format!(
                "backward: {} pooled gradients for {seqs} sequences of {h}, {} gradients for {} weights",
                d_pooled.len(),
                grads.len(),
                self.weights.len()
            )));
        }
        let n = cache.ids.len();
        let w = &self.weights;
        let mut dout = vec![R::ZERO; n * h];
        for si in 0..seqs {
            let (s0, s1) = (cache.starts[si], cache.starts[si + 1]);
            let inv = R::ONE / R::from_f64((s1 - s0) as f64);
            let dp = &d_pooled[si * h..(si + 1) * h];
            for row in dout[s0 * h..s1 * h].chunks_exact_mut(h) {
                for (a, b) in row.iter_mut().zip(dp) {
                    *a = *b * inv;
                }
            }
        }
        let scale = R::from_f64(1.0 / (d as f64).sqrt());
        let mut dr = vec![R::ZERO; n * h];
        let mut dh1 = vec![R::ZERO; n * h];
        let mut dact = vec![R::ZERO; n * i];
        let mut dctx = vec![R::ZERO; n * h];
        let mut dqkv = vec![R::ZERO; n * 3 * h];
        let mut dp = Vec::new();
        let mut pd = Vec::new();
        for l in (0..cfg.layers).rev() {
            let a = &self.at.layers[l];
            let c = &cache.layers[l];
            // Second LayerNorm; the residual carries dr to h1.
            {
                let (dg, db) = two_mut(grads, a.ln2_g, a.ln2_b, h);
                layer_norm_back(
                    &dout,
                    h,
                    &w[a.ln2_g..][..h],
                    &c.ln2_xhat,
                    &c.ln2_rstd,
                    dg,
                    db,
                    &mut dr,
                );
            }
            dh1.copy_from_slice(&dr);
            apply_mask(&mut dr, &c.o_mask);
            {
                let (dw, db) = two_mut(grads, a.o_w, a.o_b, h * i);
                linear_back(
                    &dr,
                    &c.act,
                    n,
                    i,
                    h,
                    &w[a.o_w..][..h * i],
                    dw,
                    &mut db[..h],
                    &mut dact,
                    false,
                );
            }
            for (g, &x) in dact.iter_mut().zip(&c.pre) {
                *g *= gelu_grad(x);
            }
            {
                let (dw, db) = two_mut(grads, a.i_w, a.i_b, i * h);
                linear_back(
                    &dact,
                    &c.h1,
                    n,
                    h,
                    i,
                    &w[a.i_w..][..i * h],
                    dw,
                    &mut db[..i],
                    &mut dh1,
                    true,
                );
            }
            // First LayerNorm; the residual carries dr to the layer's input.
            {
                let (dg, db) = two_mut(grads, a.ln1_g, a.ln1_b, h);
                layer_norm_back(
                    &dh1,
                    h,
                    &w[a.ln1_g..][..h],
                    &c.ln1_xhat,
                    &c.ln1_rstd,
                    dg,
                    db,
                    &mut dr,
                );
            }
            dout.copy_from_slice(&dr);
            apply_mask(&mut dr, &c.ao_mask);
            {
                let (dw, db) = two_mut(grads, a.ao_w, a.ao_b, h * h);
                linear_back(
                    &dr,
                    &c.ctx,
                    n,
                    h,
                    h,
                    &w[a.ao_w..][..h * h],
                    dw,
                    &mut db[..h],
                    &mut dctx,
                    false,
                );
            }
            // Attention, per sequence and head.
            for si in 0..seqs {
                let s0 = cache.starts[si];
                let t = cache.starts[si + 1] - s0;
                for head in 0..nh {
                    let p0 = cache.prob_starts[si] + head * t * t;
                    let probs = &c.probs[p0..p0 + t * t];
                    let q = &c.qkv[s0 * 3 * h + head * d..];
                    let k = &c.qkv[s0 * 3 * h + h + head * d..];
                    let v = &c.qkv[s0 * 3 * h + 2 * h + head * d..];
                    let dc = &dctx[s0 * h + head * d..];
                    let used: &[R] = if c.probs_mask.is_empty() {
                        probs
                    } else {
                        pd.clear();
                        pd.extend(
                            probs
                                .iter()
                                .zip(&c.probs_mask[p0..p0 + t * t])
                                .map(|(&p, &m)| p * m),
                        );
                        &pd
                    };
                    // dV = P_usedᵀ · dctx.
                    R::gemm_strided(
                        t,
                        t,
                        d,
                        R::ONE,
                        (used, 1, t),
                        (dc, h, 1),
                        R::ZERO,
                        (&mut dqkv[s0 * 3 * h + 2 * h + head * d..], 3 * h, 1),
                    );
                    // dP = dctx · Vᵀ (through the dropout mask), then softmax's backward.
                    dp.clear();
                    dp.resize(t * t, R::ZERO);
                    R::gemm_strided(
                        t,
                        d,
                        t,
                        R::ONE,
                        (dc, h, 1),
                        (v, 1, 3 * h),
                        R::ZERO,
                        (&mut dp, t, 1),
                    );
                    if !c.probs_mask.is_empty() {
                        apply_mask(&mut dp, &c.probs_mask[p0..p0 + t * t]);
                    }
                    for (drow, prow) in dp.chunks_exact_mut(t).zip(probs.chunks_exact(t)) {
                        let dot: R = drow.iter().zip(prow).map(|(&a, &b)| a * b).sum();
                        for (g, &p) in drow.iter_mut().zip(prow) {
                            *g = p * (*g - dot);
                        }
                    }
                    // dQ = scale · dS · K, dK = scale · dSᵀ · Q.
                    R::gemm_strided(
                        t,
                        t,
                        d,
                        scale,
                        (&dp, t, 1),
                        (k, 3 * h, 1),
                        R::ZERO,
                        (&mut dqkv[s0 * 3 * h + head * d..], 3 * h, 1),
                    );
                    R::gemm_strided(
                        t,
                        t,
                        d,
                        scale,
                        (&dp, 1, t),
                        (q, 3 * h, 1),
                        R::ZERO,
                        (&mut dqkv[s0 * 3 * h + h + head * d..], 3 * h, 1),
                    );
                }
            }
            {
                let (dw, db) = two_mut(grads, a.qkv_w, a.qkv_b, 3 * h * h);
                linear_back(
                    &dqkv,
                    &c.input,
                    n,
                    h,
                    3 * h,
                    &w[a.qkv_w..][..3 * h * h],
                    dw,
                    &mut db[..3 * h],
                    &mut dout,
                    true,
                );
            }
        }
        // Embeddings: dropout, LayerNorm, then the three lookups.
        apply_mask(&mut dout, &cache.emb_mask);
        {
            let (dg, db) = two_mut(grads, self.at.ln_g, self.at.ln_b, h);
            layer_norm_back(
                &dout,
                h,
                &w[self.at.ln_g..][..h],
                &cache.emb_xhat,
                &cache.emb_rstd,
                dg,
                db,
                &mut dr,
            );
        }
        for si in 0..seqs {
            let s0 = cache.starts[si];
            for j in 0..cache.starts[si + 1] - s0 {
                let g = &dr[(s0 + j) * h..(s0 + j + 1) * h];
                let id = cache.ids[s0 + j] as usize;
                for (k, &gv) in g.iter().enumerate() {
                    grads[self.at.word + id * h + k] += gv;
                    grads[self.at.pos + j * h + k] += gv;
                    grads[self.at.typ + k] += gv;
                }
            }
        }
        Ok(())
    }
}

/// Two disjoint ranges of `v`: `[a, a + len)` and everything from `b` on (`a < b`).
fn two_mut<R>(v: &mut [R], a: usize, b: usize, len: usize) -> (&mut [R], &mut [R]) {
    let (x, y) = v.split_at_mut(b);
    (&mut x[a..a + len], y)
}

fn softmax_row<R: Real>(row: &mut [R]) {
    let max = row.iter().copied().fold(row[0], R::max);
    let mut sum = R::ZERO;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = R::ONE / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// sentence-transformers' `CosineSimilarityLoss`: the mean over pairs of
/// `(cos(u_a, u_b) - label)²`, for pairs of rows of `pooled` (`[rows · dim]`). Returns the loss
/// and its gradient with respect to `pooled`.
pub fn cosine_pair_loss<R: Real>(
    pooled: &[R],
    dim: usize,
    pairs: &[(usize, usize, f32)],
) -> (f64, Vec<R>) {
    let mut grad = vec![R::ZERO; pooled.len()];
    if pairs.is_empty() || dim == 0 {
        return (0.0, grad);
    }
    let count = pairs.len() as f64;
    let mut loss = 0.0f64;
    let eps = R::from_f64(1e-8);
    for &(a, b, label) in pairs {
        let u = &pooled[a * dim..(a + 1) * dim];
        let v = &pooled[b * dim..(b + 1) * dim];
        let nu = u.iter().map(|&x| x * x).sum::<R>().sqrt().max(eps);
        let nv = v.iter().map(|&x| x * x).sum::<R>().sqrt().max(eps);
        let dot: R = u.iter().zip(v).map(|(&x, &y)| x * y).sum();
        let cos = dot / (nu * nv);
        let diff = cos - R::from_f64(label as f64);
        loss += diff.to_f64() * diff.to_f64();
        let dcos = R::from_f64(2.0 / count) * diff;
        let (inv_uv, cu, cv) = (R::ONE / (nu * nv), cos / (nu * nu), cos / (nv * nv));
        for k in 0..dim {
            let (x, y) = (u[k], v[k]);
            grad[a * dim + k] += dcos * (y * inv_uv - x * cu);
            grad[b * dim + k] += dcos * (x * inv_uv - y * cv);
        }
    }
    (loss / count, grad)
}

/// AdamW as PyTorch writes it (decoupled weight decay, `torch.optim.AdamW`): for each weight,
/// `w -= lr·λ·w` where it decays, then `m = β1·m + (1-β1)·g`, `v = β2·v + (1-β2)·g²`,
/// `w -= lr/(1-β1ᵗ) · m / (√v/√(1-β2ᵗ) + ε)`.
#[derive(Debug, Clone)]
pub struct AdamW {
    /// β1 (0.9).
    pub beta1: f64,
    /// β2 (0.999).
    pub beta2: f64,
    /// ε (1e-8 in PyTorch; Hugging Face's trainers pass 1e-8 too).
    pub eps: f64,
    /// λ (0.01 in Hugging Face's trainers).
    pub weight_decay: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    t: u64,
}

impl AdamW {
    /// A fresh optimiser.
    pub fn new(beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Self {
        AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
            m: Vec::new(),
            v: Vec::new(),
            t: 0,
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// One update of `weights` (laid out as `params`) by `grads` at learning rate `lr`.
    pub fn step<R: Real>(
        &mut self,
        params: &[BertParam],
        weights: &mut [R],
        grads: &[R],
        lr: f64,
    ) -> Result<(), NnError> {
        if weights.len() != grads.len() {
            return Err(NnError::Shape(format!(
                "{} weights, {} gradients",
                weights.len(),
                grads.len()
            )));
        }
        if self.m.len() != weights.len() {
            self.m = vec![0.0; weights.len()];
            self.v = vec![0.0; weights.len()];
        }
        self.t += 1;
        let t = self.t as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let step_size = lr / (1.0 - b1.powi(t));
        let bc2 = (1.0 - b2.powi(t)).sqrt();
        let eps = self.eps;
        for p in params {
            let r = p.range();
            let decay = if p.decays() {
                1.0 - lr * self.weight_decay
            } else {
                1.0
            };
            let chunk = 1 << 16;
            weights[r.clone()]
                .par_chunks_mut(chunk)
                .zip(grads[r.clone()].par_chunks(chunk))
                .zip(self.m[r.clone()].par_chunks_mut(chunk))
                .zip(self.v[r].par_chunks_mut(chunk))
                .for_each(|(((w, g), m), v)| {
                    for k in 0..w.len() {
                        let gk = g[k].to_f64();
                        let mk = b1 * m[k] + (1.0 - b1) * gk;
                        let vk = b2 * v[k] + (1.0 - b2) * gk * gk;
                        m[k] = mk;
                        v[k] = vk;
                        let wk = w[k].to_f64() * decay - step_size * mk / (vk.sqrt() / bc2 + eps);
                        w[k] = R::from_f64(wk);
                    }
                });
        }
        Ok(())
    }
}

/// Scales `grads` so their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when below 1); returns the norm before.
pub fn clip_grad_norm<R: Real>(grads: &mut [R], max_norm: f64) -> f64 {
    let chunk = 1 << 16;
    let parts: Vec<f64> = grads
        .par_chunks(chunk)
        .map(|c| c.iter().map(|&g| g.to_f64() * g.to_f64()).sum::<f64>())
        .collect();
    let norm = parts.iter().sum::<f64>().sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        let f = R::from_f64(coef);
        grads.par_chunks_mut(chunk).for_each(|c| {
            for g in c {
                *g *= f;
            }
        });
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check;

    fn tiny() -> BertConfig {
        BertConfig {
            vocab: 13,
            hidden: 8,
            layers: 2,
            heads: 2,
            intermediate: 12,
            max_positions: 7,
            type_vocab: 2,
            eps: 1e-12,
            hidden_dropout: 0.1,
            attention_dropout: 0.1,
        }
    }

    fn random(cfg: BertConfig, seed: u64) -> Bert<f64> {
        let mut bert = Bert::<f64>::zeros(cfg).unwrap();
        let mut rng = Rng::new(seed);
        let params = bert.params().to_vec();
        for p in params {
            let scale = if p.name.contains("LayerNorm.weight") {
                0.0
            } else {
                0.5
            };
            let base = if p.name.contains("LayerNorm.weight") {
                1.0
            } else {
                0.0
            };
            let vals: Vec<f64> = (0..p.len())
                .map(|_| {
                    base + scale * rng.normal() + if base > 0.0 { 0.2 * rng.normal() } else { 0.0 }
                })
                .collect();
            bert.set(&p.name, vals.into_iter()).unwrap();
        }
        bert
    }

    const SEQS: [&[u32]; 4] = [&[1, 5, 7, 2], &[1, 3, 2], &[1, 12, 4, 4, 9, 6, 2], &[1, 2]];
    const PAIRS: [(usize, usize, f32); 4] = [(0, 1, 1.0), (0, 2, 0.0), (2, 3, 1.0), (1, 3, 0.0)];

    fn loss_and_grad(bert: &Bert<f64>, train: bool) -> (f64, Vec<f64>) {
        let mut cache = BertCache::new();
        let mut rng = Rng::new(7);
        let dropout = train.then_some(Dropout { rng: &mut rng });
        let pooled = bert.forward(&SEQS, dropout, &mut cache).unwrap();
        let (loss, dp) = cosine_pair_loss(&pooled, bert.config().hidden, &PAIRS);
        let mut grads = vec![0.0; bert.weights.len()];
        bert.backward(&cache, &dp, &mut grads).unwrap();
        (loss, grads)
    }

    #[test]
    fn gradients_match_finite_differences_with_and_without_dropout() {
        for train in [false, true] {
            let bert = random(tiny(), 3);
            let (loss, analytic) = loss_and_grad(&bert, train);
            assert!(loss > 1e-3, "a loss of {loss} checks little");
            let mut probe = bert.clone();
            let result = check(
                |w| {
                    probe.weights.copy_from_slice(w);
                    loss_and_grad(&probe, train).0
                },
                &bert.weights,
                &analytic,
                1e-6,
            );
            assert!(
                result.max_rel_error < 1e-4,
                "dropout {train}: {result:?} at {}",
                bert.params()
                    .iter()
                    .find(|p| p.range().contains(&result.worst_index))
                    .map_or("?", |p| p.name.as_str())
            );
            // Every tensor that the batch reaches gets a gradient.
            for p in bert.params() {
                let g = &analytic[p.range()];
                assert!(g.iter().any(|&v| v != 0.0), "{} has no gradient", p.name);
            }
        }
    }

    #[test]
    fn packing_does_not_change_a_sequence() {
        let bert = random(tiny(), 5);
        let mut cache = BertCache::new();
        let together = bert.forward(&SEQS, None, &mut cache).unwrap();
        let h = bert.config().hidden;
        for (i, s) in SEQS.iter().enumerate() {
            let alone = bert.forward(&[s], None, &mut cache).unwrap();
            for (a, b) in alone.iter().zip(&together[i * h..(i + 1) * h]) {
                assert!((a - b).abs() < 1e-12, "sequence {i}: {a} alone, {b} packed");
            }
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let bert = random(tiny(), 5);
        let mut cache = BertCache::new();
        assert!(bert.forward(&[&[]], None, &mut cache).is_err());
        assert!(bert.forward(&[&[1, 13]], None, &mut cache).is_err());
        assert!(bert.forward(&[&[1; 8]], None, &mut cache).is_err());
        assert!(Bert::<f32>::zeros(BertConfig { heads: 3, ..tiny() }).is_err());
    }

    #[test]
    fn adamw_matches_its_formula_and_skips_decay_for_biases() {
        let mut bert = random(tiny(), 9);
        let before = bert.weights.clone();
        let grads: Vec<f64> = (0..before.len())
            .map(|i| ((i % 7) as f64 - 3.0) * 0.1)
            .collect();
        let mut opt = AdamW::new(0.9, 0.999, 1e-8, 0.01);
        let params = bert.params().to_vec();
        opt.step(&params, &mut bert.weights, &grads, 0.1).unwrap();
        for p in &params {
            for k in p.range() {
                let g = grads[k];
                let decayed = if p.decays() {
                    before[k] * (1.0 - 0.1 * 0.01)
                } else {
                    before[k]
                };
                // First step: m̂ = g, v̂ = g², so the step is lr·g/(|g| + ε).
                let want = decayed - 0.1 * g / (g.abs() + 1e-8);
                assert!((bert.weights[k] - want).abs() < 1e-9, "{} [{k}]", p.name);
            }
        }
        assert!(!params
            .iter()
            .find(|p| p.name.ends_with("query.bias"))
            .unwrap()
            .decays());
        assert!(!params
            .iter()
            .find(|p| p.name.contains("LayerNorm.weight"))
            .unwrap()
            .decays());
        assert!(params
            .iter()
            .find(|p| p.name.ends_with("query.weight"))
            .unwrap()
            .decays());
    }

    #[test]
    fn clipping_scales_to_the_norm() {
        let mut g = vec![3.0f64, 4.0];
        let norm = clip_grad_norm(&mut g, 1.0);
        assert!((norm - 5.0).abs() < 1e-12);
        assert!((g[0] - 3.0 / (5.0 + 1e-6)).abs() < 1e-12);
        let mut small = vec![0.3f64, 0.4];
        clip_grad_norm(&mut small, 1.0);
        assert_eq!(small, vec![0.3, 0.4]);
    }
}
