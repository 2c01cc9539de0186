//! The model file: safetensors (readable from Python) whose metadata key `flywheel` holds one
//! JSON document — format version, spec, tokenizer state, labels, training history, metrics,
//! SHA-256 of the training data and of the tensors, creation time, program version.
//!
//! Writing goes to a temporary file that is renamed into place, so a crash never leaves a
//! half-written model. Loading checks the container, the format tag and version, every tensor's
//! name, type and shape, and the tensors' checksum, so a truncated, edited or foreign file is
//! rejected with a clear message.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use flywheel_nn::Tensor;
use flywheel_text::{KerasTokenizer, TokenizerState};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::families::{self, ReadContext, TensorFile};
use crate::network::{self, Network, RawTensor};
use crate::outcome::{EpochRecord, TrainOutcome};
use crate::pipeline::Pipeline;
use crate::report::Report;
use crate::spec::{ModelSpec, TrainConfig};
use crate::task::{LabelSet, Task};
use crate::ModelError;

/// The format tag in every model file.
pub const FORMAT: &str = "flywheel.model";
/// The current format version; files with a newer one are refused.
pub const FORMAT_VERSION: u32 = 1;
const META_KEY: &str = "flywheel";

/// How the model was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// The training settings.
    pub config: TrainConfig,
    /// One row per epoch.
    pub history: Vec<EpochRecord>,
    /// Epoch whose weights were kept, when early stopping restored the best one.
    pub best_epoch: Option<usize>,
    /// Whether early stopping ended training.
    pub stopped_early: bool,
    /// The training data file's name.
    pub data_file: String,
    /// SHA-256 of the training data file's bytes.
    pub data_sha256: String,
    /// Rows trained on.
    pub train_rows: usize,
    /// Rows used for validation.
    pub validation_rows: usize,
}

/// The origin of a model retrained from the registry: its parent and the data it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// Registry name of the model.
    pub model: String,
    /// The champion version it was retrained from.
    pub parent_version: i64,
    /// SHA-256 of the base data (recorded when the parent's lineage was pushed).
    pub base_sha256: String,
    /// Feedback rows trained on (after the held-back slice was set aside).
    pub feedback_rows: u64,
    /// Highest feedback id considered.
    pub feedback_upto: i64,
}

/// Everything in a model file besides the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactMeta {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version.
    pub format_version: u32,
    /// Version of the program that wrote the file.
    pub flywheel_version: String,
    /// Creation time, RFC 3339 UTC (from `SOURCE_DATE_EPOCH` when set, for reproducible files).
    pub created_at: String,
    /// The network and preprocessing settings.
    pub spec: ModelSpec,
    /// The task.
    pub task: Task,
    /// Label names in output order.
    pub labels: Vec<String>,
    /// Separator of several labels in one field (multi-label).
    pub label_sep: String,
    /// The fitted tokenizer.
    pub tokenizer: TokenizerState,
    /// Training details and history.
    pub training: Option<TrainingInfo>,
    /// Metrics on the validation rows at the end of training.
    pub validation_metrics: Option<Report>,
    /// Version this model was derived from, if any.
    pub parent: Option<String>,
    /// Multi-label decision threshold tuned on validation rows (absent: 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// Training rows per class (hierarchical softmax rebuilds its tree from them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_counts: Vec<u64>,
    /// Where a retrained model came from (absent for a model trained from a file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Lineage>,
    /// The sketch of the training data that the server's drift monitor compares traffic with
    /// (absent in files written before it existed, or made without data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<crate::drift::DriftProfile>,
    /// SHA-256 over this metadata (canonical JSON, with this field empty) and the tensors'
    /// names, shapes and bytes: any edit of the file is detected.
    pub sha256: String,
}

/// A model with its metadata: what is saved and loaded.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Metadata.
    pub meta: ArtifactMeta,
    /// The model.
    pub pipeline: Pipeline,
}

