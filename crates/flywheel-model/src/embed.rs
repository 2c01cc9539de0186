//! Pretrained sentence encoders as the `encoder` family ([`crate::families::encoder`]) reads
//! them: the [`TextEncoder`] trait (a `flywheel-encoder` model with the `encoder` feature, or a
//! test's stand-in), the process-wide registry of loaded encoders, and the on-disk cache of
//! their vectors.
//!
//! The encoder itself is not stored in the model file: the spec records its directory and
//! fingerprint ([`crate::EncoderSpec`]), and loading refuses an encoder whose files differ.
//! Training embeds each text once and keeps the vectors on disk ([`EmbeddingCache`], keyed by
//! SHA-256 of the encoder's fingerprint and the text), so retraining and autotune trials on the
//! same data do not encode again.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use flywheel_nn::Bert;

use crate::spec::EncoderSpec;
use crate::ModelError;

/// Texts embedded together in one forward pass of the encoder.
pub const BATCH: usize = 32;

/// A sentence encoder as the `encoder` family uses it: text → word-piece ids → one vector.
pub trait TextEncoder: Send + Sync + std::fmt::Debug {
    /// Length of a vector.
    fn dim(&self) -> usize;
    /// Lower-case hex SHA-256 of the files that define the encoder's output.
    fn fingerprint(&self) -> &str;
    /// The model directory it was loaded from.
    fn dir(&self) -> &Path;
    /// Appends the ids the encoder reads for `text` (truncated to its longest input). A text
    /// its tokenizer cannot read appends nothing and embeds as the zero vector.
    fn token_ids(&self, text: &str, out: &mut Vec<u32>);
    /// Vectors of one batch of id sequences, on the calling thread: `[seqs.len() · dim]`.
    fn embed_ids(&self, seqs: &[&[u32]]) -> Result<Vec<f32>, ModelError>;
    /// Where vectors computed for training are kept (`None`: not kept).
    fn cache_dir(&self) -> Option<PathBuf>;
    /// The encoder as a BERT our engine trains (mean pooling, exact GELU), with its weights.
    fn trainable(&self) -> Result<Bert<f32>, ModelError> {
        Err(ModelError::Encoder(format!(
            "the encoder in {} cannot be fine-tuned",
            self.dir().display()
        )))
    }
    /// This encoder with the weights of `bert` (from [`TextEncoder::trainable`], trained).
    fn tuned(&self, bert: &Bert<f32>) -> Result<Arc<dyn TextEncoder>, ModelError> {
        let _ = bert;
        Err(ModelError::Encoder(format!(
            "the encoder in {} cannot be fine-tuned",
            self.dir().display()
        )))
    }
}

/// Vectors of `texts` in order, `[texts.len() · dim]`, on the current rayon pool: each
/// distinct input is embedded once, sorted by length so a batch carries little padding, and
/// batches run in parallel.
pub fn embed_texts<S: AsRef<str> + Sync>(
    encoder: &dyn TextEncoder,
    texts: &[S],
) -> Result<Vec<f32>, ModelError> {
    let ids: Vec<Vec<u32>> = texts
        .par_iter()
        .map(|t| {
            let mut v = Vec::new();
            encoder.token_ids(t.as_ref(), &mut v);
            v
        })
        .collect();
    let mut first: HashMap<&[u32], usize> = HashMap::new();
    let slot: Vec<usize> = ids
        .iter()
        .map(|q| {
            let next = first.len();
            *first.entry(q.as_slice()).or_insert(next)
        })
        .collect();
    let mut unique: Vec<&[u32]> = vec![&[]; first.len()];
    for (q, &u) in &first {
        unique[u] = q;
    }
    let dim = encoder.dim();
    let mut order: Vec<usize> = (0..unique.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(unique[i].len()), i));
    let done: Vec<Vec<f32>> = order
        .par_chunks(BATCH)
        .map(|batch| {
            let seqs: Vec<&[u32]> = batch.iter().map(|&i| unique[i]).collect();
            encoder.embed_ids(&seqs)
        })
        .collect::<Result<_, _>>()?;
    let mut vectors = vec![0.0f32; unique.len() * dim];
    for (batch, v) in order.chunks(BATCH).zip(done) {
        for (&i, v) in batch.iter().zip(v.chunks_exact(dim)) {
            vectors[i * dim..(i + 1) * dim].copy_from_slice(v);
        }
    }
    let mut out = vec![0.0f32; ids.len() * dim];
    for (row, &u) in out.chunks_exact_mut(dim).zip(&slot) {
        row.copy_from_slice(&vectors[u * dim..(u + 1) * dim]);
    }
    Ok(out)
}

