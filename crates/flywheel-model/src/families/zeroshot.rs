//! The `zeroshot` family: a classifier made from label names (and one-line descriptions)
//! with no training rows — a text's scores are its encoder similarity to each label's
//! prototype (the mean vector of the label written into templates such as SetFit's "This
//! sentence is {}", and of its description), turned into probabilities by a softmax with a
//! temperature. Trained on labelled rows, it keeps the prototypes and fits only the temperature
//! (minimum log-loss), so its probabilities are calibrated on the data it has.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use flywheel_nn::Tensor;
use flywheel_text::{KerasTokenizer, PadSpec};

use super::api::{ModelFamily, ReadContext, Setting, TensorFile, TrainInput, Workload};
use super::encoder::base_encoder;
use super::linear::{one_pass_config, thread_pool};
use crate::embed::{embed_texts, resolve_encoder, TextEncoder, BATCH};
use crate::family::Family;
use crate::network::{task_outputs, task_width, Net, NetShape, Network, Scratch};
use crate::outcome::{training_rows, EpochRecord, TrainEvent, TrainOutcome};
use crate::pipeline::Pipeline;
use crate::report::report_from_outputs;
use crate::spec::{EncoderSpec, ModelSpec, TrainConfig, ZeroShotSpec};
use crate::task::{LabelSet, Targets, Task};
use crate::ModelError;

/// The `zeroshot` family.
pub struct ZeroShot;

/// SetFit's template for zero-shot labels.
pub const DEFAULT_TEMPLATE: &str = "This sentence is {}";

/// The softmax's factor on cosine similarities before any calibration.
pub const DEFAULT_SCALE: f32 = 20.0;

impl ModelSpec {
    /// A zero-shot classifier on the encoder in `dir` with SetFit's template.
    pub fn zeroshot(dir: impl Into<String>) -> Self {
        let mut s = ModelSpec::linear();
        s.family = Family::ZeroShot;
        s.encoder = Some(EncoderSpec::new(dir));
        s.zero_shot = Some(ZeroShotSpec::default());
        s
    }
}

impl ModelFamily for ZeroShot {
    fn family(&self) -> Family {
        Family::ZeroShot
    }

    fn default_spec(&self) -> ModelSpec {
        ModelSpec::zeroshot(String::new())
    }

    fn default_config(&self) -> TrainConfig {
        one_pass_config()
    }

    fn accepts(&self, setting: Setting) -> bool {
        matches!(setting, Setting::Encoder | Setting::Prototypes)
    }

    fn validate(&self, spec: &ModelSpec) -> Result<(), ModelError> {
        if spec.encoder.as_ref().is_none_or(|e| e.dir.is_empty()) {
            return Err(ModelError::Setting(
                "--model zeroshot needs --encoder DIR (a model directory)".into(),
            ));
        }
        spec.zero_shot.clone().unwrap_or_default().validate()
    }

