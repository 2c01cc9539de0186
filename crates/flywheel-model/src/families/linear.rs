//! The `linear` family: TF-IDF vectors of words and hashed word/character n-grams
//! ([`crate::features`]) and logistic regression (softmax, or a sigmoid per label; least
//! squares for regression) or a one-vs-rest L2-loss linear SVM, fitted by L-BFGS — the
//! classical strong baseline, in the same artifact format as every other model. The head's
//! fit ([`fit_head`]) is shared with the `encoder` family.

use std::time::Instant;

use flywheel_nn::{
    LinearFit, LinearLoss, LinearModel, LinearTargets, Parameters, SparseRows, Tensor,
};
use flywheel_text::{KerasTokenizer, PadSpec};

use super::api::{cost, ModelFamily, ReadContext, Setting, TensorFile, TrainInput, Workload};
use crate::family::Family;
use crate::features::{fit_tfidf, tfidf, BagFeaturizer, Tfidf};
use crate::network::{
    scratch_of, task_outputs, task_width, Net, NetShape, Network, RawTensor, Scratch,
};
use crate::outcome::{training_rows, EpochRecord, TrainEvent, TrainOutcome};
use crate::pipeline::Pipeline;
use crate::report::report_from_outputs;
use crate::spec::{LinearLossChoice, ModelSpec, TrainConfig, LINEAR_BUCKETS};
use crate::task::{LabelSet, Targets, Task};
use crate::ModelError;

/// The `linear` family.
pub struct Linear;

impl ModelSpec {
    /// TF-IDF + logistic regression on word bigrams (scikit-learn's `ngram_range=(1, 2)`),
    /// n-grams of at least two training texts (`min_df=2`), `C = 1`, Unicode word segmentation
    /// (CJK detected).
    pub fn linear() -> Self {
        let mut s = ModelSpec::fasttext();
        s.family = Family::Linear;
        s.bag.word_ngrams = 2;
        s.bag.buckets = LINEAR_BUCKETS;
        s.linear.min_df = 2;
        s
    }
}

impl ModelFamily for Linear {
    fn family(&self) -> Family {
        Family::Linear
    }

    fn default_spec(&self) -> ModelSpec {
        ModelSpec::linear()
    }

    /// One pass (the solver runs to convergence), no validation rows.
    fn default_config(&self) -> TrainConfig {
        one_pass_config()
    }

    fn accepts(&self, setting: Setting) -> bool {
        matches!(setting, Setting::Ngrams | Setting::Regression)
    }

    fn uses_ngrams(&self, _spec: &ModelSpec) -> bool {
        true
    }

    fn validate(&self, spec: &ModelSpec) -> Result<(), ModelError> {
        spec.linear.validate()?;
        spec.bag.validate()
    }

