//! The networks of the sequence families at inference: the reference [`TextRnn`] (`lstm`
//! without masking) and the [`SeqNet`] of `gru`, `bilstm`, `cnn` and masked `lstm`, each with
//! what is derived from its weights and the padding rule (the states after leading padding).

use flywheel_nn::{
    Encoder, Loss, PadStates, Parameters, SeqNet, SeqPadStates, SeqWorkspace, Tensor, TextRnn,
    Workspace,
};
use flywheel_text::{KerasTokenizer, PadSpec, Side};
use rayon::prelude::*;

use crate::family::Family;
use crate::network::{scratch_of, Net, NetShape, Network, Scratch};
use crate::pipeline::Pipeline;
use crate::spec::ModelSpec;
use crate::task::LabelSet;
use crate::ModelError;

/// Texts per inference block (one workspace, one pass of the network).
const BLOCK: usize = 256;

/// The reference `Embedding → LSTM → Dense` network.
#[derive(Debug, Clone)]
pub struct RnnNet {
    /// The network.
    pub net: TextRnn<f32>,
    /// The LSTM's state after leading padding (pre-padding only).
    pads: Option<PadStates<f32>>,
}

impl PartialEq for RnnNet {
    fn eq(&self, other: &Self) -> bool {
        self.net == other.net
    }
}

impl From<TextRnn<f32>> for RnnNet {
    fn from(net: TextRnn<f32>) -> Self {
        RnnNet { net, pads: None }
    }
}

impl From<TextRnn<f32>> for Network {
    fn from(net: TextRnn<f32>) -> Self {
        Network::new(RnnNet::from(net))
    }
}

/// `Embedding → encoder → Dense` for `gru`, `bilstm`, `cnn`, and `lstm` with masking.
#[derive(Debug, Clone)]
pub struct SeqModelNet {
    /// The network.
    pub net: SeqNet<f32>,
    /// The encoder's states after leading padding (pre-padding only).
    pads: Option<SeqPadStates<f32>>,
}

impl PartialEq for SeqModelNet {
    fn eq(&self, other: &Self) -> bool {
        self.net == other.net
    }
}

impl From<SeqNet<f32>> for SeqModelNet {
    fn from(net: SeqNet<f32>) -> Self {
        SeqModelNet { net, pads: None }
    }
}

impl From<SeqNet<f32>> for Network {
    fn from(net: SeqNet<f32>) -> Self {
        Network::new(SeqModelNet::from(net))
    }
}

/// Per-thread buffers of the sequence networks' inference.
#[derive(Default)]
struct SeqBuffers {
    ws: Workspace<f32>,
    seq: SeqWorkspace<f32>,
    padded: Vec<u32>,
    row: Vec<u32>,
}

/// Cuts the ids appended to `out` since `start` to `max_len`, at the configured end.
fn truncate_from(pad: &PadSpec, out: &mut Vec<u32>, start: usize) {
    let n = out.len() - start;
    if n > pad.maxlen {
        match pad.truncating {
            Side::Pre => {
                out.drain(start..start + n - pad.maxlen);
            }
            Side::Post => out.truncate(start + pad.maxlen),
        }
    }
}

/// Token ids of `text`, truncated.
fn encode_text(tokenizer: &KerasTokenizer, pad: &PadSpec, text: &str, out: &mut Vec<u32>) {
    let start = out.len();
    tokenizer.text_to_sequence_into(text, out);
    truncate_from(pad, out, start);
}

/// Token ids of already-cut tokens, truncated.
fn encode_tokens(tokenizer: &KerasTokenizer, pad: &PadSpec, tokens: &[&str], out: &mut Vec<u32>) {
    let start = out.len();
    out.extend(tokens.iter().filter_map(|t| tokenizer.token_id(t)));
    truncate_from(pad, out, start);
}

/// Pads `seqs` into a time-major `[steps, batch]` matrix in `s.padded`. With masking the
/// padding is never read, so every sequence is pre-padded to the longest of the block (same
/// result, fewer steps); otherwise to `max_len` on the configured side.
fn padded_ids(pad: &PadSpec, seqs: &[&[u32]], masked: bool, s: &mut SeqBuffers) -> (usize, usize) {
    let b = seqs.len();
    let steps = match masked {
        true => seqs.iter().map(|q| q.len()).max().unwrap_or(0).max(1),
        false => pad.maxlen,
    };
    let pad = PadSpec {
        maxlen: steps,
        padding: if masked { Side::Pre } else { pad.padding },
        ..*pad
    };
    s.padded.clear();
    s.padded.resize(steps * b, 0);
    s.row.clear();
    s.row.resize(steps, 0);
    for (j, q) in seqs.iter().enumerate() {
        pad.pad_into(q, &mut s.row);
        for (t, &id) in s.row.iter().enumerate() {
            s.padded[t * b + j] = id;
        }
    }
    (steps, b)
}

impl RnnNet {
    /// Logits (`[seqs.len(), outputs]`) of truncated id sequences.
    fn logits(
        &self,
        seqs: &[&[u32]],
        pad: &PadSpec,
        s: &mut SeqBuffers,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        match &self.pads {
            Some(pads) => self.net.predict_pre_padded(seqs, pads, &mut s.ws, out)?,
            None => {
                let (steps, b) = padded_ids(pad, seqs, false, s);
                self.net
                    .predict_padded(&s.padded, steps, b, &mut s.ws, out)?;
            }
        }
        Ok(())
    }
}