    fn train(
        &self,
        input: TrainInput<'_>,
        on_event: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<TrainOutcome, ModelError> {
        let started = Instant::now();
        let (encoder, spec) = base_encoder(input.spec)?;
        let pool = thread_pool(input.cfg)?;
        let mut net = pool.install(|| ZeroShotNet::build(encoder, &spec, &input.labels))?;
        let n = input.records.len();
        let n_train = training_rows(n, input.cfg, input.source)?;
        let texts = input.texts();
        let sims = pool.install(|| net.similarities(&texts))?;
        let k = net.labels();
        net.scale = calibrate(&sims[..n_train * k], k, &input.targets);
        let mut spec = spec;
        if let Some(z) = spec.zero_shot.as_mut() {
            z.scale = net.scale;
        }
        let outputs = net.outputs_of(&sims, input.labels.task);
        let width = input.labels.outputs();
        let train_report = report_from_outputs(
            &input.labels,
            &outputs[..n_train * width],
            &input.targets.slice(0..n_train, width),
        )?;
        let validation = match n > n_train {
            true => Some(report_from_outputs(
                &input.labels,
                &outputs[n_train * width..],
                &input.targets.slice(n_train..n, width),
            )?),
            false => None,
        };
        let record = EpochRecord {
            epoch: 1,
            loss: log_loss(&sims[..n_train * k], k, net.scale, &input.targets),
            accuracy: train_report.accuracy(),
            val_loss: None,
            val_accuracy: validation.as_ref().and_then(|r| r.accuracy()),
        };
        on_event(TrainEvent::Epoch {
            record: &record,
            seconds: started.elapsed().as_secs_f64(),
        });
        let tokenizer = KerasTokenizer::new(spec.tokenizer.clone())?;
        let pipeline = Pipeline::new(spec, input.labels, tokenizer, net)?;
        Ok(TrainOutcome {
            pipeline,
            history: vec![record],
            best_epoch: None,
            stopped_early: false,
            train_rows: n_train,
            val_rows: n - n_train,
            validation,
            class_counts: Vec::new(),
            solver_evaluations: None,
            drift: None,
        })
    }

    fn read(&self, file: &dyn TensorFile, ctx: &ReadContext<'_>) -> Result<Network, ModelError> {
        let recorded = ctx.spec.encoder.as_ref().ok_or_else(|| {
            ModelError::Incompatible("a zero-shot model without its encoder".to_string())
        })?;
        let encoder = resolve_encoder(recorded)?;
        let k = file.rows("zeroshot.prototypes")?;
        let prototypes = file.f32("zeroshot.prototypes", &[k, recorded.dim])?;
        let scale = ctx
            .spec
            .zero_shot
            .as_ref()
            .map_or(DEFAULT_SCALE, |z| z.scale);
        Ok(Network::new(ZeroShotNet {
            encoder,
            prototypes,
            scale,
        }))
    }

    fn describe(&self, spec: &ModelSpec, _cfg: &TrainConfig) -> String {
        let z = spec.zero_shot.clone().unwrap_or_default();
        format!("zeroshot templates={}", z.templates.join(" | "))
    }

    fn summary(&self, pipeline: &Pipeline) -> String {
        let sp = &pipeline.spec;
        let e = sp.encoder.clone().unwrap_or_else(|| EncoderSpec::new(""));
        let z = sp.zero_shot.clone().unwrap_or_default();
        format!(
            "zero-shot on encoder {} (sha256 {}, {} values), templates {:?}, {} label \
             description(s), softmax scale {:.2}",
            e.dir,
            e.sha256,
            e.dim,
            z.templates,
            z.descriptions.len(),
            z.scale
        )
    }

    fn planned_seconds(&self, _spec: &ModelSpec, _cfg: &TrainConfig, work: &Workload) -> f64 {
        work.overhead
    }
}

/// Builds a zero-shot model of `labels` (no training rows) on the encoder `spec` names, with
/// the spec's templates, descriptions and scale, its prototypes computed on `threads`.
pub fn zero_shot_pipeline(
    spec: &ModelSpec,
    labels: LabelSet,
    threads: usize,
) -> Result<Pipeline, ModelError> {
    super::validate(spec)?;
    if spec.family != Family::ZeroShot {
        return Err(ModelError::Setting(format!(
            "a model without training rows is a zeroshot model, not {}",
            spec.family
        )));
    }
    let (encoder, spec) = base_encoder(spec)?;
    let cfg = TrainConfig {
        threads,
        ..one_pass_config()
    };
    let pool = thread_pool(&cfg)?;
    let net = pool.install(|| ZeroShotNet::build(encoder, &spec, &labels))?;
    let tokenizer = KerasTokenizer::new(spec.tokenizer.clone())?;
    Pipeline::new(spec, labels, tokenizer, net)
}

/// The labels for a zero-shot model of `names` (sorted, distinct): binary for two,
/// multi-class for more.
pub fn zero_shot_labels(names: &[String]) -> Result<LabelSet, ModelError> {
    let set: std::collections::BTreeSet<String> = names
        .iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    if set.len() < 2 {
        return Err(ModelError::Setting(format!(
            "a zero-shot model needs at least two distinct labels, got {}",
            set.len()
        )));
    }
    Ok(LabelSet {
        task: if set.len() == 2 {
            Task::Binary
        } else {
            Task::Multiclass
        },
        labels: set.into_iter().collect(),
        label_sep: String::new(),
        threshold: 0.5,
    })
}

/// Reads label descriptions, one `LABEL: DESCRIPTION` per line (blank lines and lines
/// starting with `#` skipped).
pub fn read_descriptions(path: &Path) -> Result<BTreeMap<String, String>, ModelError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ModelError::Setting(format!("{}: {e}", path.display())))?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (label, desc) = line.split_once(':').ok_or_else(|| {
            ModelError::Setting(format!(
                "{}:{}: expected LABEL: DESCRIPTION",
                path.display(),
                i + 1
            ))
        })?;
        let (label, desc) = (label.trim(), desc.trim());
        if label.is_empty() || desc.is_empty() {
            return Err(ModelError::Setting(format!(
                "{}:{}: a description needs a label and a text",
                path.display(),
                i + 1
            )));
        }
        out.insert(label.to_string(), desc.to_string());
    }
    Ok(out)
}

