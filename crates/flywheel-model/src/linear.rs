//! The `linear` family: TF-IDF vectors of words and hashed word/character n-grams (the
//! fastText-style family's features) and logistic regression (softmax, or a sigmoid per label;
//! least squares for regression) or a one-vs-rest L2-loss linear SVM, fitted by L-BFGS — the
//! classical strong baseline, in the same artifact format as every other model.
//!
//! TF-IDF as scikit-learn's `TfidfVectorizer(sublinear_tf=True)`: `tf = 1 + ln(count)`,
//! `idf = ln((1 + n) / (1 + df)) + 1` over the training rows, each vector L2-normalised.

use std::time::Instant;

use flywheel_data::Record;
use flywheel_nn::{LinearFit, LinearLoss, LinearModel, LinearTargets, SparseRows};
use flywheel_text::KerasTokenizer;

use crate::bag::{BagFeaturizer, Rows};
use crate::evaluate::report_from_outputs;
use crate::pipeline::{task_outputs, Network, Pipeline};
use crate::spec::{LinearLossChoice, ModelSpec, TrainConfig};
use crate::task::{LabelSet, Targets, Task};
use crate::train::{training_rows, EpochRecord, TrainEvent, TrainOutcome};
use crate::ModelError;

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

/// TF-IDF of sorted rows with repeats: one entry per distinct row, L2-normalised.
pub(crate) fn tfidf(idf: &[f32], rows: &[u32], idx: &mut Vec<u32>, val: &mut Vec<f32>) {
    idx.clear();
    val.clear();
    let mut i = 0;
    while i < rows.len() {
        let f = rows[i];
        let start = i;
        while i < rows.len() && rows[i] == f {
            i += 1;
        }
        let w = idf.get(f as usize).copied().unwrap_or(0.0);
        if w > 0.0 {
            idx.push(f);
            val.push((1.0 + ((i - start) as f32).ln()) * w);
        }
    }
    let norm = val.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        val.iter_mut().for_each(|v| *v /= norm);
    }
}

/// TF-IDF features fitted on the first `n_train` texts.
pub(crate) struct Tfidf {
    /// The tokenizer, fitted.
    pub tokenizer: KerasTokenizer,
    /// Tokens to feature rows.
    pub featurizer: BagFeaturizer,
    /// IDF weight of every feature row.
    pub idf: Vec<f32>,
    /// Every text's TF-IDF vector.
    pub x: SparseRows,
    /// Every text's sorted feature rows.
    pub all: Rows,
}

/// Fits the tokenizer, the n-gram features and their IDF on the first `n_train` texts, and
/// computes every text's TF-IDF vector.
pub(crate) fn fit_tfidf(
    spec: &ModelSpec,
    texts: &[&str],
    n_train: usize,
) -> Result<Tfidf, ModelError> {
    let mut tokenizer = KerasTokenizer::new(spec.tokenizer.clone())?;
    tokenizer.fit(&texts[..n_train]);
    let mut featurizer = BagFeaturizer::new(spec.bag.clone(), tokenizer.words().len());
    let mut all = Rows::featurize(&tokenizer, &mut featurizer, texts, n_train);
    // Document frequencies over the training rows (rows are sorted within a text).
    let mut df = vec![0u32; featurizer.rows()];
    for i in 0..n_train {
        let text = all.get(i);
        for (j, &f) in text.iter().enumerate() {
            if j == 0 || text[j - 1] != f {
                df[f as usize] += 1;
            }
        }
    }
    // N-grams in fewer than `min_df` training texts lose their rows; words keep theirs (the
    // tokenizer's vocabulary) with weight 0, which drops them from every text's features.
    let min_df = spec.linear.min_df.max(1) as u32;
    if min_df > 1 {
        let map = featurizer.retain_buckets(|row| df[row as usize] >= min_df);
        all.remap(&map);
        // The renumbering keeps row order, so the kept rows' counts stay in order too.
        df = map
            .iter()
            .zip(&df)
            .filter_map(|(new, &d)| new.map(|_| d))
            .collect();
    }
    let idf: Vec<f32> = df
        .iter()
        .map(|&d| match d >= min_df {
            true => (((1 + n_train) as f64 / (1 + d) as f64).ln() + 1.0) as f32,
            false => 0.0,
        })
        .collect();
    let mut x = SparseRows::new();
    let (mut idx, mut val) = (Vec::new(), Vec::new());
    for i in 0..texts.len() {
        tfidf(&idf, all.get(i), &mut idx, &mut val);
        x.push(&idx, &val);
    }
    Ok(Tfidf {
        tokenizer,
        featurizer,
        idf,
        x,
        all,
    })
}

/// Row weights of scikit-learn's `class_weight="balanced"`: a row of class `c` weighs
/// `n / (classes present · rows of c)`, so every class carries the same total weight.
pub(crate) fn balanced_weights(classes: &[u32], outputs: usize) -> Vec<f64> {
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

/// Trains the linear model (called by [`crate::train`] for `linear` specs).
pub(crate) fn train_linear(
    records: &[Record],
    source: &str,
    labels: LabelSet,
    targets: Targets,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    on_event: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<TrainOutcome, ModelError> {
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
    let pipeline = Pipeline::new(spec.clone(), labels, tokenizer, Network::Linear(net))?;
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
pub(crate) fn thread_pool(cfg: &TrainConfig) -> Result<rayon::ThreadPool, ModelError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads.max(1))
        .build()
        .map_err(|e| ModelError::Invalid(format!("cannot start {} threads: {e}", cfg.threads)))
}

/// The output layer and loss of a linear model for a task with `k` outputs and the spec's loss
/// choice: two outputs for binary tasks (the task reads the second's probability). The squared
/// hinge is for binary and multi-class tasks only.
pub(crate) fn head_shape(
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
        other => Err(ModelError::Invalid(format!(
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
pub(crate) fn fit_head(
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
pub(crate) fn one_pass_outcome(
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
