//! `promptbatch report`: usage over output files, grouped by `--by`
//! fields, in one streaming pass, written in one of several formats.

pub mod html;
pub mod model;

pub use model::{Field, Report};