/// Encoders loaded in this process, by directory: a model loaded twice (champion and
/// challenger, a hot swap) shares one copy of the weights.
static LOADED: Mutex<Vec<(PathBuf, Weak<dyn TextEncoder>)>> = Mutex::new(Vec::new());

/// The registry key of an encoder directory: its canonical path when it exists.
pub fn key_of(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Makes [`load_encoder`] return `encoder` for `dir` while it is alive (tests, and encoders
/// built in the program).
pub fn register_encoder(dir: &Path, encoder: &Arc<dyn TextEncoder>) {
    let key = key_of(dir);
    if let Ok(mut loaded) = LOADED.lock() {
        loaded.retain(|(d, e)| e.strong_count() > 0 && *d != key);
        loaded.push((key, Arc::downgrade(encoder)));
    }
}

/// The encoder in `dir`: one already loaded in this process, else loaded from its files.
pub fn load_encoder(dir: &Path) -> Result<Arc<dyn TextEncoder>, ModelError> {
    let key = key_of(dir);
    if let Ok(loaded) = LOADED.lock() {
        if let Some(e) = loaded
            .iter()
            .filter(|(d, _)| *d == key)
            .find_map(|(_, e)| e.upgrade())
        {
            return Ok(e);
        }
    }
    let encoder = load_from_files(&key)?;
    register_encoder(&key, &encoder);
    Ok(encoder)
}

#[cfg(feature = "encoder")]
fn load_from_files(dir: &Path) -> Result<Arc<dyn TextEncoder>, ModelError> {
    let encoder = flywheel_encoder::Encoder::load(dir)
        .map_err(|e| ModelError::Encoder(format!("{}: {e}", dir.display())))?;
    Ok(Arc::new(Candle(encoder)))
}

#[cfg(not(feature = "encoder"))]
fn load_from_files(dir: &Path) -> Result<Arc<dyn TextEncoder>, ModelError> {
    Err(ModelError::Encoder(format!(
        "{}: this flywheel was built without pretrained encoders (cargo feature `encoder`)",
        dir.display()
    )))
}

/// The default place of an encoder fetched by name (`flywheel encoders fetch NAME`).
#[cfg(feature = "encoder")]
fn fetched_dir(name: &str) -> Option<PathBuf> {
    Some(flywheel_encoder::fetch::default_dir(name))
}

#[cfg(not(feature = "encoder"))]
fn fetched_dir(_name: &str) -> Option<PathBuf> {
    None
}

/// The encoder a model was trained with: from the recorded directory, or, when that is gone
/// (the model moved to another machine), from where `flywheel encoders fetch` puts an encoder
/// of the same name. Refuses an encoder whose fingerprint differs from the recorded one.
pub fn resolve_encoder(spec: &EncoderSpec) -> Result<Arc<dyn TextEncoder>, ModelError> {
    let recorded = PathBuf::from(&spec.dir);
    let dir = match recorded.exists() {
        true => recorded.clone(),
        false => recorded
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(fetched_dir)
            .filter(|d| d.exists())
            .ok_or_else(|| {
                ModelError::Encoder(format!(
                    "the model needs the encoder in {}, which is not there; copy it there or \
                     fetch it (flywheel encoders fetch NAME)",
                    recorded.display()
                ))
            })?,
    };
    let mut encoder = load_encoder(&dir)?;
    if encoder.fingerprint() != spec.sha256 {
        // The files may have changed since this process loaded them: read them again.
        if let Ok(fresh) = load_from_files(&key_of(&dir)) {
            if fresh.fingerprint() == spec.sha256 {
                register_encoder(&dir, &fresh);
            }
            encoder = fresh;
        }
    }
    if encoder.fingerprint() != spec.sha256 {
        return Err(ModelError::Encoder(format!(
            "the encoder in {} (sha256 {}) is not the one the model was trained with \
             (sha256 {}); its embeddings would not mean what the model learned",
            dir.display(),
            encoder.fingerprint(),
            spec.sha256
        )));
    }
    if encoder.dim() != spec.dim {
        return Err(ModelError::Encoder(format!(
            "the encoder in {} gives {} values per text, the model reads {}",
            dir.display(),
            encoder.dim(),
            spec.dim
        )));
    }
    Ok(encoder)
}

/// An encoder that answers from memory for the texts it was given (autotune's trials embed
/// the same texts again and again); other texts go to the encoder it wraps.
#[derive(Debug)]
pub struct Memo {
    inner: Arc<dyn TextEncoder>,
    known: HashMap<Vec<u32>, Vec<f32>>,
}

impl Memo {
    /// Remembers `vectors` (`[inputs.len() · dim]`, from `inner`) of `inputs` (word-piece ids
    /// from [`TextEncoder::token_ids`]).
    pub fn new(inner: Arc<dyn TextEncoder>, inputs: Vec<Vec<u32>>, vectors: &[f32]) -> Self {
        let known = inputs
            .into_iter()
            .zip(vectors.chunks_exact(inner.dim()))
            .map(|(ids, v)| (ids, v.to_vec()))
            .collect();
        Memo { inner, known }
    }

    /// The wrapped encoder.
    pub fn inner(&self) -> &Arc<dyn TextEncoder> {
        &self.inner
    }
}

impl TextEncoder for Memo {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn fingerprint(&self) -> &str {
        self.inner.fingerprint()
    }
    fn dir(&self) -> &Path {
        self.inner.dir()
    }
    fn token_ids(&self, text: &str, out: &mut Vec<u32>) {
        self.inner.token_ids(text, out)
    }
    fn embed_ids(&self, seqs: &[&[u32]]) -> Result<Vec<f32>, ModelError> {
        let dim = self.dim();
        let missing: Vec<&[u32]> = seqs
            .iter()
            .copied()
            .filter(|q| !self.known.contains_key(*q))
            .collect();
        let fresh = match missing.is_empty() {
            true => Vec::new(),
            false => self.inner.embed_ids(&missing)?,
        };
        let mut fresh = fresh.chunks_exact(dim);
        let mut out = Vec::with_capacity(seqs.len() * dim);
        for q in seqs {
            match self.known.get(*q) {
                Some(v) => out.extend_from_slice(v),
                None => out.extend_from_slice(fresh.next().unwrap_or(&[])),
            }
        }
        out.resize(seqs.len() * dim, 0.0);
        Ok(out)
    }
    fn cache_dir(&self) -> Option<PathBuf> {
        None
    }
}

/// Vectors of `texts` through `encoder`'s on-disk cache when it has one.
pub fn embed_cached<S: AsRef<str> + Sync>(
    encoder: &dyn TextEncoder,
    texts: &[S],
) -> Result<Vec<f32>, ModelError> {
    match encoder.cache_dir() {
        Some(dir) => EmbeddingCache::new(dir, encoder)
            .embed(encoder, texts)
            .map(|(v, _)| v),
        None => embed_texts(encoder, texts),
    }
}

/// The candle encoder of `flywheel-encoder`.
#[cfg(feature = "encoder")]
#[derive(Debug)]
struct Candle(flywheel_encoder::Encoder);

#[cfg(feature = "encoder")]
impl TextEncoder for Candle {
    fn dim(&self) -> usize {
        self.0.dim()
    }

    fn fingerprint(&self) -> &str {
        self.0.sha256()
    }

    fn dir(&self) -> &Path {
        self.0.dir()
    }

    fn token_ids(&self, text: &str, out: &mut Vec<u32>) {
        if let Ok(ids) = self.0.token_ids(text) {
            out.extend(ids);
        }
    }

    fn embed_ids(&self, seqs: &[&[u32]]) -> Result<Vec<f32>, ModelError> {
        let vectors = self
            .0
            .encode_ids(seqs)
            .map_err(|e| ModelError::Encoder(e.to_string()))?;
        Ok(vectors.concat())
    }

    fn cache_dir(&self) -> Option<PathBuf> {
        if self.0.is_tuned() {
            return None;
        }
        match std::env::var("FLYWHEEL_EMBEDDING_CACHE") {
            Ok(v) if v == "off" => None,
            Ok(v) if !v.is_empty() => Some(PathBuf::from(v)),
            _ => Some(flywheel_encoder::fetch::home().join("embeddings")),
        }
        .map(|d| d.join(&self.fingerprint()[..16]))
    }

    fn trainable(&self) -> Result<Bert<f32>, ModelError> {
        let err = |e: flywheel_encoder::EncoderError| ModelError::Encoder(e.to_string());
        if !self.0.mean_pooling() {
            return Err(ModelError::Encoder(format!(
                "{}: fine-tuning supports mean pooling, this encoder pools the [CLS] piece",
                self.dir().display()
            )));
        }
        let s = self.0.shape().map_err(err)?;
        let mut bert = Bert::zeros(flywheel_nn::BertConfig {
            vocab: s.vocab,
            hidden: s.hidden,
            layers: s.layers,
            heads: s.heads,
            intermediate: s.intermediate,
            max_positions: s.max_positions,
            type_vocab: s.type_vocab,
            eps: s.eps,
            hidden_dropout: s.hidden_dropout,
            attention_dropout: s.attention_dropout,
        })
        .map_err(|e| ModelError::Encoder(e.to_string()))?;
        let weights = self.0.weights().map_err(err)?;
        let mut seen = HashSet::new();
        for w in weights {
            match bert.param(&w.name) {
                Some(p) if p.shape == w.shape => {}
                Some(p) => {
                    return Err(ModelError::Encoder(format!(
                        "{}: {} has shape {:?}, the configuration says {:?}",
                        self.dir().display(),
                        w.name,
                        w.shape,
                        p.shape
                    )))
                }
                None => {
                    return Err(ModelError::Encoder(format!(
                        "{}: fine-tuning does not know the tensor {}",
                        self.dir().display(),
                        w.name
                    )))
                }
            }
            bert.set(&w.name, w.values.into_iter())
                .map_err(|e| ModelError::Encoder(e.to_string()))?;
            seen.insert(w.name);
        }
        if let Some(p) = bert.params().iter().find(|p| !seen.contains(&p.name)) {
            return Err(ModelError::Encoder(format!(
                "{}: the weights lack {}",
                self.dir().display(),
                p.name
            )));
        }
        Ok(bert)
    }

    fn tuned(&self, bert: &Bert<f32>) -> Result<Arc<dyn TextEncoder>, ModelError> {
        let weights: Vec<flywheel_encoder::NamedTensor> = bert
            .params()
            .iter()
            .map(|p| flywheel_encoder::NamedTensor {
                name: p.name.clone(),
                shape: p.shape.clone(),
                values: bert.weights[p.range()].to_vec(),
            })
            .collect();
        let tuned = self
            .0
            .with_weights(&weights)
            .map_err(|e| ModelError::Encoder(e.to_string()))?;
        Ok(Arc::new(Candle(tuned)))
    }
}

/// Vectors kept on disk for one encoder: append-only segment files, each written whole to a
/// temporary name and renamed, so a crash or a second process never leaves a torn entry.
///
/// A segment is `FWEMB1\0\0`, `dim` and the entry count (`u32` little-endian), then entries of
/// a 32-byte key (SHA-256 of the encoder's fingerprint, a zero byte and the text) and `dim`
/// `f32` values. Files that do not parse are skipped.
#[derive(Debug)]
pub struct EmbeddingCache {
    dir: PathBuf,
    dim: usize,
    fingerprint: String,
}

const MAGIC: &[u8; 8] = b"FWEMB1\0\0";

/// What [`EmbeddingCache::embed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Texts whose vector was on disk.
    pub hits: usize,
    /// Texts that were encoded (and then stored).
    pub encoded: usize,
}

impl EmbeddingCache {
    /// The cache of `encoder` in `dir`.
    pub fn new(dir: PathBuf, encoder: &dyn TextEncoder) -> Self {
        EmbeddingCache {
            dir,
            dim: encoder.dim(),
            fingerprint: encoder.fingerprint().to_string(),
        }
    }

    /// The key of a text.
    pub fn key(&self, text: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.fingerprint.as_bytes());
        h.update([0u8]);
        h.update(text.as_bytes());
        h.finalize().into()
    }

    /// Vectors of the keys in `wanted` found on disk.
    fn read(&self, wanted: &HashSet<[u8; 32]>) -> HashMap<[u8; 32], Vec<f32>> {
        let mut found = HashMap::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return found;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "emb"))
            .collect();
        files.sort();
        for path in files {
            // A segment that does not parse (another program's file, a disk error) is skipped:
            // its texts are encoded again.
            let _ = self.read_segment(&path, wanted, &mut found);
        }
        found
    }

    fn read_segment(
        &self,
        path: &Path,
        wanted: &HashSet<[u8; 32]>,
        found: &mut HashMap<[u8; 32], Vec<f32>>,
    ) -> std::io::Result<()> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let mut r = BufReader::new(file);
        let mut head = [0u8; 16];
        r.read_exact(&mut head)?;
        let dim = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        let count = u32::from_le_bytes([head[12], head[13], head[14], head[15]]) as u64;
        let entry = 32 + 4 * dim as u64;
        if &head[..8] != MAGIC || dim != self.dim || len != 16 + count * entry {
            return Err(std::io::Error::other("not a segment of this cache"));
        }
        let mut key = [0u8; 32];
        let mut raw = vec![0u8; 4 * dim];
        for _ in 0..count {
            r.read_exact(&mut key)?;
            r.read_exact(&mut raw)?;
            if wanted.contains(&key) && !found.contains_key(&key) {
                let v = raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                found.insert(key, v);
            }
        }
        Ok(())
    }

    /// Writes one segment of `(key, vector)` entries.
    fn write(&self, entries: &[([u8; 32], &[f32])]) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("{stamp:032}-{}", std::process::id());
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut bytes = Vec::with_capacity(16 + entries.len() * (32 + 4 * self.dim));
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(self.dim as u32).to_le_bytes());
        bytes.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (key, v) in entries {
            bytes.extend_from_slice(key);
            for x in v.iter() {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.dir.join(format!("{name}.emb")))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Vectors of `texts` (`[texts.len() · dim]`): those on disk are read, the others encoded
    /// on the current rayon pool and stored. A cache that cannot be written only costs time.
    pub fn embed<S: AsRef<str> + Sync>(
        &self,
        encoder: &dyn TextEncoder,
        texts: &[S],
    ) -> Result<(Vec<f32>, CacheStats), ModelError> {
        let dim = self.dim;
        let keys: Vec<[u8; 32]> = texts.par_iter().map(|t| self.key(t.as_ref())).collect();
        let wanted: HashSet<[u8; 32]> = keys.iter().copied().collect();
        let found = self.read(&wanted);
        let mut missing: Vec<usize> = Vec::new();
        let mut seen = HashSet::new();
        for (i, k) in keys.iter().enumerate() {
            if !found.contains_key(k) && seen.insert(*k) {
                missing.push(i);
            }
        }
        let new_texts: Vec<&str> = missing.iter().map(|&i| texts[i].as_ref()).collect();
        let fresh = embed_texts(encoder, &new_texts)?;
        let entries: Vec<([u8; 32], &[f32])> = missing
            .iter()
            .zip(fresh.chunks_exact(dim))
            .map(|(&i, v)| (keys[i], v))
            .collect();
        // Best effort: a read-only or full disk only means encoding again next time.
        let _ = self.write(&entries);
        let computed: HashMap<[u8; 32], &[f32]> = entries.iter().copied().collect();
        let mut out = vec![0.0f32; texts.len() * dim];
        let mut hits = 0;
        for (i, k) in keys.iter().enumerate() {
            let v: &[f32] = match (found.get(k), computed.get(k)) {
                (Some(v), _) => {
                    hits += 1;
                    v
                }
                (None, Some(v)) => v,
                (None, None) => continue,
            };
            out[i * dim..(i + 1) * dim].copy_from_slice(v);
        }
        let stats = CacheStats {
            hits,
            encoded: missing.len(),
        };
        Ok((out, stats))
    }
}
