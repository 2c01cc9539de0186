//! Reading labelled examples and texts to classify.
//!
//! Formats: CSV and TSV (RFC 4180 quoting, header row required), JSONL (one
//! object per line) and fastText (`__label__a __label__b text...`). Files are
//! read straight from a buffered reader in one pass, which also computes the
//! SHA-256 of the file's bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::DataError;

/// A file format for labelled data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// Tab-separated values with a header row (quoting allowed).
    Tsv,
    /// One JSON object per line.
    Jsonl,
    /// fastText: `__label__a __label__b text...`, one example per line.
    FastText,
}

impl Format {
    /// The format implied by a file's extension: `.csv`, `.tsv`/`.tab`,
    /// `.jsonl`/`.ndjson`/`.json`, `.txt`/`.ft` (fastText); `None` otherwise.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "tsv" | "tab" => Some(Format::Tsv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "txt" | "ft" => Some(Format::FastText),
            _ => None,
        }
    }

    /// The format's name as accepted by [`FromStr`]: `csv`, `tsv`, `jsonl`, `fasttext`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Jsonl => "jsonl",
            Format::FastText => "fasttext",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "tsv" => Ok(Format::Tsv),
            "jsonl" => Ok(Format::Jsonl),
            "fasttext" => Ok(Format::FastText),
            _ => Err(DataError::BadFormatName {
                name: s.to_string(),
            }),
        }
    }
}

/// How to read a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// The format; `None` means "tell it from the file extension".
    pub format: Option<Format>,
    /// The column (CSV/TSV) or key (JSONL) holding the text.
    pub text_column: String,
    /// The column (CSV/TSV) or key (JSONL) holding the label.
    pub label_column: String,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            format: None,
            text_column: "text".to_string(),
            label_column: "label".to_string(),
        }
    }
}

/// One labelled example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The text.
    pub text: String,
    /// The raw label strings; usually exactly one (fastText and JSONL arrays may give several).
    pub labels: Vec<String>,
    /// The 1-based line number where the record starts in the file.
    pub line: u64,
}

/// A labelled file, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// The file it came from.
    pub source: PathBuf,
    /// The format it was read as.
    pub format: Format,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// The examples, in file order.
    pub records: Vec<Record>,
}

/// Reads a labelled file; the format comes from `opts.format` or the extension.
///
/// Every record must have a non-empty label. The SHA-256 of the file is
/// computed while reading.
pub fn read_labelled(path: &Path, opts: &ReadOptions) -> Result<Dataset, DataError> {
    let format = opts
        .format
        .or_else(|| Format::from_path(path))
        .ok_or_else(|| DataError::UnknownFormat {
            path: path.to_path_buf(),
        })?;
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hashing = HashingReader::new(file);
    let records = parse(&mut hashing, path, format, opts, Mode::Labelled)?;
    // The parsers read to the end; drain anything left so the digest covers every byte.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| DataError::io(path, e))?;
    if records.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            hint: empty_hint(format),
        });
    }
    Ok(Dataset {
        source: path.to_path_buf(),
        format,
        sha256: hex::encode(hashing.hasher.finalize()),
        records,
    })
}

/// Reads labelled records from any reader in the given format; `source` names it in errors.
/// Unlike [`read_labelled`], an empty input is not an error (it gives no records).
pub fn read_labelled_from(
    reader: impl Read,
    format: Format,
    source: &str,
    opts: &ReadOptions,
) -> Result<Vec<Record>, DataError> {
    parse(reader, Path::new(source), format, opts, Mode::Labelled)
}

/// Reads records from any reader one at a time, handing each to `sink` as soon as it is parsed
/// (nothing is held beyond the record at hand), and returns how many there were; an error from
/// `sink` stops the reading and is returned. With `labelled`, every record needs a label (as
/// [`read_labelled_from`]); without, only the text is read (labels are left empty). `source`
/// names the input in errors. An empty input gives no records rather than an error.
pub fn for_each_record(
    reader: impl Read,
    format: Format,
    source: &str,
    opts: &ReadOptions,
    labelled: bool,
    sink: &mut dyn FnMut(Record) -> Result<(), DataError>,
) -> Result<u64, DataError> {
    let mode = if labelled {
        Mode::Labelled
    } else {
        Mode::Texts
    };
    let mut count = 0u64;
    parse_into(reader, Path::new(source), format, opts, mode, &mut |r| {
        count += 1;
        sink(r)
    })?;
    Ok(count)
}