    fn train(
        &self,
        input: TrainInput<'_>,
        on_event: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<TrainOutcome, ModelError> {
        train_linear(input, on_event)
    }

    fn read(&self, file: &dyn TensorFile, ctx: &ReadContext<'_>) -> Result<Network, ModelError> {
        let featurizer = BagFeaturizer::with_buckets(
            ctx.spec.bag.clone(),
            ctx.tokenizer.words().len(),
            file.u32("bag.buckets")?,
        );
        let rows = featurizer.rows();
        let (outputs, loss) = head_shape(ctx.task, ctx.outputs, ctx.spec.linear.loss)?;
        Ok(Network::new(LinearNet {
            featurizer,
            idf: file.f32("linear.idf", &[rows])?.data().to_vec(),
            model: LinearModel {
                weight: file.f32("linear.weight", &[rows, outputs])?,
                bias: file.f32("linear.bias", &[outputs])?,
                loss,
            },
        }))
    }

    fn summary(&self, pipeline: &Pipeline) -> String {
        let sp = &pipeline.spec;
        format!(
            "{} {} C {}{} min-df {} word-ngrams {} char-ngrams {} buckets {} words {} tokenizer {} \
             parameters {}",
            sp.family,
            sp.linear.loss.name(),
            sp.linear.c,
            if sp.linear.balanced { " balanced" } else { "" },
            sp.linear.min_df,
            sp.bag.word_ngrams,
            sp.bag.char_ngrams(),
            sp.bag.buckets,
            pipeline.tokenizer().words().len(),
            sp.tokenizer.describe(),
            pipeline.num_parameters()
        )
    }

    fn describe(&self, spec: &ModelSpec, _cfg: &TrainConfig) -> String {
        format!(
            "linear{} tokenizer={} C={}{} word-ngrams={} char-ngrams={} min-df={}",
            match spec.linear.loss {
                LinearLossChoice::Logistic => "",
                LinearLossChoice::SquaredHinge => " squared-hinge",
            },
            spec.tokenizer.describe(),
            spec.linear.c,
            if spec.linear.balanced {
                " balanced"
            } else {
                ""
            },
            spec.bag.word_ngrams,
            spec.bag.char_ngrams(),
            spec.linear.min_df
        )
    }

    /// L-BFGS: ~`max_iter` passes (with line searches) over the non-zeros, and its bookkeeping
    /// over every weight, which dominates where texts are short and most n-grams occur once.
    fn planned_seconds(&self, spec: &ModelSpec, _cfg: &TrainConfig, work: &Workload) -> f64 {
        let iters = work.classes * spec.linear.max_iter as f64;
        work.overhead
            + iters * (work.features * cost::LINEAR_PASS + work.weights * cost::WEIGHT_PASS)
                / cost::UPDATES_PER_SEC
    }

    fn solver_scaled(&self) -> bool {
        true
    }
}

/// The training settings of a model fitted in one pass: one epoch, no validation rows.
pub fn one_pass_config() -> TrainConfig {
    TrainConfig {
        epochs: 1,
        validation_split: 0.0,
        ..TrainConfig::default()
    }
}

/// L-BFGS stops when no gradient component exceeds this (scikit-learn's default `tol`).
const GTOL: f64 = 1e-4;

/// The linear network: features, their IDF weights, the model.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearNet {
    /// Tokens to feature rows.
    pub featurizer: BagFeaturizer,
    /// IDF weight of every feature row.
    pub idf: Vec<f32>,
    /// Weights and bias.
    pub model: LinearModel,
}

impl LinearNet {
    /// The TF-IDF vector of sorted feature rows (as [`BagFeaturizer`] emits them).
    pub fn tfidf(&self, rows: &[u32], idx: &mut Vec<u32>, val: &mut Vec<f32>) {
        tfidf(&self.idf, rows, idx, val);
    }

    /// Outputs of one text's feature rows for the task (`[labels.outputs()]`).
    pub fn outputs_into(
        &self,
        rows: &[u32],
        task: Task,
        buf: &mut (Vec<u32>, Vec<f32>, Vec<f32>),
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let (idx, val, probs) = buf;
        self.tfidf(rows, idx, val);
        probs.clear();
        probs.resize(self.model.outputs(), 0.0);
        self.model.predict(idx, val, probs)?;
        task_outputs(task, probs, out);
        Ok(())
    }
}

impl Net for LinearNet {
    fn family(&self) -> Family {
        Family::Linear
    }

    fn tensors(&self) -> Vec<(String, &Tensor<f32>)> {
        self.model.tensors()
    }

    fn raw_tensors(&self) -> Vec<RawTensor> {
        let mut out: Vec<RawTensor> = self
            .tensors()
            .into_iter()
            .map(|(n, t)| RawTensor::f32(&n, t.shape(), t.data()))
            .collect();
        out.push(RawTensor::f32("linear.idf", &[self.idf.len()], &self.idf));
        out.push(RawTensor::u32("bag.buckets", self.featurizer.bucket_list()));
        out
    }

    fn shape(
        &self,
        _spec: &ModelSpec,
        labels: &LabelSet,
        _tokenizer: &KerasTokenizer,
    ) -> Result<NetShape, ModelError> {
        let rows = self.featurizer.rows();
        if self.model.features() != rows || self.idf.len() != rows {
            return Err(ModelError::Incompatible(format!(
                "the featurizer uses {rows} rows but the model has {} weights and {} IDF values",
                self.model.features(),
                self.idf.len()
            )));
        }
        Ok(NetShape {
            rows,
            outputs: task_width(labels.task, self.model.outputs()),
        })
    }

    fn encode_into(
        &self,
        tokenizer: &KerasTokenizer,
        _pad: &PadSpec,
        text: &str,
        out: &mut Vec<u32>,
    ) {
        self.featurizer.encode_into(tokenizer, text, out)
    }

