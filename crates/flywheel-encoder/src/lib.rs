//! Pretrained sentence encoders through candle, fully offline: a Hugging Face model directory
//! of the BERT family (`config.json`, `tokenizer.json`, `model.safetensors`; MiniLM, BERT) in,
//! one embedding per text out — mean pooling over the real tokens and L2 normalisation, as
//! sentence-transformers computes them (`1_Pooling/config.json` and `modules.json` are read
//! when present).
//!
//! ```no_run
//! let encoder = flywheel_encoder::Encoder::load("all-minilm-l6-v2".as_ref()).unwrap();
//! let vectors = encoder.encode(&["a happy day", "今天天气很好"], 2).unwrap();
//! assert_eq!(vectors[0].len(), encoder.dim());
//! ```

#![warn(missing_docs)]

pub mod fetch;
pub mod testing;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

/// Texts encoded together in one forward pass.
pub const BATCH: usize = 32;

/// Why an encoder could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// A file of the model directory is missing or unreadable.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file of the model directory is not what a BERT-family model has.
    #[error("{path}: {why}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The tokenizer could not be loaded or failed on a text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// candle failed (weights missing or of the wrong shape, or a computation).
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
    /// The thread pool could not be started.
    #[error("cannot start the encoding threads: {0}")]
    Threads(#[from] rayon::ThreadPoolBuildError),
    /// Fetching a model failed.
    #[error("{0}")]
    Fetch(String),
}

type Result<T> = std::result::Result<T, EncoderError>;

/// How token vectors become one text vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of the real (not padding) tokens' vectors (sentence-transformers' default).
    Mean,
    /// The `[CLS]` token's vector.
    Cls,
}

/// The shape of a BERT encoder, for code that trains it (see [`Encoder::shape`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Word pieces.
    pub vocab: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate: usize,
    /// Position embeddings.
    pub max_positions: usize,
    /// Token types.
    pub type_vocab: usize,
    /// LayerNorm's ε.
    pub eps: f64,
    /// Dropout on hidden states while training.
    pub hidden_dropout: f64,
    /// Dropout on attention probabilities while training.
    pub attention_dropout: f64,
}

/// One weight tensor of an encoder, as `f32` values in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Its name without a model prefix (`encoder.layer.0.attention.self.query.weight`).
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values.
    pub values: Vec<f32>,
}

