//! The sequence families: `lstm` (the reference Keras model), `gru`, `bilstm` and `cnn`. They
//! read a padded id sequence, share the embedding and output layer, and train through the same
//! epoch loop ([`super::sequence_fit`]).

use flywheel_nn::{Encoder, Loss, Parameters, Rng, SeqNet, TextRnn};
use flywheel_text::{KerasTokenizer, Side};

use super::api::{ModelFamily, ReadContext, Setting, TensorFile, TrainInput};
use super::sequence_fit::fit;
use super::sequence_net::{RnnNet, SeqModelNet};
use crate::family::Family;
use crate::network::Network;
use crate::outcome::{TrainEvent, TrainOutcome};
use crate::pipeline::{Encoded, Pipeline};
use crate::spec::{ModelSpec, TrainConfig};
use crate::ModelError;

/// One of the sequence families.
pub struct Sequence(Family);

/// The reference `lstm`.
pub static LSTM: Sequence = Sequence(Family::Lstm);
/// `gru`.
pub static GRU: Sequence = Sequence(Family::Gru);
/// `bilstm`.
pub static BILSTM: Sequence = Sequence(Family::BiLstm);
/// `cnn`.
pub static CNN: Sequence = Sequence(Family::Cnn);

impl ModelSpec {
    /// The reference model with a GRU in place of the LSTM.
    pub fn gru() -> Self {
        ModelSpec {
            family: Family::Gru,
            ..ModelSpec::default()
        }
    }

    /// The reference model with a bidirectional LSTM, padding masked (so the backward direction
    /// starts at the last real token).
    pub fn bilstm() -> Self {
        ModelSpec {
            family: Family::BiLstm,
            mask: true,
            ..ModelSpec::default()
        }
    }

    /// TextCNN: the reference tokenizer, length and embedding, 100 filters for each of the
    /// widths 3, 4, 5, ReLU, max over time, dropout 0.5 on the pooled features.
    pub fn cnn() -> Self {
        ModelSpec {
            family: Family::Cnn,
            dropout: 0.5,
            recurrent_dropout: 0.0,
            ..ModelSpec::default()
        }
    }
}

impl Sequence {
    fn recurrent(&self) -> bool {
        self.0 != Family::Cnn
    }
}

impl ModelFamily for Sequence {
    fn family(&self) -> Family {
        self.0
    }

    fn default_spec(&self) -> ModelSpec {
        match self.0 {
            Family::Gru => ModelSpec::gru(),
            Family::BiLstm => ModelSpec::bilstm(),
            Family::Cnn => ModelSpec::cnn(),
            _ => ModelSpec::default(),
        }
    }

    fn accepts(&self, setting: Setting) -> bool {
        match setting {
            Setting::SequenceLength | Setting::Dropout | Setting::MiniBatches | Setting::Epochs => {
                true
            }
            Setting::Hidden | Setting::RecurrentDropout | Setting::Mask => self.recurrent(),
            Setting::Convolution => !self.recurrent(),
            Setting::Ngrams
            | Setting::BagDim
            | Setting::BagLoss
            | Setting::Regression
            | Setting::Encoder
            | Setting::FineTune
            | Setting::Prototypes => false,
        }
    }

    fn validate(&self, spec: &ModelSpec) -> Result<(), ModelError> {
        if !self.recurrent() {
            let c = &spec.cnn;
            if c.filters == 0 || c.kernel_sizes.is_empty() || c.kernel_sizes.contains(&0) {
                return Err(ModelError::Setting(
                    "cnn needs at least 1 filter and kernel sizes of at least 1".to_string(),
                ));
            }
            if let Some(&k) = c.kernel_sizes.iter().find(|&&k| k > spec.max_len) {
                return Err(ModelError::Setting(format!(
                    "kernel size {k} is longer than --max-len {}",
                    spec.max_len
                )));
            }
            if spec.recurrent_dropout != 0.0 {
                return Err(ModelError::Setting(
                    "--recurrent-dropout does not apply to cnn".to_string(),
                ));
            }
        }
        Ok(())
    }