    fn encode_tokens_into(
        &self,
        tokenizer: &KerasTokenizer,
        _pad: &PadSpec,
        tokens: &[&str],
        out: &mut Vec<u32>,
    ) {
        self.featurizer.encode_tokens(tokenizer, tokens, out)
    }

    fn scratch(&self) -> Scratch {
        Box::new(SparseBuffers::default())
    }

    fn outputs(
        &self,
        inputs: &[&[u32]],
        labels: &LabelSet,
        _pad: &PadSpec,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let k = labels.outputs();
        let s = scratch_of::<SparseBuffers>(scratch);
        for (seq, row) in inputs.iter().zip(out.chunks_exact_mut(k)) {
            self.outputs_into(seq, labels.task, s, row)?;
        }
        Ok(())
    }
}

/// Per-thread buffers of a sparse linear model's inference: indices, values, probabilities.
pub type SparseBuffers = (Vec<u32>, Vec<f32>, Vec<f32>);

/// Row weights of scikit-learn's `class_weight="balanced"`: a row of class `c` weighs
/// `n / (classes present · rows of c)`, so every class carries the same total weight.
pub fn balanced_weights(classes: &[u32], outputs: usize) -> Vec<f64> {
    let mut counts = vec![0usize; outputs];
    for &c in classes {
        if let Some(n) = counts.get_mut(c as usize) {
            *n += 1;
        }
    }
    let present = counts.iter().filter(|&&n| n > 0).count().max(1);
    let n = classes.len() as f64;
    classes
        .iter()
        .map(|&c| {
            let rows = counts.get(c as usize).copied().unwrap_or(0).max(1);
            n / (present as f64 * rows as f64)
        })
        .collect()
}

/// Trains the linear model.
fn train_linear(
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
    let started = Instant::now();
    head_shape(labels.task, labels.outputs(), spec.linear.loss)?;
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    let n = records.len();
    let n_train = training_rows(n, cfg, source)?;
    let n_val = n - n_train;
    let Tfidf {
        tokenizer,
        featurizer,
        idf,
        x,
        all,
    } = fit_tfidf(spec, &texts, n_train)?;
    let width = featurizer.rows();
    let pool = thread_pool(cfg)?;
    let (model, fit) = fit_head(
        &x,
        width,
        n_train,
        n_val,
        &labels,
        &targets,
        spec,
        tokenizer.vocab_size(),
        &pool,
        on_event,
    )?;
    let net = LinearNet {
        featurizer,
        idf,
        model,
    };
    let pipeline = Pipeline::new(spec.clone(), labels, tokenizer, net)?;
    let outputs_of = |range: std::ops::Range<usize>| -> Result<Vec<f32>, ModelError> {
        let seqs: Vec<&[u32]> = range.map(|i| all.get(i)).collect();
        pool.install(|| pipeline.outputs_par(&seqs))
    };
    let train_out = outputs_of(0..n_train)?;
    let val_out = match n_val {
        0 => None,
        _ => Some(outputs_of(n_train..n)?),
    };
    one_pass_outcome(
        pipeline,
        &train_out,
        val_out.as_deref(),
        &targets,
        fit,
        started,
        on_event,
    )
}

/// The training threads.
pub fn thread_pool(cfg: &TrainConfig) -> Result<rayon::ThreadPool, ModelError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads.max(1))
        .build()
        .map_err(|source| ModelError::Threads {
            threads: cfg.threads,
            source,
        })
}

/// The output layer and loss of a linear model for a task with `k` outputs and the spec's loss
/// choice: two outputs for binary tasks (the task reads the second's probability). The squared
/// hinge is for binary and multi-class tasks only.
pub fn head_shape(
    task: Task,
    k: usize,
    choice: LinearLossChoice,
) -> Result<(usize, LinearLoss), ModelError> {
    let classes = match task {
        Task::Binary => 2,
        Task::Multiclass => k,
        Task::Multilabel => return logistic_only(choice, task).map(|_| (k, LinearLoss::Sigmoid)),
        Task::Regression => return logistic_only(choice, task).map(|_| (1, LinearLoss::Mse)),
    };
    Ok(match choice {
        LinearLossChoice::Logistic => (classes, LinearLoss::Softmax),
        LinearLossChoice::SquaredHinge => (classes, LinearLoss::SquaredHinge),
    })
}

