//! Planner tests: ids, where messages come from, system folding, errors;
//! what is sent (parameters, body, hash, sizes) is in `bodies`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

mod bodies;
use crate::job::{
    EndpointConfig, InputConfig, InputSource, Limits, OutputConfig, ParamSet, RetryConfig,
};

const GEMMA: &str = "google/gemma-3-4b-it";
const GPT: &str = "gpt-4o-mini";

fn layer(v: Value) -> ParamLayer {
    params::layer_from_map(v.as_object().expect("object"), UnknownKeys::Reject).expect("valid")
}

/// A job with one set `default`, model `GPT`, JSONL input, no system.
fn job() -> Job {
    Job {
        cache: None,
        endpoints: Vec::new(),
        name: "faq".into(),
        endpoint: EndpointConfig {
            url: crate::job::DEFAULT_ENDPOINT.into(),
            api_key_env: String::new(),
            timeout: Duration::from_secs(5),
            headers: Vec::new(),
            max_reply_bytes: 1 << 20,
            max_attempt: Duration::from_secs(60),
            http: Default::default(),
            mode: Default::default(),
            batch_wait: None,
        },
        input: InputConfig {
            source: InputSource::File(PathBuf::from("q.jsonl")),
            format: Format::Jsonl,
            id: None,
            system: None,
            system_mode: SystemMode::Auto,
            template: None,
            images: Vec::new(),
            max_image_bytes: crate::job::DEFAULT_MAX_IMAGE_BYTES,
        },
        output: OutputConfig {
            path: "faq.jsonl".into(),
            summary: "faq.summary.json".into(),
            json: false,
            batch: None,
        },
        limits: Limits {
            concurrency: 4,
            requests_per_minute: 0,
            tokens_per_minute: 0,
            max_cost_usd: 0.0,
            per_shard: false,
        },
        retry: RetryConfig {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            bad_output_attempts: 1,
        },
        defaults: layer(json!({"model": GPT})),
        param_sets: vec![ParamSet {
            name: "default".into(),
            layer: ParamLayer::default(),
        }],
        overrides: ParamLayer::default(),
        pricing: Pricing::default(),
        row_limit: None,
        simulate: false,
        shard: Default::default(),
        shard_from: "nothing: the whole job",
    }
}

fn with_template(mut job: Job, source: &str) -> Job {
    job.input.template = Some(Template::parse(source).expect("template parses"));
    job
}

fn row(line: u64, number: u64, fields: Value) -> RawRow {
    RawRow {
        line,
        number,
        fields: fields.as_object().expect("object").clone(),
    }
}

fn plan(job: &Job, fields: Value) -> Result<Vec<Request>, Vec<InputError>> {
    Planner::new(job).plan(row(7, 3, fields), "q.jsonl")
}

fn one(job: &Job, fields: Value) -> Request {
    let mut requests = plan(job, fields).expect("row is valid");
    assert_eq!(requests.len(), 1);
    requests.remove(0)
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("body is JSON")
}

fn errors(job: &Job, fields: Value) -> Vec<InputError> {
    plan(job, fields).expect_err("row is invalid")
}

#[test]
fn id_comes_from_the_template_then_the_id_field_then_the_row_number() {
    let mut j = job();
    assert_eq!(one(&j, json!({"id": "q17", "prompt": "hi"})).id, "q17");
    assert_eq!(one(&j, json!({"id": 17, "prompt": "hi"})).id, "17");
    let r = one(&j, json!({"prompt": "hi"}));
    assert_eq!((r.id.as_str(), r.key.as_str()), ("3", "3/default"));

    j.input.id = Some(Template::parse("{{lang}}-{{n}}").expect("parses"));
    assert_eq!(
        one(&j, json!({"id": "x", "lang": "en", "n": 4, "prompt": "hi"})).id,
        "en-4"
    );
    let e = errors(&j, json!({"lang": "en", "prompt": "hi"}));
    assert_eq!(e[0].field.as_deref(), Some("n"));
}

#[test]
fn bad_and_empty_ids_are_row_errors() {
    let j = job();
    for bad in [json!(1.5), json!(true), json!(["a"]), json!(null)] {
        let e = errors(&j, json!({"id": bad, "prompt": "hi"}));
        assert_eq!(e[0].field.as_deref(), Some("id"));
        assert!(e[0]
            .message
            .starts_with("id must be a string or a whole number"));
    }
    let e = errors(&j, json!({"id": "  ", "prompt": "hi"}));
    assert!(e[0].message.contains("empty"), "{}", e[0].message);
}

