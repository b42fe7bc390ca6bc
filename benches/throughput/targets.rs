//! Where the scenarios' figures go in the targets table (`table.rs`) and in
//! the JSON: which scenario gives which row, and how its figure is judged.

use std::time::Duration;

use serde_json::{json, Value};

use crate::first::Starts;
use crate::table::{self, Bound, Row};
use crate::{Figures, Scenario, TableRow};

/// The rows of the targets table that scenario `row`'s figures give.
pub fn rows_of(measured: &[(&Scenario, Result<Figures, String>)], row: TableRow) -> Vec<Row> {
    let Some((s, figures)) = measured.iter().find(|(s, _)| s.row == Some(row)) else {
        return vec![];
    };
    let f = match figures {
        Ok(f) => f,
        Err(why) => {
            return match row {
                TableRow::Nginx => vec![
                    Row::skipped(table::NGINX_RPS, why),
                    Row::skipped(table::NGINX_CPU, why),
                ],
                TableRow::Headers => vec![Row::skipped(table::HEADERS, why)],
                TableRow::Learned => vec![Row::skipped(table::LEARNED, why)],
            };
        }
    };
    // Every request of the job ended well and has its record written.
    let all_ok = f.summary["requests"]["failed"].as_u64() == Some(0)
        && f.summary["requests"]["ok"].as_u64() == Some(s.requests)
        && f.records == s.requests;
    match row {
        TableRow::Nginx => vec![
            Row::measured(
                table::NGINX_RPS,
                f.per_s(),
                all_ok && Bound::AtLeast(40_000.0).holds(f.per_s()),
                f.run(),
            ),
            Row::measured(
                table::NGINX_CPU,
                f.cpu_us_per_request(),
                all_ok && Bound::AtMost(20.0).holds(f.cpu_us_per_request()),
                f.run(),
            ),
        ],
        TableRow::Headers => {
            let Some(share) = f.sustained_pct else {
                return vec![Row::skipped(
                    table::HEADERS,
                    "the run ended before a whole second once under way",
                )];
            };
            let bounced = f.bounced_pct().unwrap_or(f64::NAN);
            let met =
                all_ok && Bound::AtLeast(95.0).holds(share) && Bound::AtMost(1.0).holds(bounced);
            vec![Row::measured(table::HEADERS, share, met, f.run())]
        }
        TableRow::Learned => {
            let start = f.start_of_learned_pct().unwrap_or(f64::NAN);
            let bounced = f.bounced_pct().unwrap_or(f64::NAN);
            let met =
                all_ok && Bound::AtLeast(90.0).holds(start) && Bound::AtMost(1.0).holds(bounced);
            vec![Row::measured(table::LEARNED, start, met, f.run())]
        }
    }
}

pub fn first_row(starts: &Result<Starts, String>) -> Row {
    let s = match starts {
        Ok(s) => s,
        Err(why) => return Row::skipped(table::FIRST_REQUEST, why),
    };
    let ms = s.median().to_first.as_secs_f64() * 1e3;
    let run = table::Run {
        requests_per_s: None,
        cpu_us_per_request: Some(s.median().cpu.as_secs_f64() * 1e6),
        peak_mib: Some(s.median().peak_mib),
        bounced_pct: None,
    };
    let exits_ok = s.0.iter().all(|r| r.exit == 0);
    Row::measured(
        table::FIRST_REQUEST,
        ms,
        exits_ok && Bound::AtMost(5.0).holds(ms),
        run,
    )
}

pub fn first_json(starts: &Result<Starts, String>) -> Value {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    match starts {
        Ok(s) => json!({
            "name": "start to first request sent (one-row job)",
            "runs": s.0.len(),
            "median_ms": ms(s.median().to_first),
            "min_ms": ms(s.min().to_first),
            "max_ms": ms(s.max().to_first),
            "cpu_us_per_request": s.median().cpu.as_secs_f64() * 1e6,
            "peak_mib": s.median().peak_mib,
            "skipped": null,
        }),
        Err(why) => json!({"name": "start to first request sent (one-row job)", "skipped": why}),
    }
}

pub fn scenario_json(s: &Scenario, f: &Result<Figures, String>) -> Value {
    let f = match f {
        Ok(f) => f,
        Err(why) => return json!({"name": s.name, "skipped": why}),
    };
    json!({
        "name": s.name,
        "requests": f.sent(),
        "ok": f.summary["requests"]["ok"],
        "records": f.records,
        "failed": f.summary["requests"]["failed"],
        "wall_s": f.wall.as_secs_f64(),
        "requests_per_s": f.per_s(),
        "cpu_us_per_request": f.cpu_us_per_request(),
        "peak_mib": f.peak_mib(),
        "efficiency_pct": f.efficiency_pct(s),
        "sustained_pct": f.sustained_pct,
        "server_received": f.received,
        "server_429": f.limited,
        "bounced_pct": f.bounced_pct(),
        "learned_requests_per_s": f.learned_per_s,
        "first_second_answered": f.first_second.map(|x| x.ok),
        "first_second_bounced": f.first_second.map(|x| x.limited),
        "latency_ms_p50": f.summary["latency_ms"]["p50"],
        "latency_ms_p99": f.summary["latency_ms"]["p99"],
        "skipped": null,
    })
}