impl SeqModelNet {
    /// Logits (`[seqs.len(), outputs]`) of truncated id sequences.
    fn logits(
        &self,
        seqs: &[&[u32]],
        pad: &PadSpec,
        s: &mut SeqBuffers,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        match &self.pads {
            Some(pads) => self.net.predict_pre_padded(seqs, pads, &mut s.seq, out)?,
            None => {
                let (steps, b) = padded_ids(pad, seqs, self.net.mask_zero, s);
                self.net
                    .predict_padded(&s.padded, steps, b, &mut s.seq, out)?;
            }
        }
        Ok(())
    }
}

/// Implements [`Net`] for a sequence network wrapper; the two differ only in their family,
/// mask and padding states, given as closures of the wrapper.
macro_rules! sequence_net {
    ($ty:ty, $family:expr, $masked:expr, $refresh:expr, $check:expr) => {
        impl Net for $ty {
            fn family(&self) -> Family {
                $family(self)
            }

            fn tensors(&self) -> Vec<(String, &Tensor<f32>)> {
                self.net.tensors()
            }

            fn shape(
                &self,
                spec: &ModelSpec,
                labels: &LabelSet,
                _tokenizer: &KerasTokenizer,
            ) -> Result<NetShape, ModelError> {
                $check(self, spec)?;
                let _ = labels;
                Ok(NetShape {
                    rows: self.net.embedding.vocab(),
                    outputs: self.net.outputs(),
                })
            }

            fn masked(&self) -> bool {
                $masked(self)
            }

            fn loss(&self) -> Option<Loss> {
                Some(self.net.loss)
            }

            fn refresh(&mut self, pad: &PadSpec) -> Result<(), ModelError> {
                $refresh(self, pad)
            }

            fn truncates(&self) -> bool {
                true
            }

            fn encode_into(
                &self,
                tokenizer: &KerasTokenizer,
                pad: &PadSpec,
                text: &str,
                out: &mut Vec<u32>,
            ) {
                encode_text(tokenizer, pad, text, out)
            }

            fn encode_tokens_into(
                &self,
                tokenizer: &KerasTokenizer,
                pad: &PadSpec,
                tokens: &[&str],
                out: &mut Vec<u32>,
            ) {
                encode_tokens(tokenizer, pad, tokens, out)
            }

            fn scratch(&self) -> Scratch {
                Box::new(SeqBuffers::default())
            }

            fn outputs(
                &self,
                inputs: &[&[u32]],
                labels: &LabelSet,
                pad: &PadSpec,
                scratch: &mut Scratch,
                out: &mut [f32],
            ) -> Result<(), ModelError> {
                self.logits(inputs, pad, scratch_of::<SeqBuffers>(scratch), out)?;
                self.net.loss.activate(out, labels.outputs());
                Ok(())
            }
        }
    };
}

sequence_net!(
    RnnNet,
    |_: &RnnNet| Family::Lstm,
    |_: &RnnNet| false,
    |n: &mut RnnNet, pad: &PadSpec| -> Result<(), ModelError> {
        n.pads = match pad.padding {
            Side::Pre => Some(n.net.pad_states(pad.maxlen, pad.value)?),
            Side::Post => None,
        };
        Ok(())
    },
    |_: &RnnNet, _: &ModelSpec| -> Result<(), ModelError> { Ok(()) }
);

sequence_net!(
    SeqModelNet,
    |n: &SeqModelNet| match n.net.encoder {
        Encoder::Lstm(_) => Family::Lstm,
        Encoder::Gru(_) => Family::Gru,
        Encoder::BiLstm(_) => Family::BiLstm,
        Encoder::Cnn(_) => Family::Cnn,
    },
    |n: &SeqModelNet| n.net.mask_zero,
    |n: &mut SeqModelNet, pad: &PadSpec| -> Result<(), ModelError> {
        n.pads = match pad.padding {
            Side::Pre if pad.value == 0 => n.net.pad_states(pad.maxlen),
            _ => None,
        };
        Ok(())
    },
    |n: &SeqModelNet, spec: &ModelSpec| -> Result<(), ModelError> {
        if n.net.min_steps() > spec.max_len {
            return Err(ModelError::Incompatible(format!(
                "the widest kernel ({}) is longer than max_len {}",
                n.net.min_steps(),
                spec.max_len
            )));
        }
        Ok(())
    }
);

/// Logits of id sequences of a sequence model, computed in parallel blocks on the current
/// rayon pool: `[seqs.len(), outputs]`.
pub fn logits_par(pipeline: &Pipeline, seqs: &[&[u32]]) -> Result<Vec<f32>, ModelError> {
    let k = pipeline.outputs();
    let pad = pipeline.pad();
    let net = pipeline.network();
    let blocks: Result<Vec<Vec<f32>>, ModelError> = seqs
        .par_chunks(BLOCK)
        .map_init(SeqBuffers::default, |s, block| {
            let mut out = vec![0.0f32; block.len() * k];
            if let Some(n) = net.downcast_ref::<RnnNet>() {
                n.logits(block, &pad, s, &mut out)?;
            } else if let Some(n) = net.downcast_ref::<SeqModelNet>() {
                n.logits(block, &pad, s, &mut out)?;
            } else {
                return Err(ModelError::NotApplicable(format!(
                    "logits of a sequence model were asked of a {} model",
                    net.family()
                )));
            }
            Ok(out)
        })
        .collect();
    Ok(blocks?.concat())
}