/// The zero-shot network: the encoder, one unit prototype vector per label, and the softmax's
/// scale on cosine similarities.
#[derive(Debug, Clone)]
pub struct ZeroShotNet {
    /// The sentence encoder (not stored in the model file).
    pub encoder: Arc<dyn TextEncoder>,
    /// `[labels, dim]` unit vectors.
    pub prototypes: Tensor<f32>,
    /// Factor on the similarities before the softmax (a temperature's inverse).
    pub scale: f32,
}

impl PartialEq for ZeroShotNet {
    fn eq(&self, other: &Self) -> bool {
        self.encoder.fingerprint() == other.encoder.fingerprint()
            && self.prototypes == other.prototypes
            && self.scale == other.scale
    }
}

fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

impl ZeroShotNet {
    /// Prototypes of `labels` from the spec's templates and descriptions.
    fn build(
        encoder: Arc<dyn TextEncoder>,
        spec: &ModelSpec,
        labels: &LabelSet,
    ) -> Result<Self, ModelError> {
        if !matches!(labels.task, Task::Binary | Task::Multiclass) {
            return Err(ModelError::Setting(format!(
                "--model zeroshot classifies into one of several labels; it does not fit a \
                 {} task",
                labels.task
            )));
        }
        let z = spec.zero_shot.clone().unwrap_or_default();
        let mut texts: Vec<String> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        for (i, label) in labels.labels.iter().enumerate() {
            for t in &z.templates {
                texts.push(t.replace("{}", label));
                owner.push(i);
            }
            if let Some(d) = z.descriptions.get(label) {
                texts.push(d.clone());
                owner.push(i);
            }
        }
        let dim = encoder.dim();
        let vectors = embed_texts(encoder.as_ref(), &texts)?;
        let k = labels.labels.len();
        let mut proto = vec![0.0f32; k * dim];
        for (v, &i) in vectors.chunks_exact(dim).zip(&owner) {
            let mut v = v.to_vec();
            normalize(&mut v);
            for (p, x) in proto[i * dim..(i + 1) * dim].iter_mut().zip(&v) {
                *p += *x;
            }
        }
        for row in proto.chunks_exact_mut(dim) {
            normalize(row);
        }
        Ok(ZeroShotNet {
            encoder,
            prototypes: Tensor::from_vec(&[k, dim], proto)
                .map_err(|e| ModelError::Incompatible(e.to_string()))?,
            scale: z.scale,
        })
    }

    fn labels(&self) -> usize {
        self.prototypes.shape()[0]
    }

