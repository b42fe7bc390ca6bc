//! `promptbatch report`: usage over output files, grouped by `--by`
//! fields, in one streaming pass, written in one of several formats.
//!
//! `inputs` picks the files, `fold` reads them (parsing each line into a
//! `line::UsageLine`, adding it to `figures::Acc`s), and `format` turns the
//! resulting [`Report`] into text.

pub mod figures;
pub mod fold;
pub mod format;
pub mod html;
pub mod inputs;
pub mod line;
pub mod model;

pub use format::Format;
pub use model::{Field, Report};