#[test]
fn messages_win_over_prompt_which_wins_over_the_template() {
    let j = with_template(job(), "T: {{q}}");
    let own = json!([{"role": "user", "content": "own"}]);
    let r = one(&j, json!({"messages": own, "prompt": "p", "q": "x"}));
    assert_eq!(body(&r)["messages"], own);
    let r = one(&j, json!({"prompt": "p", "q": "x"}));
    assert_eq!(
        body(&r)["messages"],
        json!([{"role": "user", "content": "p"}])
    );
    let r = one(&j, json!({"q": "x"}));
    assert_eq!(
        body(&r)["messages"],
        json!([{"role": "user", "content": "T: x"}])
    );

    let e = errors(&job(), json!({"q": "x"}));
    assert!(e[0].message.contains("set [input] template or --template"));
    let e = errors(&j, json!({"prompt": 3}));
    assert_eq!(e[0].field.as_deref(), Some("prompt"));
    let e = errors(&j, json!({"other": 1}));
    assert_eq!(e[0].field.as_deref(), Some("q"));
}

#[test]
fn csv_rows_always_use_the_template_no_column_is_special() {
    let mut j = job();
    j.input.format = Format::Csv;
    let problems = Planner::new(&j)
        .plan(
            RawRow {
                line: 2,
                number: 1,
                fields: json!({"prompt": "p"}).as_object().expect("object").clone(),
            },
            "q.csv",
        )
        .expect_err("a CSV row needs the template");
    assert!(problems[0].message.contains("--template"), "{problems:?}");
    let j = with_template(j, "T: {{prompt}} {{messages}} {{params}}");
    let r = one(&j, json!({"prompt": "p", "messages": "[]", "params": "{}"}));
    assert_eq!(
        body(&r)["messages"],
        json!([{"role": "user", "content": "T: p [] {}"}])
    );
    assert!(r.params.is_empty(), "a CSV params column is just a field");
}

#[test]
fn the_job_system_goes_with_prompt_and_template_rows_only() {
    let mut j = with_template(job(), "{{q}}");
    j.input.system = Some("Be brief.".into());
    let system_then = |text: &str| json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]);
    assert_eq!(
        body(&one(&j, json!({"prompt": "p"})))["messages"],
        system_then("p")
    );
    assert_eq!(
        body(&one(&j, json!({"q": "x"})))["messages"],
        system_then("x")
    );
    let own = json!([{"role": "user", "content": "own"}]);
    assert_eq!(body(&one(&j, json!({"messages": own})))["messages"], own);
}

#[test]
fn gemma_models_get_the_system_text_folded_into_the_first_user_message() {
    let mut j = job();
    j.defaults = layer(json!({"model": "Google/GEMMA-3-27b-it"}));
    j.input.system = Some("Be brief.".into());
    let r = one(&j, json!({"prompt": "Why?"}));
    assert_eq!(
        body(&r)["messages"],
        json!([{"role": "user", "content": "Be brief.\n\nWhy?"}])
    );

    let own = json!([
        {"role": "system", "content": "A."},
        {"role": "assistant", "content": "earlier"},
        {"role": "system", "content": [{"type": "text", "text": "B."}]},
        {"role": "user", "content": "Q1"},
        {"role": "user", "content": "Q2"}
    ]);
    let r = one(&j, json!({"messages": own}));
    assert_eq!(
        body(&r)["messages"],
        json!([
            {"role": "assistant", "content": "earlier"},
            {"role": "user", "content": "A.\n\nB.\n\nQ1"},
            {"role": "user", "content": "Q2"}
        ])
    );

    let parts = json!([
        {"role": "system", "content": "S."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}
    ]);
    let r = one(&j, json!({"messages": parts}));
    assert_eq!(
        body(&r)["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "S.\n\n"},
            {"type": "image_url", "image_url": {"url": "u"}}
        ]}])
    );
}

#[test]
fn folding_without_a_user_message_is_a_row_error() {
    let mut j = job();
    j.input.system_mode = SystemMode::Fold;
    let own = json!([{"role": "system", "content": "S."}, {"role": "assistant", "content": "a"}]);
    let e = errors(&j, json!({"messages": own}));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].field.as_deref(), Some("messages"));
    assert!(e[0].message.contains("no user message"));
    // Without system text there is nothing to fold: sent as given.
    let own = json!([{"role": "assistant", "content": "a"}]);
    assert_eq!(body(&one(&j, json!({"messages": own})))["messages"], own);
}