/// Reads texts to classify from a file, or from standard input when `path` is `-`.
///
/// With a known format (given in `opts.format` or implied by the extension) it
/// reads the text column/key (a label is not required; fastText labels are
/// stripped). Standard input and unknown extensions are read as plain text,
/// one text per line, empty lines skipped.
pub fn read_texts(path: &Path, opts: &ReadOptions) -> Result<Vec<String>, DataError> {
    if path == Path::new("-") {
        let stdin = io::stdin();
        return read_texts_from(stdin.lock(), opts.format, opts);
    }
    let format = opts.format.or_else(|| Format::from_path(path));
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    texts_from(file, path, format, opts)
}

/// Reads texts to classify from any reader; `format: None` means plain text,
/// one text per line (empty lines skipped). Errors name the source `<stdin>`.
pub fn read_texts_from(
    reader: impl Read,
    format: Option<Format>,
    opts: &ReadOptions,
) -> Result<Vec<String>, DataError> {
    texts_from(reader, Path::new("<stdin>"), format, opts)
}

fn texts_from(
    reader: impl Read,
    path: &Path,
    format: Option<Format>,
    opts: &ReadOptions,
) -> Result<Vec<String>, DataError> {
    let texts: Vec<String> = match format {
        Some(format) => parse(reader, path, format, opts, Mode::Texts)?
            .into_iter()
            .map(|r| r.text)
            .collect(),
        None => plain_lines(reader, path)?,
    };
    if texts.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            hint: "; give at least one text to classify",
        });
    }
    Ok(texts)
}

fn empty_hint(format: Format) -> &'static str {
    match format {
        Format::Csv | Format::Tsv => " after the header row",
        Format::Jsonl => " (one JSON object per line)",
        Format::FastText => " (one `__label__NAME text` line per example)",
    }
}

/// Whether labels are required (training data) or ignored (texts to classify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Labelled,
    Texts,
}

fn parse(
    reader: impl Read,
    path: &Path,
    format: Format,
    opts: &ReadOptions,
    mode: Mode,
) -> Result<Vec<Record>, DataError> {
    let mut records = Vec::new();
    parse_into(reader, path, format, opts, mode, &mut |r| {
        records.push(r);
        Ok(())
    })?;
    Ok(records)
}

/// A consumer of parsed records; an error from it stops the reading and is returned.
type Sink<'a> = dyn FnMut(Record) -> Result<(), DataError> + 'a;

fn parse_into(
    reader: impl Read,
    path: &Path,
    format: Format,
    opts: &ReadOptions,
    mode: Mode,
    sink: &mut Sink<'_>,
) -> Result<(), DataError> {
    match format {
        Format::Csv => parse_delimited(reader, path, b',', "CSV", opts, mode, sink),
        Format::Tsv => parse_delimited(reader, path, b'\t', "TSV", opts, mode, sink),
        Format::Jsonl => parse_jsonl(BufReader::new(reader), path, opts, mode, sink),
        Format::FastText => parse_fasttext(BufReader::new(reader), path, mode, sink),
    }
}

