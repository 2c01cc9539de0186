//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading data.
///
/// Every message names the file (and the line and column where one applies),
/// says what was wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{}: cannot read the file (check that the path exists and is readable)", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The format could not be told from the file name and none was given.
    #[error("{}: unknown data format; name the file .csv, .tsv, .jsonl or .txt (fastText), or give the format explicitly (csv, tsv, jsonl, fasttext)", .path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },

    /// A format name that is not one of `csv`, `tsv`, `jsonl`, `fasttext`.
    #[error("unknown format {name:?}; use one of csv, tsv, jsonl, fasttext")]
    BadFormatName {
        /// The name given.
        name: String,
    },

    /// The file holds no records.
    #[error("{}: the file has no records; a labelled file needs at least one example{hint}", .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
        /// Extra advice for the format at hand.
        hint: &'static str,
    },

    /// A column named in the options is not in the header row.
    #[error("{}: line {line}: there is no {role} column {wanted:?}; the header has {}; name the right column (the {role} column option) or fix the header", .path.display(), list(.found))]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The header's line number.
        line: u64,
        /// `text` or `label`.
        role: &'static str,
        /// The column asked for.
        wanted: String,
        /// The columns the header has.
        found: Vec<String>,
    },

    /// Bytes that are not UTF-8.
    #[error("{}: line {line}: the text is not valid UTF-8; convert the file to UTF-8 (for example with iconv)", .path.display())]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
    },

    /// A row whose label is missing or empty.
    #[error("{}: line {line}: the label{} is empty; give every example a label or remove the row", .path.display(), column_note(.column))]
    EmptyLabel {
        /// The file.
        path: PathBuf,
        /// The line where the record starts.
        line: u64,
        /// The label column, where the format has columns.
        column: Option<String>,
    },

    /// A CSV/TSV row with a different number of fields than the header.
    #[error("{}: line {line}: expected {expected} fields (as in the header) but found {found}; quote fields that contain the delimiter, quotes or line breaks", .path.display())]
    FieldCount {
        /// The file.
        path: PathBuf,
        /// The line where the record starts.
        line: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields in this row.
        found: usize,
    },

    /// A CSV/TSV syntax error.
    #[error("{}: line {line}: malformed {format} record: {message}", .path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
        /// The format name.
        format: &'static str,
        /// What the parser said.
        message: String,
    },

    /// A JSONL line that is not valid JSON.
    #[error("{}: line {line}, column {column}: malformed JSON: {message}; each line must hold one JSON object", .path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
        /// The column within the line.
        column: usize,
        /// What the parser said.
        message: String,
    },

    /// A JSONL line that holds JSON but not an object.
    #[error("{}: line {line}: the JSON value is not an object; write one object per line, like {{\"text\": \"...\", \"label\": \"...\"}}", .path.display())]
    NotObject {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
    },

    /// A JSONL object without a needed key.
    #[error("{}: line {line}: the object has no {key:?} key{}; add it or name the right key (the {role} column option)", .path.display(), keys_note(.found))]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
        /// `text` or `label`.
        role: &'static str,
        /// The key asked for.
        key: String,
        /// The keys the object has.
        found: Vec<String>,
    },

    /// A JSONL value of the wrong type.
    #[error("{}: line {line}: the {key:?} value {problem}", .path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
        /// The key.
        key: String,
        /// What is wrong and what is expected.
        problem: &'static str,
    },

    /// The consumer of a streamed read ([`crate::for_each_record`]) stopped it: the message
    /// says why (for example, the data is over a size limit).
    #[error("{}: line {line}: {message}", .path.display())]
    Stopped {
        /// The input.
        path: PathBuf,
        /// The line of the record that was refused.
        line: u64,
        /// Why.
        message: String,
    },

    /// A fastText line without any `__label__` token.
    #[error("{}: line {line}: no __label__ prefix; a fastText line starts with one or more `__label__NAME` tokens followed by the text", .path.display())]
    NoFastTextLabel {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "no columns".to_string()
    } else {
        let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
        format!("columns {}", quoted.join(", "))
    }
}

fn column_note(column: &Option<String>) -> String {
    match column {
        Some(c) => format!(" (column {c:?})"),
        None => String::new(),
    }
}

fn keys_note(found: &[String]) -> String {
    if found.is_empty() {
        " (the object is empty)".to_string()
    } else {
        let quoted: Vec<String> = found.iter().map(|s| format!("{s:?}")).collect();
        format!(" (it has {})", quoted.join(", "))
    }
}