#[test]
fn message_mode_and_auto_with_other_models_send_a_system_message() {
    let own = json!([{"role": "system", "content": "S."}, {"role": "user", "content": "u"}]);
    let mut j = job();
    assert_eq!(body(&one(&j, json!({"messages": own})))["messages"], own);
    j.defaults = layer(json!({"model": GEMMA}));
    j.input.system_mode = SystemMode::Message;
    assert_eq!(body(&one(&j, json!({"messages": own})))["messages"], own);
}

#[test]
fn sets_with_different_models_fold_independently() {
    let mut j = job();
    j.input.system = Some("S.".into());
    j.param_sets = vec![
        ParamSet {
            name: "gpt".into(),
            layer: ParamLayer::default(),
        },
        ParamSet {
            name: "gemma".into(),
            layer: layer(json!({"model": GEMMA})),
        },
    ];
    let rs = plan(&j, json!({"prompt": "p"})).expect("valid");
    assert_eq!(body(&rs[0])["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        body(&rs[1])["messages"],
        json!([{"role": "user", "content": "S.\n\np"}])
    );
    assert_eq!(
        (rs[0].key.as_str(), rs[1].key.as_str()),
        ("3/gpt", "3/gemma")
    );
    assert!(
        Arc::ptr_eq(&rs[0].input, &rs[1].input),
        "the row is shared, not copied"
    );
}

#[test]
fn every_problem_of_a_row_is_reported_with_path_line_and_field() {
    let j = with_template(job(), "{{q}}");
    let e = errors(&j, json!({"id": "", "params": {"top_p": 7}}));
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e.iter().all(|e| e.path == "q.jsonl" && e.line == Some(7)));
    let fields: Vec<_> = e.iter().map(|e| e.field.as_deref()).collect();
    assert_eq!(fields, vec![Some("id"), Some("q"), Some("params.top_p")]);

    let own = json!([{"role": 1, "content": "x"}, {"role": "user", "content": 5}, "x",
                     {"role": "user", "content": [{"type": "text", "text": 1}, 2]}]);
    let e = errors(&j, json!({"messages": own}));
    let fields: Vec<_> = e.iter().map(|e| e.field.as_deref().unwrap_or("")).collect();
    assert_eq!(
        fields,
        vec![
            "messages[0].role",
            "messages[1].content",
            "messages[2]",
            "messages[3].content[0].text",
            "messages[3].content[1]"
        ]
    );
    let e = errors(&j, json!({"messages": []}));
    assert_eq!(e[0].field.as_deref(), Some("messages"));
}

#[test]
fn set_names_are_shared_across_rows() {
    let j = job();
    let planner = Planner::new(&j);
    let a = planner
        .plan(row(1, 1, json!({"prompt": "a"})), "q.jsonl")
        .expect("valid");
    let b = planner
        .plan(row(2, 2, json!({"prompt": "b"})), "q.jsonl")
        .expect("valid");
    assert!(Arc::ptr_eq(&a[0].param_set, &b[0].param_set));
    assert_eq!((a[0].line, b[0].line), (1, 2));
    assert_eq!(
        &*a[0].input,
        json!({"prompt": "a"}).as_object().expect("object")
    );
}

#[test]
fn a_role_other_than_system_user_assistant_or_tool_is_a_row_error() {
    let j = job();
    let e = errors(
        &j,
        json!({"messages": [{"role": "users", "content": "hi"}]}),
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].path.as_str(), e[0].line), ("q.jsonl", Some(7)));
    assert_eq!(e[0].field.as_deref(), Some("messages[0].role"));
    assert!(e[0].message.contains("\"users\""), "{}", e[0]);
    let conversation = json!([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]);
    plan(&j, json!({ "messages": conversation })).expect("the four roles are valid");
}

#[test]
fn a_template_field_close_to_a_row_field_gets_a_suggestion() {
    let j = with_template(job(), "Answer: {{questoin}}");
    let e = errors(&j, json!({"question": "why?"}));
    assert_eq!(e[0].field.as_deref(), Some("questoin"));
    assert!(
        e[0].message.contains("did you mean \"question\"?"),
        "{}",
        e[0]
    );
}
