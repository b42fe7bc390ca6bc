//! Money against the real binary: a provider's figure that undercounts, and
//! a tokens-per-minute limit no request fits.

use crate::common::*;

fn job(url: &str, extra: &str) -> String {
    format!(
        r#"name = "t"
[endpoint]
url = "{url}"
api_key_env = ""
timeout_secs = 5
[input]
path = "rows.jsonl"
[defaults]
model = "m"
max_tokens = 100
{extra}"#
    )
}

fn rows(n: usize) -> String {
    (1..=n)
        .map(|i| format!("{{\"prompt\": \"question {i}\"}}\n"))
        .collect()
}

#[tokio::test]
async fn a_provider_that_says_free_cannot_make_the_budget_limitless() {
    // Every reply says it cost $0 (x-aimlapi-usd-spent: 0) while reporting
    // its tokens, which [pricing] prices at $1 per 1M.
    let mock = MockServer::start(MockConfig {
        usd_per_million: Some(0.0),
        ..MockConfig::default()
    })
    .await
    .expect("mock starts");
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(40));
    let budget = 0.0004;
    sb.write(
        "job.toml",
        &job(
            &mock.url(),
            &format!("[limits]\nconcurrency = 2\nmax_cost_usd = {budget}\n[pricing]\nm = {{ input = 1.0, output = 1.0 }}\n"),
        ),
    );
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let records = sb.records("t.jsonl");
    assert!(records.len() < 40, "stopped by the budget");
    let mut charged = 0.0;
    for r in &records {
        assert_eq!(r["cost_usd"], 0.0, "the record keeps the provider's figure");
        let usage = &r["usage"];
        let priced = (usage["prompt_tokens"].as_f64().expect("prompt")
            + usage["completion_tokens"].as_f64().expect("completion"))
            / 1e6;
        let charge = r["budget_charge_usd"].as_f64().expect("charge");
        assert!(charge >= priced && priced > 0.0, "{r}");
        charged += charge;
    }
    assert!(charged <= budget, "charged {charged} past {budget}");
    mock.shutdown().await;
}

#[tokio::test]
async fn a_tokens_per_minute_limit_below_one_request_is_exit_2() {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(1));
    sb.write("job.toml", &job(&mock.url(), ""));
    // "question 1" (10 bytes) + 8 per message + 100 = 118 tokens at most.
    let out = output(sb.command(&["run", "job.toml", "--progress", "off", "--tpm", "117"])).await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("tokens_per_minute"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mock.stats().requests(), 0, "nothing was sent");
    let out = output(sb.command(&["run", "job.toml", "--progress", "off", "--tpm", "118"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.records("t.jsonl").len(), 1);
    mock.shutdown().await;
}
