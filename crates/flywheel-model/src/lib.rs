//! What a model is.
