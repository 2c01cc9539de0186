//! The numeric engine.