/// A reader that feeds every byte it returns into a SHA-256.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn parse_delimited(
    reader: impl Read,
    path: &Path,
    delimiter: u8,
    format_name: &'static str,
    opts: &ReadOptions,
    mode: Mode,
    sink: &mut Sink<'_>,
) -> Result<(), DataError> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(LineTracker::new(reader));
    let csv_err = |e: csv::Error, lines: &mut LineTracker<_>| -> DataError {
        let line = e.position().map_or(0, |p| lines.line_at(p.byte()));
        match e.into_kind() {
            csv::ErrorKind::Io(source) => DataError::io(path, source),
            other => DataError::Malformed {
                path: path.to_path_buf(),
                line,
                format: format_name,
                message: format!("{other:?}"),
            },
        }
    };
    let mut record = csv::ByteRecord::new();
    let has_header = match rdr.read_byte_record(&mut record) {
        Ok(more) => more,
        Err(e) => return Err(csv_err(e, rdr.get_mut())),
    };
    if !has_header {
        return Ok(());
    }
    let header_line = rdr
        .get_mut()
        .line_at(record.position().map_or(0, |p| p.byte()));
    let mut header = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        let field = if i == 0 {
            field.strip_prefix(BOM).unwrap_or(field)
        } else {
            field
        };
        let name = std::str::from_utf8(field).map_err(|_| DataError::InvalidUtf8 {
            path: path.to_path_buf(),
            line: header_line,
        })?;
        header.push(name.to_string());
    }
    let find = |wanted: &str, role: &'static str| -> Result<usize, DataError> {
        header
            .iter()
            .position(|h| h == wanted)
            .or_else(|| header.iter().position(|h| h.trim() == wanted.trim()))
            .ok_or_else(|| DataError::MissingColumn {
                path: path.to_path_buf(),
                line: header_line,
                role,
                wanted: wanted.to_string(),
                found: header.clone(),
            })
    };
    let text_idx = find(&opts.text_column, "text")?;
    let label_idx = match mode {
        Mode::Labelled => Some(find(&opts.label_column, "label")?),
        Mode::Texts => None,
    };
    loop {
        match rdr.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_err(e, rdr.get_mut())),
        }
        let line = rdr
            .get_mut()
            .line_at(record.position().map_or(0, |p| p.byte()));
        if record.len() != header.len() {
            return Err(DataError::FieldCount {
                path: path.to_path_buf(),
                line,
                expected: header.len(),
                found: record.len(),
            });
        }
        let text = field_str(&record, text_idx, path, line)?.to_string();
        let labels = match label_idx {
            Some(idx) => {
                let label = field_str(&record, idx, path, line)?;
                if label.trim().is_empty() {
                    return Err(DataError::EmptyLabel {
                        path: path.to_path_buf(),
                        line,
                        column: Some(opts.label_column.clone()),
                    });
                }
                vec![label.to_string()]
            }
            None => Vec::new(),
        };
        sink(Record { text, labels, line })?;
    }
    Ok(())
}

/// A reader that notes where line feeds are, so that a byte offset can be
/// turned into a line number. Offsets must be asked for in increasing order;
/// only the line feeds read ahead of the last offset asked for are kept.
struct LineTracker<R> {
    inner: R,
    pos: u64,
    pending: std::collections::VecDeque<u64>,
    lines_before: u64,
}

impl<R> LineTracker<R> {
    fn new(inner: R) -> Self {
        LineTracker {
            inner,
            pos: 0,
            pending: std::collections::VecDeque::new(),
            lines_before: 0,
        }
    }

    /// The 1-based line number of byte `offset` (a line feed at `offset` itself
    /// counts as before it: the csv parser reports the start of a record after
    /// CR LF at the LF).
    fn line_at(&mut self, offset: u64) -> u64 {
        while self.pending.front().is_some_and(|&p| p <= offset) {
            self.pending.pop_front();
            self.lines_before += 1;
        }
        self.lines_before + 1
    }
}

impl<R: Read> Read for LineTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for (i, &b) in buf[..n].iter().enumerate() {
            if b == b'\n' {
                self.pending.push_back(self.pos + i as u64);
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Field `idx` of a record as UTF-8; the error names the exact line of the bad byte.
fn field_str<'r>(
    record: &'r csv::ByteRecord,
    idx: usize,
    path: &Path,
    line: u64,
) -> Result<&'r str, DataError> {
    let field = record.get(idx).unwrap_or_default();
    std::str::from_utf8(field).map_err(|e| {
        let before: usize = record
            .iter()
            .take(idx)
            .map(|f| f.iter().filter(|&&b| b == b'\n').count())
            .sum();
        let within = field[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        DataError::InvalidUtf8 {
            path: path.to_path_buf(),
            line: line + (before + within) as u64,
        }
    })
}

/// Reads lines (without their `\n` / `\r\n`), checking UTF-8 and dropping a leading BOM.
fn for_each_line(
    mut reader: impl BufRead,
    path: &Path,
    mut f: impl FnMut(u64, &str) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let mut bytes: &[u8] = &buf;
        if let Some(rest) = bytes.strip_suffix(b"\n") {
            bytes = rest;
        }
        if let Some(rest) = bytes.strip_suffix(b"\r") {
            bytes = rest;
        }
        if line_no == 1 {
            bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        }
        let line = std::str::from_utf8(bytes).map_err(|_| DataError::InvalidUtf8 {
            path: path.to_path_buf(),
            line: line_no,
        })?;
        f(line_no, line)?;
    }
}