impl Artifact {
    /// Wraps a training outcome.
    pub fn from_training(
        outcome: TrainOutcome,
        config: TrainConfig,
        data_file: &str,
        data_sha256: &str,
    ) -> Self {
        let p = &outcome.pipeline;
        let meta = ArtifactMeta {
            format: FORMAT.to_string(),
            format_version: FORMAT_VERSION,
            flywheel_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at: now_rfc3339(),
            spec: p.spec.clone(),
            task: p.labels.task,
            labels: p.labels.labels.clone(),
            label_sep: p.labels.label_sep.clone(),
            tokenizer: p.tokenizer().state(),
            training: Some(TrainingInfo {
                config,
                history: outcome.history,
                best_epoch: outcome.best_epoch,
                stopped_early: outcome.stopped_early,
                data_file: data_file.to_string(),
                data_sha256: data_sha256.to_string(),
                train_rows: outcome.train_rows,
                validation_rows: outcome.val_rows,
            }),
            validation_metrics: outcome.validation,
            parent: None,
            class_counts: outcome.class_counts.clone(),
            lineage: None,
            drift: outcome.drift,
            threshold: (p.labels.task == Task::Multilabel && p.labels.threshold != 0.5)
                .then_some(p.labels.threshold),
            sha256: String::new(),
        };
        Artifact {
            meta,
            pipeline: outcome.pipeline,
        }
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let buffers = raw_tensors(self.pipeline.network());
        let mut meta = self.meta.clone();
        meta.sha256 = String::new();
        let canonical = canonical_json(&meta)?;
        meta.sha256 = file_digest(
            &canonical,
            buffers
                .iter()
                .map(|r| (r.name.as_str(), r.shape.as_slice(), r.bytes.clone())),
        );
        let json = serde_json::to_string(&meta)
            .map_err(|e| ModelError::Encode(format!("cannot encode model metadata: {e}")))?;
        let views = buffers
            .iter()
            .map(|r| {
                TensorView::new(dtype_of(r.dtype), r.shape.clone(), &r.bytes)
                    .map(|v| (r.name.clone(), v))
                    .map_err(|e| ModelError::Encode(format!("tensor {}: {e}", r.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let info = HashMap::from([(META_KEY.to_string(), json)]);
        safetensors::tensor::serialize(views, Some(info))
            .map_err(|e| ModelError::Encode(format!("cannot encode model: {e}")))
    }

    /// Writes the model atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let bytes = self.to_bytes()?;
        let io = |source| ModelError::Io {
            path: path.display().to_string(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_string());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    /// Reads and validates a model file.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses and validates a model file's bytes (`name` is used in messages).
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self, ModelError> {
        let bad = |message: String| ModelError::Artifact {
            path: name.to_string(),
            message,
        };
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            bad(format!(
                "not a readable safetensors file ({e}); is it truncated or not a flywheel model?"
            ))
        })?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("unreadable header: {e}")))?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| bad("no flywheel metadata: this is not a flywheel model".to_string()))?;
        let meta: ArtifactMeta = serde_json::from_str(json)
            .map_err(|e| bad(format!("metadata is not valid flywheel JSON: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(format!(
                "format tag is '{}', not '{FORMAT}'",
                meta.format
            )));
        }
        if meta.format_version > FORMAT_VERSION {
            return Err(bad(format!(
                "format version {} is newer than this program supports ({FORMAT_VERSION}); upgrade flywheel",
                meta.format_version
            )));
        }
        families::validate(&meta.spec).map_err(|e| bad(e.to_string()))?;
        let file = File { st: &st, bad: &bad };
        let spec = &meta.spec;
        let labels = LabelSet {
            task: meta.task,
            labels: meta.labels.clone(),
            label_sep: meta.label_sep.clone(),
            threshold: meta.threshold.unwrap_or(0.5),
        };
        if !(labels.threshold > 0.0 && labels.threshold < 1.0) {
            return Err(bad(format!(
                "threshold {} is outside (0, 1)",
                labels.threshold
            )));
        }
        let tokenizer =
            KerasTokenizer::from_state(meta.tokenizer.clone()).map_err(|e| bad(e.to_string()))?;
        let ctx = ReadContext {
            spec,
            task: meta.task,
            outputs: labels.outputs(),
            class_counts: &meta.class_counts,
            tokenizer: &tokenizer,
        };
        let net = families::of(spec.family)
            .read(&file, &ctx)
            .map_err(|e| match e {
                ModelError::Artifact { .. } => e,
                other => bad(other.to_string()),
            })?;
        let names: Vec<String> = raw_tensors(&net).into_iter().map(|r| r.name).collect();
        if st.len() != names.len() {
            let extra: Vec<String> = st
                .names()
                .into_iter()
                .filter(|n| !names.iter().any(|m| m == n))
                .map(str::to_string)
                .collect();
            return Err(bad(format!("unexpected tensors: {}", extra.join(", "))));
        }
        // The digest covers the metadata as its writer canonicalised it: from the typed values
        // (so `f32` fields widen exactly as they did then), keeping only the fields the file
        // holds, so files written before a field was added still verify.
        let stored: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| bad(format!("metadata is not valid JSON: {e}")))?;
        let mut unsigned = meta.clone();
        unsigned.sha256 = String::new();
        let mut typed = serde_json::to_value(&unsigned).map_err(|e| bad(e.to_string()))?;
        keep_fields_of(&mut typed, &stored);
        let canonical = serde_json::to_string(&typed).map_err(|e| bad(e.to_string()))?;
        let digest = file_digest(
            &canonical,
            raw_tensors(&net)
                .iter()
                .map(|r| (r.name.as_str(), r.shape.as_slice(), r.bytes.clone())),
        );
        if digest != meta.sha256 {
            return Err(bad(
                "the contents do not match their checksum: the file was modified or corrupted"
                    .to_string(),
            ));
        }
        let pipeline =
            Pipeline::new(spec.clone(), labels, tokenizer, net).map_err(|e| bad(e.to_string()))?;
        Ok(Artifact { meta, pipeline })
    }
}