/// A loaded encoder: the BERT model, its tokenizer and how to pool.
pub struct Encoder {
    model: BertModel,
    config: Config,
    attention_dropout: f64,
    tuned: bool,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    max_len: usize,
    pooling: Pooling,
    normalize: bool,
    dir: PathBuf,
    sha256: String,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("dir", &self.dir)
            .field("dim", &self.dim)
            .field("max_len", &self.max_len)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("sha256", &self.sha256)
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| EncoderError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| EncoderError::Config {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// Lower-case hex SHA-256 of the files that define an encoder's output (weights, config,
/// tokenizer, pooling): what a model trained on its embeddings records and checks.
pub fn fingerprint(dir: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    for name in ["model.safetensors", "config.json", "tokenizer.json"] {
        let bytes = read(&dir.join(name))?;
        hasher.update(name.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    for name in [
        "1_Pooling/config.json",
        "modules.json",
        "sentence_bert_config.json",
    ] {
        if let Ok(bytes) = std::fs::read(dir.join(name)) {
            hasher.update(name.as_bytes());
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

impl Encoder {
    /// Loads a model directory on the CPU.
    pub fn load(dir: &Path) -> Result<Encoder> {
        Encoder::load_on(dir, Device::Cpu)
    }

    /// Loads a model directory on `device` (the CPU, or a GPU with the `cuda` feature).
    pub fn load_on(dir: &Path, device: Device) -> Result<Encoder> {
        let config_path = dir.join("config.json");
        let raw = read_json(&config_path)?;
        let config: Config =
            serde_json::from_value(raw.clone()).map_err(|e| EncoderError::Config {
                path: config_path.clone(),
                why: format!("not a BERT-family config: {e}"),
            })?;
        // sentence-transformers truncates at `max_seq_length` (256 for all-MiniLM-L6-v2),
        // else at the position embeddings' size.
        let st_path = dir.join("sentence_bert_config.json");
        let max_len = if st_path.exists() {
            read_json(&st_path)?["max_seq_length"].as_u64()
        } else {
            None
        }
        .map(|n| n as usize)
        .unwrap_or(config.max_position_embeddings)
        .min(config.max_position_embeddings)
        .max(2);
        let pooling_path = dir.join("1_Pooling/config.json");
        let pooling = if pooling_path.exists() {
            let p = read_json(&pooling_path)?;
            if p["pooling_mode_cls_token"].as_bool() == Some(true) {
                Pooling::Cls
            } else if p["pooling_mode_mean_tokens"].as_bool() == Some(true) {
                Pooling::Mean
            } else {
                return Err(EncoderError::Config {
                    path: pooling_path,
                    why: "only mean or CLS pooling is supported".into(),
                });
            }
        } else {
            Pooling::Mean
        };
        let modules_path = dir.join("modules.json");
        let normalize = if modules_path.exists() {
            read_json(&modules_path)?.as_array().is_some_and(|m| {
                m.iter()
                    .any(|x| x["type"].as_str().is_some_and(|t| t.ends_with("Normalize")))
            })
        } else {
            true
        };
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| EncoderError::Tokenizer(format!("{}: {e}", tokenizer_path.display())))?;
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let weights = dir.join("model.safetensors");
        let bytes = read(&weights)?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)?;
        let model = BertModel::load(vb, &config)?;
        Ok(Encoder {
            model,
            attention_dropout: raw["attention_probs_dropout_prob"].as_f64().unwrap_or(0.1),
            dim: config.hidden_size,
            config,
            tuned: false,
            tokenizer,
            device,
            max_len,
            pooling,
            normalize,
            sha256: fingerprint(dir)?,
            dir: dir.to_path_buf(),
        })
    }

    /// The BERT shape, for training it; refused for an activation other than exact GELU.
    pub fn shape(&self) -> Result<Shape> {
        let c = &self.config;
        if c.hidden_act != candle_transformers::models::bert::HiddenAct::Gelu {
            return Err(EncoderError::Config {
                path: self.dir.join("config.json"),
                why: format!(
                    "fine-tuning supports the exact GELU activation, not {:?}",
                    c.hidden_act
                ),
            });
        }
        Ok(Shape {
            vocab: c.vocab_size,
            hidden: c.hidden_size,
            layers: c.num_hidden_layers,
            heads: c.num_attention_heads,
            intermediate: c.intermediate_size,
            max_positions: c.max_position_embeddings,
            type_vocab: c.type_vocab_size,
            eps: c.layer_norm_eps,
            hidden_dropout: c.hidden_dropout_prob,
            attention_dropout: self.attention_dropout,
        })
    }

    /// The weights of the embeddings and transformer layers as `f32`, read from the model
    /// directory (names without a `bert.` prefix). A fine-tuned encoder reads its base's.
    pub fn weights(&self) -> Result<Vec<NamedTensor>> {
        let path = self.dir.join("model.safetensors");
        let bytes = read(&path)?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
        let prefix = self
            .config
            .model_type
            .as_ref()
            .map(|m| format!("{m}."))
            .unwrap_or_default();
        let mut out = Vec::new();
        for (name, t) in tensors {
            let name = name
                .strip_prefix("bert.")
                .or_else(|| {
                    name.strip_prefix(prefix.as_str())
                        .filter(|_| !prefix.is_empty())
                })
                .unwrap_or(&name)
                .to_string();
            let trained = name.starts_with("embeddings.") || name.starts_with("encoder.");
            if !trained || !t.dtype().is_float() {
                continue;
            }
            let shape = t.dims().to_vec();
            let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            out.push(NamedTensor {
                name,
                shape,
                values,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// This encoder with other weights (a fine-tuned copy): the same tokenizer, pooling and
    /// shape. Its fingerprint is SHA-256 of this one's and of the weights.
    pub fn with_weights(&self, weights: &[NamedTensor]) -> Result<Encoder> {
        let mut map = std::collections::HashMap::new();
        let mut hasher = Sha256::new();
        hasher.update(self.sha256.as_bytes());
        for w in weights {
            hasher.update(w.name.as_bytes());
            for d in &w.shape {
                hasher.update((*d as u64).to_le_bytes());
            }
            for v in &w.values {
                hasher.update(v.to_le_bytes());
            }
            let t = Tensor::from_slice(&w.values, w.shape.as_slice(), &self.device)?;
            map.insert(w.name.clone(), t);
        }
        let vb = VarBuilder::from_tensors(map, DType::F32, &self.device);
        let model = BertModel::load(vb, &self.config)?;
        Ok(Encoder {
            model,
            config: self.config.clone(),
            attention_dropout: self.attention_dropout,
            tuned: true,
            tokenizer: self.tokenizer.clone(),
            device: self.device.clone(),
            dim: self.dim,
            max_len: self.max_len,
            pooling: self.pooling,
            normalize: self.normalize,
            dir: self.dir.clone(),
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Whether its weights are not its directory's ([`Encoder::with_weights`]).
    pub fn is_tuned(&self) -> bool {
        self.tuned
    }

    /// Whether the text vectors are L2-normalised.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// Whether a text's vector is the mean of its word pieces' (else the `[CLS]` piece's).
    pub fn mean_pooling(&self) -> bool {
        self.pooling == Pooling::Mean
    }

    /// Length of an embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Most word pieces (with `[CLS]` and `[SEP]`) read per text; the rest is cut off.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// [`fingerprint`] of the model directory.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The word-piece ids of a text as the model reads them (truncated).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Embeddings of `texts`, in order, computed on `threads` threads: texts are sorted by
    /// length so a batch carries little padding, and batches run in parallel.
    pub fn encode<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        threads: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()?;
        pool.install(|| self.encode_in_pool(texts))
    }

    /// [`Encoder::encode`] on the current rayon pool.
    pub fn encode_in_pool<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<u32>> = texts
            .par_iter()
            .map(|t| self.token_ids(t.as_ref()))
            .collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let batches: Vec<&[usize]> = order.chunks(BATCH).collect();
        let done: Vec<Vec<Vec<f32>>> = batches
            .par_iter()
            .map(|batch| {
                let seqs: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
                self.encode_ids(&seqs)
            })
            .collect::<Result<_>>()?;
        let mut out = vec![Vec::new(); ids.len()];
        for (batch, vectors) in batches.iter().zip(done) {
            for (&i, v) in batch.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Embeddings of one batch of word-piece id sequences (each non-empty).
    pub fn encode_ids(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let width = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
        let n = seqs.len();
        let mut ids = vec![0u32; n * width];
        let mut mask = vec![0f32; n * width];
        for (row, seq) in seqs.iter().enumerate() {
            for (j, &id) in seq.iter().enumerate() {
                ids[row * width + j] = id;
                mask[row * width + j] = 1.0;
            }
        }
        let ids = Tensor::from_vec(ids, (n, width), &self.device)?;
        let types = ids.zeros_like()?;
        let mask = Tensor::from_vec(mask, (n, width), &self.device)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&m)?.sum(1)?;
                let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&counts)?
            }
        };
        let pooled = if self.normalize {
            let norms = pooled
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12, f64::MAX)?;
            pooled.broadcast_div(&norms)?
        } else {
            pooled
        };
        Ok(pooled.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    }
}
