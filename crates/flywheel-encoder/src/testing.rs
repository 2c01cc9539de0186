//! A tiny random BERT model directory, written in place, for tests and demos that need an
//! encoder without downloading one: 2 layers, width 16, a 18-piece vocabulary with a few
//! English words and Chinese characters. Its vectors mean nothing, but they are a real BERT's.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::Tokenizer;

use crate::{EncoderError, Result};

/// Hidden width.
pub const H: usize = 16;
/// Attention heads.
pub const HEADS: usize = 2;
/// Width of the feed-forward layer.
pub const INTER: usize = 24;
/// Transformer layers.
pub const LAYERS: usize = 2;
/// Position embeddings (longest input).
pub const POSITIONS: usize = 32;
/// The words of the vocabulary besides the special tokens.
pub const WORDS: [&str; 14] = [
    "a", "happy", "sad", "day", "film", "the", "was", "great", "awful", "今", "天", "好", "##s",
    "!",
];

/// A deterministic pseudo-random number in [-scale, scale].
fn noise(state: &mut u64, scale: f32) -> f32 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (((*state >> 33) as f64 / (1u64 << 31) as f64) as f32 * 2.0 - 1.0) * scale
}

/// The tiny model's word pieces: the special tokens, then [`WORDS`].
pub fn vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(WORDS.iter().map(|s| s.to_string()));
    v
}

/// Writes a tiny BERT model directory into `dir` (random weights from `seed`, a word-piece
/// tokenizer, sentence-transformers' pooling files with `max_seq_length` 12).
pub fn write_tiny_bert(dir: &Path, seed: u64) -> Result<()> {
    let vocab = vocab();
    let config = serde_json::json!({
        "architectures": ["BertModel"], "model_type": "bert",
        "vocab_size": vocab.len(), "hidden_size": H, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "intermediate_size": INTER, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": POSITIONS, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0
    });
    write(&dir.join("config.json"), config.to_string())?;
    write(
        &dir.join("sentence_bert_config.json"),
        r#"{"max_seq_length": 12, "do_lower_case": false}"#,
    )?;
    let pooling = dir.join("1_Pooling");
    std::fs::create_dir_all(&pooling).map_err(|source| EncoderError::Io {
        path: pooling.clone(),
        source,
    })?;
    write(
        &pooling.join("config.json"),
        r#"{"word_embedding_dimension": 16, "pooling_mode_mean_tokens": true}"#,
    )?;
    write(
        &dir.join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
            {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
    )?;

    let vocab_path = dir.join("vocab.txt");
    write(&vocab_path, vocab.join("\n") + "\n")?;
    let vocab_file = vocab_path
        .to_str()
        .ok_or_else(|| tokenizer_error("the directory's path is not UTF-8"))?;
    let model = WordPiece::from_file(vocab_file)
        .unk_token("[UNK]".into())
        .build()
        .map_err(tokenizer_error)?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
        .map_err(tokenizer_error)?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), 3),
        ("[CLS]".into(), 2),
    )));
    tokenizer
        .save(dir.join("tokenizer.json"), false)
        .map_err(tokenizer_error)?;

    let mut state = seed;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut add = |name: String, shape: &[usize], base: f32, scale: f32, state: &mut u64| {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| base + noise(state, scale)).collect();
        Tensor::from_vec(data, shape, &Device::Cpu).map(|t| {
            tensors.insert(name, t);
        })
    };
    let v = vocab.len();
    add(
        "embeddings.word_embeddings.weight".into(),
        &[v, H],
        0.0,
        0.5,
        &mut state,
    )?;
    add(
        "embeddings.position_embeddings.weight".into(),
        &[POSITIONS, H],
        0.0,
        0.5,
        &mut state,
    )?;
    add(
        "embeddings.token_type_embeddings.weight".into(),
        &[2, H],
        0.0,
        0.5,
        &mut state,
    )?;
    add(
        "embeddings.LayerNorm.weight".into(),
        &[H],
        1.0,
        0.2,
        &mut state,
    )?;
    add(
        "embeddings.LayerNorm.bias".into(),
        &[H],
        0.0,
        0.2,
        &mut state,
    )?;
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        for m in ["query", "key", "value"] {
            add(
                format!("{p}.attention.self.{m}.weight"),
                &[H, H],
                0.0,
                0.4,
                &mut state,
            )?;
            add(
                format!("{p}.attention.self.{m}.bias"),
                &[H],
                0.0,
                0.1,
                &mut state,
            )?;
        }
        add(
            format!("{p}.attention.output.dense.weight"),
            &[H, H],
            0.0,
            0.4,
            &mut state,
        )?;
        add(
            format!("{p}.attention.output.dense.bias"),
            &[H],
            0.0,
            0.1,
            &mut state,
        )?;
        add(
            format!("{p}.attention.output.LayerNorm.weight"),
            &[H],
            1.0,
            0.2,
            &mut state,
        )?;
        add(
            format!("{p}.attention.output.LayerNorm.bias"),
            &[H],
            0.0,
            0.2,
            &mut state,
        )?;
        add(
            format!("{p}.intermediate.dense.weight"),
            &[INTER, H],
            0.0,
            0.4,
            &mut state,
        )?;
        add(
            format!("{p}.intermediate.dense.bias"),
            &[INTER],
            0.0,
            0.1,
            &mut state,
        )?;
        add(
            format!("{p}.output.dense.weight"),
            &[H, INTER],
            0.0,
            0.4,
            &mut state,
        )?;
        add(format!("{p}.output.dense.bias"), &[H], 0.0, 0.1, &mut state)?;
        add(
            format!("{p}.output.LayerNorm.weight"),
            &[H],
            1.0,
            0.2,
            &mut state,
        )?;
        add(
            format!("{p}.output.LayerNorm.bias"),
            &[H],
            0.0,
            0.2,
            &mut state,
        )?;
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    Ok(())
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, contents).map_err(|source| EncoderError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn tokenizer_error(e: impl std::fmt::Display) -> EncoderError {
    EncoderError::Tokenizer(e.to_string())
}