fn logistic_only(choice: LinearLossChoice, task: Task) -> Result<(), ModelError> {
    match choice {
        LinearLossChoice::Logistic => Ok(()),
        other => Err(ModelError::Setting(format!(
            "the {} loss is for binary and multi-class tasks, not {task}",
            other.name()
        ))),
    }
}

/// Fits the task's regression (softmax, a sigmoid per label, or least squares) by L-BFGS on
/// the first `n_train` rows of `x` (`width` features) with the spec's `C`, iteration cap and
/// class weights, after reporting the start to `on_event`. Returns the model and what the fit
/// reached and cost.
#[allow(clippy::too_many_arguments)]
pub fn fit_head(
    x: &SparseRows,
    width: usize,
    n_train: usize,
    n_val: usize,
    labels: &LabelSet,
    targets: &Targets,
    spec: &ModelSpec,
    vocab: usize,
    pool: &rayon::ThreadPool,
    on_event: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<(LinearModel, LinearFit), ModelError> {
    let k = labels.outputs();
    let (outputs, loss) = head_shape(labels.task, k, spec.linear.loss)?;
    let classes: Vec<u32> = match (targets, labels.task) {
        (Targets::Classes(c), _) => c[..n_train].to_vec(),
        (Targets::Values(v), Task::Binary) => {
            v[..n_train].iter().map(|&y| u32::from(y > 0.5)).collect()
        }
        _ => Vec::new(),
    };
    let values: Vec<f32> = match targets {
        Targets::Values(v) if !loss.takes_classes() => v[..n_train * k].to_vec(),
        _ => Vec::new(),
    };
    let y = match loss.takes_classes() {
        true => LinearTargets::Classes(&classes),
        false => LinearTargets::Values(&values),
    };
    let mut train_x = SparseRows::new();
    for i in 0..n_train {
        let (a, b) = x.row(i);
        train_x.push(a, b);
    }
    on_event(TrainEvent::Start {
        train_rows: n_train,
        val_rows: n_val,
        batches: 1,
        epochs: 1,
        parameters: width * outputs + outputs,
        task: labels.task,
        labels: &labels.labels,
        vocab,
    });
    let row_weights = if spec.linear.balanced && loss.takes_classes() {
        balanced_weights(&classes, outputs)
    } else {
        Vec::new()
    };
    let mut model = LinearModel::new(width, outputs, loss);
    let l2 = 1.0 / (spec.linear.c * n_train as f64);
    let fit = pool.install(|| {
        model.fit_weighted(&train_x, y, &row_weights, l2, spec.linear.max_iter, GTOL)
    })?;
    Ok((model, fit))
}

/// The outcome of a model fitted in one pass, from its outputs on the training rows and on
/// the validation rows (which follow them).
pub fn one_pass_outcome(
    pipeline: Pipeline,
    train_out: &[f32],
    val_out: Option<&[f32]>,
    targets: &Targets,
    fit: LinearFit,
    started: Instant,
    on_event: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<TrainOutcome, ModelError> {
    let labels = &pipeline.labels;
    let k = labels.outputs();
    let n_train = train_out.len() / k.max(1);
    let n_val = val_out.map_or(0, |v| v.len() / k.max(1));
    let train_report = report_from_outputs(labels, train_out, &targets.slice(0..n_train, k))?;
    let validation = match val_out {
        Some(out) => Some(report_from_outputs(
            labels,
            out,
            &targets.slice(n_train..n_train + n_val, k),
        )?),
        None => None,
    };
    let record = EpochRecord {
        epoch: 1,
        loss: fit.objective,
        accuracy: train_report.accuracy(),
        val_loss: None,
        val_accuracy: validation.as_ref().and_then(|r| r.accuracy()),
    };
    on_event(TrainEvent::Epoch {
        record: &record,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(TrainOutcome {
        pipeline,
        history: vec![record],
        best_epoch: None,
        stopped_early: false,
        train_rows: n_train,
        val_rows: n_val,
        validation,
        class_counts: Vec::new(),
        solver_evaluations: Some(fit.evaluations),
        drift: None,
    })
}

#[cfg(test)]
mod tests {
    use super::balanced_weights;

    #[test]
    fn balanced_weights_give_every_class_the_same_total() {
        let w = balanced_weights(&[0, 0, 0, 1, 2, 2], 4);
        assert_eq!(w, vec![2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 2.0, 1.0, 1.0]);
        let total: f64 = w.iter().sum();
        assert!((total - 6.0).abs() < 1e-12);
    }
}
