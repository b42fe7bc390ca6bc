//! `--format markdown`: the table's rows as a GitHub table (the totals row
//! in bold), then the same notes as the table.

use std::fmt::Write;

use super::footer;
use super::table::grid;
use crate::report::usage::model::Report;

pub fn render(report: &Report) -> String {
    let g = grid(report);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {} |",
        g.header
            .iter()
            .map(|h| escape(h))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let rule: Vec<&str> = (g.numeric.iter())
        .map(|n| if *n { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "| {} |", rule.join(" | "));
    let last = g.rows.len().saturating_sub(1);
    for (i, row) in g.rows.iter().enumerate() {
        let cells: Vec<String> = (row.iter())
            .map(|c| match (i == last, c.is_empty()) {
                (true, false) => format!("**{}**", escape(c)),
                _ => escape(c),
            })
            .collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
    for note in footer(report) {
        let _ = writeln!(out, "{}  ", escape(&note));
    }
    out
}

/// A cell's text that cannot end the cell or the row, nor format itself.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' | '\\' | '*' | '_' | '`' | '<' | '>' | '[' | ']' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
