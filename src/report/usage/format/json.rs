//! `--format json`: `{"by", "groups": [{<each --by field>: value, <figures>}],
//! "totals", "span_s", "files"}` in that order, plus `pricing_check` when
//! there is one.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::report::usage::model::{Field, Figures, FileFacts, PricingCheck, Report};

pub fn render(report: &Report) -> String {
    let out = Out {
        by: report.by.iter().map(|f| f.name()).collect(),
        groups: (report.groups.iter())
            .map(|g| GroupOut {
                values: Values(&report.by, &g.values),
                figures: &g.figures,
            })
            .collect(),
        totals: &report.totals,
        span_s: report.span_s,
        files: &report.files,
        pricing_check: report.pricing_check.as_ref(),
    };
    // Plain structs of numbers and strings: serialising cannot fail.
    let mut text = serde_json::to_string_pretty(&out).unwrap_or_default();
    text.push('\n');
    text
}

#[derive(Serialize)]
struct Out<'a> {
    by: Vec<&'static str>,
    groups: Vec<GroupOut<'a>>,
    totals: &'a Figures,
    span_s: f64,
    files: &'a [FileFacts],
    #[serde(skip_serializing_if = "Option::is_none")]
    pricing_check: Option<&'a PricingCheck>,
}

#[derive(Serialize)]
struct GroupOut<'a> {
    #[serde(flatten)]
    values: Values<'a>,
    #[serde(flatten)]
    figures: &'a Figures,
}

/// The --by fields of a group with their values, in the order given.
struct Values<'a>(&'a [Field], &'a [Option<String>]);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (field, value) in self.0.iter().zip(self.1) {
            map.serialize_entry(field.name(), value)?;
        }
        map.end()
    }
}
