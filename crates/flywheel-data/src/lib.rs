//! Labelled data in: records and the readers that make them.
//!
//! [`read`] reads labelled examples from CSV, TSV, JSONL or fastText files
//! ([`read_labelled`]) and texts to classify ([`read_texts`]), with errors
//! ([`DataError`]) that name the file, the line and what to do. Rebuilding the
//! public datasets from their packages is the `flywheel-datasets` crate.

#![warn(missing_docs)]

mod error;
pub mod read;

pub use error::DataError;
pub use read::{
    for_each_record, read_labelled, read_labelled_from, read_texts, read_texts_from, Dataset,
    Format, ReadOptions, Record,
};
