//! `--format csv`: a header (the --by fields, then the JSON names flattened
//! with `_`), one row per group, and a totals row whose first cell is
//! `total`. Without --by, a first column `group` holds `total`. With a
//! price check, three `pricing_check_*` columns filled on the totals row.

use super::{flat, COLUMNS};
use crate::report::usage::model::Report;

pub fn render(report: &Report) -> String {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = report.by.iter().map(|f| f.name().to_string()).collect();
    let lead = header.is_empty();
    if lead {
        header.push("group".into());
    }
    header.extend(COLUMNS.iter().map(|c| c.to_string()));
    let check = report.pricing_check.as_ref();
    if check.is_some() {
        for c in ["requests", "provider_usd", "pricing_usd"] {
            header.push(format!("pricing_check_{c}"));
        }
    }
    let mut rows = vec![header];
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for group in &report.groups {
        let mut row: Vec<String> = (group.values.iter())
            .map(|v| v.clone().unwrap_or_default())
            .collect();
        row.extend(flat(&group.figures).iter().map(|(_, v)| cell(v)));
        if check.is_some() {
            row.extend([String::new(), String::new(), String::new()]);
        }
        rows.push(row);
    }
    let mut totals = vec![String::new(); report.by.len().max(1)];
    totals[0] = "total".into();
    totals.extend(flat(&report.totals).iter().map(|(_, v)| cell(v)));
    if let Some(c) = check {
        totals.extend([
            c.requests.to_string(),
            c.provider_usd.to_string(),
            c.pricing_usd.to_string(),
        ]);
    }
    rows.push(totals);
    for row in rows {
        // Writing into a Vec cannot fail.
        let _ = w.write_record(&row);
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}