    fn train(
        &self,
        input: TrainInput<'_>,
        on_event: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<TrainOutcome, ModelError> {
        let TrainInput {
            records,
            source,
            labels,
            targets,
            spec,
            cfg,
        } = input;
        let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
        let mut tokenizer = KerasTokenizer::new(spec.tokenizer.clone())?;
        tokenizer.fit(&texts);
        let vocab = spec
            .tokenizer
            .num_words
            .unwrap_or(0)
            .max(tokenizer.vocab_size());
        let mut init_rng = Rng::with_stream(cfg.seed, 0);
        let net = sequence_network(
            spec,
            vocab,
            labels.outputs(),
            labels.task.loss(),
            &mut init_rng,
        );
        let reference = net.downcast_ref::<RnnNet>().is_some();
        let pipeline = Pipeline::new(spec.clone(), labels.clone(), tokenizer, net)?;
        let encoded = Encoded::new(&pipeline, texts.iter().copied());
        drop(texts);
        match reference {
            true => fit::<TextRnn<f32>>(
                pipeline, &encoded, &targets, &labels, spec, cfg, source, on_event,
            ),
            false => fit::<SeqNet<f32>>(
                pipeline, &encoded, &targets, &labels, spec, cfg, source, on_event,
            ),
        }
    }

    /// The network the spec describes, every tensor read by its name with the shape it must
    /// have.
    fn read(&self, file: &dyn TensorFile, ctx: &ReadContext<'_>) -> Result<Network, ModelError> {
        let vocab = file.rows("embedding")?;
        let mut net = sequence_network(
            ctx.spec,
            vocab,
            ctx.outputs,
            ctx.task.loss(),
            &mut Rng::new(0),
        );
        let wanted: Vec<(String, Vec<usize>)> = net
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, t.shape().to_vec()))
            .collect();
        let tensors = if let Some(n) = net.downcast_mut::<RnnNet>() {
            n.net.tensors_mut()
        } else if let Some(n) = net.downcast_mut::<SeqModelNet>() {
            n.net.tensors_mut()
        } else {
            return Err(ModelError::Incompatible(
                "the spec does not describe a sequence network".to_string(),
            ));
        };
        for ((name, shape), t) in wanted.iter().zip(tensors) {
            *t = file.f32(name, shape)?;
        }
        Ok(net)
    }

    fn summary(&self, pipeline: &Pipeline) -> String {
        let sp = &pipeline.spec;
        let side = |s: Side| match s {
            Side::Pre => "pre",
            Side::Post => "post",
        };
        let sequence = format!(
            "max_len {} padding {} truncating {} vocab {} tokenizer {} parameters {}",
            sp.max_len,
            side(sp.padding),
            side(sp.truncating),
            pipeline.tokenizer().vocab_size(),
            sp.tokenizer.describe(),
            pipeline.num_parameters()
        );
        match self.recurrent() {
            true => format!(
                "{} embed {} hidden {} dropout {} recurrent-dropout {} mask {} {sequence}",
                self.0,
                sp.embed_dim,
                sp.hidden,
                sp.dropout,
                sp.recurrent_dropout,
                if sp.mask { "on" } else { "off" },
            ),
            false => format!(
                "cnn embed {} filters {} kernel-sizes {} dropout {} {sequence}",
                sp.embed_dim,
                sp.cnn.filters,
                sp.cnn
                    .kernel_sizes
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                sp.dropout,
            ),
        }
    }

    fn describe(&self, spec: &ModelSpec, cfg: &TrainConfig) -> String {
        let layer = match self.recurrent() {
            true => format!(
                "hidden={} recurrent-dropout={} mask={}",
                spec.hidden,
                spec.recurrent_dropout,
                if spec.mask { "on" } else { "off" }
            ),
            false => format!(
                "filters={} kernel-sizes={}",
                spec.cnn.filters,
                spec.cnn
                    .kernel_sizes
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        format!(
            "{} tokenizer={} max-len={} embed={} {layer} dropout={} epochs={} batch-size={}",
            self.0,
            spec.tokenizer.describe(),
            spec.max_len,
            spec.embed_dim,
            spec.dropout,
            cfg.epochs,
            cfg.batch_size
        )
    }
}

/// A freshly initialised sequence network for `spec` (Keras's initialisers): the reference
/// [`TextRnn`] for `lstm` without masking, a [`SeqNet`] for the other sequence families.
pub fn sequence_network(
    spec: &ModelSpec,
    vocab: usize,
    outputs: usize,
    loss: Loss,
    rng: &mut Rng,
) -> Network {
    let h = spec.hidden;
    if spec.family == Family::Lstm && !spec.mask {
        return Network::from(TextRnn::new(vocab, spec.embed_dim, h, outputs, loss, rng));
    }
    let make = |e: usize, rng: &mut Rng| -> Encoder<f32> {
        match spec.family {
            Family::Gru => Encoder::Gru(flywheel_nn::Gru::new(e, h, rng)),
            Family::BiLstm => Encoder::BiLstm(flywheel_nn::Bidirectional {
                forward: flywheel_nn::Lstm::new(e, h, rng),
                backward: flywheel_nn::Lstm::new(e, h, rng),
            }),
            Family::Cnn => Encoder::Cnn(flywheel_nn::TextCnn::new(
                e,
                &spec.cnn.kernel_sizes,
                spec.cnn.filters,
                rng,
            )),
            _ => Encoder::Lstm(flywheel_nn::Lstm::new(e, h, rng)),
        }
    };
    Network::from(SeqNet::new(
        vocab,
        spec.embed_dim,
        outputs,
        loss,
        spec.mask,
        rng,
        make,
    ))
}
