//! `report --format html`: one self-contained page (inline CSS and SVG,
//! nothing fetched) with the charts above the report's tables.

use super::model::Report;

/// The page for `report`.
pub fn render(report: &Report) -> String {
    // Replaced by the charts and tables; the signature is what callers use.
    format!(
        "<!doctype html><meta charset=utf-8><title>promptbatch report</title><p>{} groups</p>\n",
        report.groups.len()
    )
}