    /// Cosine similarities of `texts` to each label, `[texts.len() · labels]`.
    fn similarities(&self, texts: &[&str]) -> Result<Vec<f32>, ModelError> {
        let vectors = embed_texts(self.encoder.as_ref(), texts)?;
        Ok(self.sims_of(&vectors))
    }

    fn sims_of(&self, vectors: &[f32]) -> Vec<f32> {
        let dim = self.encoder.dim();
        let k = self.labels();
        let mut out = Vec::with_capacity(vectors.len() / dim.max(1) * k);
        for v in vectors.chunks_exact(dim) {
            let mut v = v.to_vec();
            normalize(&mut v);
            for p in self.prototypes.data().chunks_exact(dim) {
                out.push(p.iter().zip(&v).map(|(a, b)| a * b).sum());
            }
        }
        out
    }

    /// The task's outputs of similarities.
    fn outputs_of(&self, sims: &[f32], task: Task) -> Vec<f32> {
        let k = self.labels();
        let width = task_width(task, k);
        let mut out = vec![0.0f32; sims.len() / k.max(1) * width];
        let mut probs = vec![0.0f32; k];
        for (s, o) in sims.chunks_exact(k).zip(out.chunks_exact_mut(width)) {
            softmax(s, self.scale, &mut probs);
            task_outputs(task, &probs, o);
        }
        out
    }
}

fn softmax(sims: &[f32], scale: f32, out: &mut [f32]) {
    let max = sims.iter().copied().fold(f32::MIN, f32::max);
    let mut sum = 0.0;
    for (o, &s) in out.iter_mut().zip(sims) {
        *o = ((s - max) * scale).exp();
        sum += *o;
    }
    out.iter_mut().for_each(|o| *o /= sum);
}

/// The class of each row (binary targets are 0/1 values of the second label).
fn classes(targets: &Targets, rows: usize) -> Vec<usize> {
    match targets {
        Targets::Classes(c) => c[..rows].iter().map(|&c| c as usize).collect(),
        Targets::Values(v) => v[..rows].iter().map(|&x| usize::from(x >= 0.5)).collect(),
    }
}

/// Mean log-loss of the softmax at `scale` over the rows of `sims`.
fn log_loss(sims: &[f32], k: usize, scale: f32, targets: &Targets) -> f64 {
    let rows = sims.len() / k.max(1);
    if rows == 0 {
        return 0.0;
    }
    let cls = classes(targets, rows);
    let mut probs = vec![0.0f32; k];
    let mut total = 0.0f64;
    for (s, &c) in sims.chunks_exact(k).zip(&cls) {
        softmax(s, scale, &mut probs);
        total -= (probs[c.min(k - 1)].max(1e-12) as f64).ln();
    }
    total / rows as f64
}