/// The tensors of a model file being read, with errors that name the file.
struct File<'a> {
    st: &'a SafeTensors<'a>,
    bad: &'a dyn Fn(String) -> ModelError,
}

impl File<'_> {
    fn view(&self, name: &str) -> Result<TensorView<'_>, ModelError> {
        self.st
            .tensor(name)
            .map_err(|_| (self.bad)(format!("tensor '{name}' is missing")))
    }
}

impl TensorFile for File<'_> {
    fn f32(&self, name: &str, shape: &[usize]) -> Result<Tensor<f32>, ModelError> {
        let view = self.view(name)?;
        if view.dtype() != Dtype::F32 {
            return Err((self.bad)(format!(
                "tensor '{name}' is {:?}, expected F32",
                view.dtype()
            )));
        }
        if view.shape() != shape {
            return Err((self.bad)(format!(
                "tensor '{name}' has shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Tensor::from_vec(shape, data).map_err(|e| (self.bad)(e.to_string()))
    }

    fn u32(&self, name: &str) -> Result<Vec<u32>, ModelError> {
        let view = self.view(name)?;
        if view.dtype() != Dtype::U32 || view.shape().len() != 1 {
            return Err((self.bad)(format!(
                "tensor '{name}' is {:?} {:?}, expected U32 [n]",
                view.dtype(),
                view.shape()
            )));
        }
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn rows(&self, name: &str) -> Result<usize, ModelError> {
        Ok(self.view(name)?.shape().first().copied().unwrap_or(0))
    }
}

/// The tensors of a network as stored.
fn raw_tensors(net: &Network) -> Vec<RawTensor> {
    net.get().raw_tensors()
}

/// The safetensors type of a stored tensor.
fn dtype_of(d: network::Dtype) -> Dtype {
    match d {
        network::Dtype::F32 => Dtype::F32,
        network::Dtype::U32 => Dtype::U32,
    }
}

/// Removes from the objects in `value` the keys that the same objects in `like` lack.
fn keep_fields_of(value: &mut serde_json::Value, like: &serde_json::Value) {
    use serde_json::Value;
    match (value, like) {
        (Value::Object(v), Value::Object(l)) => {
            v.retain(|k, _| l.contains_key(k));
            for (k, child) in v.iter_mut() {
                if let Some(lc) = l.get(k) {
                    keep_fields_of(child, lc);
                }
            }
        }
        (Value::Array(v), Value::Array(l)) => {
            for (child, lc) in v.iter_mut().zip(l) {
                keep_fields_of(child, lc);
            }
        }
        _ => {}
    }
}

/// The metadata as canonical JSON: through `serde_json::Value`, so keys are sorted and numbers
/// are written the same way on save and on load.
fn canonical_json(meta: &ArtifactMeta) -> Result<String, ModelError> {
    serde_json::to_value(meta)
        .and_then(|v| serde_json::to_string(&v))
        .map_err(|e| ModelError::Encode(format!("cannot encode model metadata: {e}")))
}

fn file_digest<'a>(
    canonical_meta: &str,
    tensors: impl Iterator<Item = (&'a str, &'a [usize], Vec<u8>)>,
) -> String {
    let mut h = Sha256::new();
    h.update((canonical_meta.len() as u64).to_le_bytes());
    h.update(canonical_meta.as_bytes());
    for (name, shape, bytes) in tensors {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((shape.len() as u64).to_le_bytes());
        for &d in shape {
            h.update((d as u64).to_le_bytes());
        }
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    hex(&h.finalize())
}

/// Lower-case hex of bytes ([`hex::encode`]; kept for callers of this path).
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// The current time (or `SOURCE_DATE_EPOCH`) as RFC 3339 UTC.
fn now_rfc3339() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    rfc3339(secs)
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian calendar).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_000_000), "2026-11-30T00:53:20Z");
    }
}
