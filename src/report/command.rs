//! `promptbatch report`: the report over output files, on stdout as a table or JSON.

use std::path::PathBuf;

use super::{over_outputs, table, ReportError};
use crate::printer;

pub fn command(outputs: &[PathBuf], json: bool) -> Result<(), ReportError> {
    let summary = over_outputs(outputs)?;
    let text = if json {
        let mut text =
            serde_json::to_string_pretty(&summary).map_err(|e| ReportError::Print(e.into()))?;
        text.push('\n');
        text
    } else {
        table::render(&summary)
    };
    printer::out(&text).map_err(ReportError::Print)
}