/// The scale in [1, 200] of least log-loss on the rows (golden-section search on its
/// logarithm); the default with no rows.
fn calibrate(sims: &[f32], k: usize, targets: &Targets) -> f32 {
    if sims.is_empty() {
        return DEFAULT_SCALE;
    }
    let f = |x: f64| log_loss(sims, k, x.exp() as f32, targets);
    let (mut a, mut b) = (0.0f64, 200f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..40 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp() as f32
}

impl Net for ZeroShotNet {
    fn family(&self) -> Family {
        Family::ZeroShot
    }

    fn tensors(&self) -> Vec<(String, &Tensor<f32>)> {
        vec![("zeroshot.prototypes".to_string(), &self.prototypes)]
    }

    fn shape(
        &self,
        spec: &ModelSpec,
        labels: &LabelSet,
        tokenizer: &KerasTokenizer,
    ) -> Result<NetShape, ModelError> {
        let recorded = spec.encoder.as_ref();
        if recorded.map(|r| (r.sha256.as_str(), r.dim))
            != Some((self.encoder.fingerprint(), self.encoder.dim()))
        {
            return Err(ModelError::Incompatible(
                "the spec does not record this encoder".to_string(),
            ));
        }
        let k = self.labels();
        if k != labels.labels.len() || self.prototypes.shape()[1] != self.encoder.dim() {
            return Err(ModelError::Incompatible(format!(
                "{k} prototypes of {} values for {} labels and an encoder of {}",
                self.prototypes.shape()[1],
                labels.labels.len(),
                self.encoder.dim()
            )));
        }
        Ok(NetShape {
            rows: tokenizer.vocab_size(),
            outputs: task_width(labels.task, k),
        })
    }

    fn reads_raw_text(&self) -> bool {
        true
    }

    fn encode_into(
        &self,
        _tokenizer: &KerasTokenizer,
        _pad: &PadSpec,
        text: &str,
        out: &mut Vec<u32>,
    ) {
        self.encoder.token_ids(text, out)
    }

    fn encode_tokens_into(
        &self,
        _tokenizer: &KerasTokenizer,
        _pad: &PadSpec,
        tokens: &[&str],
        out: &mut Vec<u32>,
    ) {
        self.encoder.token_ids(&tokens.join(" "), out)
    }

    fn scratch(&self) -> Scratch {
        Box::new(())
    }

    fn outputs(
        &self,
        inputs: &[&[u32]],
        labels: &LabelSet,
        _pad: &PadSpec,
        _scratch: &mut Scratch,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let k = self.labels();
        let width = task_width(labels.task, k);
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].len()));
        let mut probs = vec![0.0f32; k];
        for batch in order.chunks(BATCH) {
            let block: Vec<&[u32]> = batch.iter().map(|&i| inputs[i]).collect();
            let vectors = self.encoder.embed_ids(&block)?;
            let sims = self.sims_of(&vectors);
            for (&i, s) in batch.iter().zip(sims.chunks_exact(k)) {
                softmax(s, self.scale, &mut probs);
                task_outputs(labels.task, &probs, &mut out[i * width..(i + 1) * width]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_distinct_and_at_least_two() {
        let l = zero_shot_labels(&["sport".into(), "business".into(), "sport".into()]).unwrap();
        assert_eq!(l.labels, vec!["business", "sport"]);
        assert_eq!(l.task, Task::Binary);
        let l = zero_shot_labels(&["c".into(), "a".into(), "b".into()]).unwrap();
        assert_eq!(l.task, Task::Multiclass);
        assert!(zero_shot_labels(&["a".into(), " ".into()]).is_err());
    }

    #[test]
    fn calibration_finds_the_scale_of_least_log_loss() {
        // Rows whose true label is the most similar one 80 % of the time: the best scale is
        // finite, and the loss there is below the default's and the extremes'.
        let mut sims = Vec::new();
        let mut cls = Vec::new();
        for i in 0..50u32 {
            let right = i % 5 != 0;
            sims.extend_from_slice(if right { &[0.3f32, 0.2] } else { &[0.2, 0.3] });
            cls.push(0);
        }
        let t = Targets::Classes(cls);
        let s = calibrate(&sims, 2, &t);
        let at = |x: f32| log_loss(&sims, 2, x, &t);
        // The optimum of 0.8·log σ(0.1 s) + 0.2·log σ(-0.1 s) is s = 10·ln 4.
        assert!((s - 10.0 * 4f32.ln()).abs() < 0.05, "{s}");
        assert!(at(s) < at(1.0) && at(s) < at(200.0) && at(s) <= at(DEFAULT_SCALE));
    }

    #[test]
    fn descriptions_read_label_colon_text() {
        let dir = std::env::temp_dir().join(format!("fw-zs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("d.txt");
        std::fs::write(
            &p,
            "# comment\nsport: games: and matches\n\nbusiness: money\n",
        )
        .unwrap();
        let d = read_descriptions(&p).unwrap();
        assert_eq!(d["sport"], "games: and matches");
        assert_eq!(d["business"], "money");
        std::fs::write(&p, "no colon here\n").unwrap();
        let err = read_descriptions(&p).unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