fn plain_lines(reader: impl Read, path: &Path) -> Result<Vec<String>, DataError> {
    let mut texts = Vec::new();
    for_each_line(BufReader::new(reader), path, |_, line| {
        if !line.trim().is_empty() {
            texts.push(line.to_string());
        }
        Ok(())
    })?;
    Ok(texts)
}

fn parse_fasttext(
    reader: impl BufRead,
    path: &Path,
    mode: Mode,
    sink: &mut Sink<'_>,
) -> Result<(), DataError> {
    for_each_line(reader, path, |line_no, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let mut rest = line.trim_start();
        let mut labels = Vec::new();
        while let Some(after) = rest.strip_prefix("__label__") {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            if end == 0 {
                return Err(DataError::EmptyLabel {
                    path: path.to_path_buf(),
                    line: line_no,
                    column: None,
                });
            }
            labels.push(after[..end].to_string());
            rest = after[end..].trim_start();
        }
        if mode == Mode::Labelled && labels.is_empty() {
            return Err(DataError::NoFastTextLabel {
                path: path.to_path_buf(),
                line: line_no,
            });
        }
        sink(Record {
            text: rest.trim_end().to_string(),
            labels,
            line: line_no,
        })
    })
}

fn parse_jsonl(
    reader: impl BufRead,
    path: &Path,
    opts: &ReadOptions,
    mode: Mode,
    sink: &mut Sink<'_>,
) -> Result<(), DataError> {
    for_each_line(reader, path, |line_no, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let json_err = |e: serde_json::Error| DataError::Json {
            path: path.to_path_buf(),
            line: line_no,
            column: e.column(),
            message: e.to_string(),
        };
        if !line.trim_start().starts_with('{') {
            // Valid JSON that is not an object, or not JSON at all.
            serde_json::from_str::<serde::de::IgnoredAny>(line).map_err(json_err)?;
            return Err(DataError::NotObject {
                path: path.to_path_buf(),
                line: line_no,
            });
        }
        let object: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(line).map_err(json_err)?;
        let missing = |key: &str, role: &'static str| DataError::MissingKey {
            path: path.to_path_buf(),
            line: line_no,
            role,
            key: key.to_string(),
            found: object.keys().cloned().collect(),
        };
        let bad = |key: &str, problem: &'static str| DataError::BadValue {
            path: path.to_path_buf(),
            line: line_no,
            key: key.to_string(),
            problem,
        };
        let text_raw = object
            .get(&opts.text_column)
            .ok_or_else(|| missing(&opts.text_column, "text"))?;
        let text: String = serde_json::from_str(text_raw.get()).map_err(|_| {
            bad(
                &opts.text_column,
                "is not a string; write the text as a JSON string",
            )
        })?;
        let labels = match mode {
            Mode::Texts => Vec::new(),
            Mode::Labelled => {
                let raw = object
                    .get(&opts.label_column)
                    .ok_or_else(|| missing(&opts.label_column, "label"))?;
                let labels = json_labels(raw).map_err(|p| bad(&opts.label_column, p))?;
                if labels.is_empty() || labels.iter().any(|l| l.trim().is_empty()) {
                    return Err(DataError::EmptyLabel {
                        path: path.to_path_buf(),
                        line: line_no,
                        column: Some(opts.label_column.clone()),
                    });
                }
                labels
            }
        };
        sink(Record {
            text,
            labels,
            line: line_no,
        })
    })
}

const LABEL_TYPES: &str =
    "must be a string, number or boolean, or an array of those; null and objects are not labels";

/// A JSON label: a string, number (kept as written), boolean, or an array of those.
fn json_labels(raw: &RawValue) -> Result<Vec<String>, &'static str> {
    let text = raw.get().trim();
    if text.starts_with('[') {
        let items: Vec<Box<RawValue>> = serde_json::from_str(text).map_err(|_| LABEL_TYPES)?;
        items.iter().map(|item| json_scalar(item.get())).collect()
    } else {
        json_scalar(text).map(|l| vec![l])
    }
}

fn json_scalar(text: &str) -> Result<String, &'static str> {
    let text = text.trim();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text).map_err(|_| LABEL_TYPES),
        Some(b't') | Some(b'f') => Ok(text.to_string()),
        Some(b'-') | Some(b'0'..=b'9') => Ok(text.to_string()),
        _ => Err(LABEL_TYPES),
    }
}
