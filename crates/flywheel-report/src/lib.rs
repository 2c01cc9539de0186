//! Rendering for people and tools: the self-contained HTML evaluation report ([`report`]), the
//! label audit's page ([`audit`]), one
//! font-free inline SVG chart stack ([`svg`]) shared by the report, `flywheel history` and the
//! server's dashboard, the learning-curve series they draw ([`curves`]), and TensorBoard event
//! files ([`tensorboard`]).

#![warn(missing_docs)]

pub mod audit;
pub mod curves;
pub mod report;
pub mod svg;
pub mod tensorboard;

pub use report::{render, write_report, ReportError, ReportInput};
