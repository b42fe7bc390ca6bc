//! `Job::load` of `[[endpoints]]`: every key of an entry, the checks across
//! entries, the flags over them, and shards dividing their rates.

use std::time::Duration;

use super::*;

const TWO: &str = r#"[input]
path = "q.jsonl"
[defaults]
model = "m1"

[[endpoints]]
name = "key-a"
url = "https://api.example.com/v1/chat/completions"
api_key_env = "KEY_A"
weight = 2
requests_per_minute = 600
tokens_per_minute = 90000
headers = { "X-Title" = "faq" }
timeout_secs = 30
max_reply_bytes = 1024
max_attempt_secs = 90
http = "1.1"

[[endpoints]]
name = "fallback"
url = "https://other.example.com/v1/chat/completions"
models = ["m1", "m2"]
"#;

#[test]
fn every_key_of_an_entry_is_read_and_the_first_is_the_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "j.toml", TWO);
    let job = load(&job_args(Some("j.toml")), dir.path()).expect("valid");
    let [a, b] = job.endpoints.as_slice() else {
        panic!("two endpoints: {:?}", job.endpoints)
    };
    assert_eq!((a.name.as_str(), a.weight), ("key-a", 2));
    assert_eq!((a.requests_per_minute, a.tokens_per_minute), (600, 90_000));
    assert_eq!(a.config.api_key_env, "KEY_A");
    assert_eq!(a.config.headers, vec![("X-Title".into(), "faq".into())]);
    assert_eq!(a.config.timeout, Duration::from_secs(30));
    assert_eq!(a.config.max_reply_bytes, 1024);
    assert_eq!(a.config.max_attempt, Duration::from_secs(90));
    assert_eq!(a.config.http, crate::job::HttpSetting::Http1);
    assert_eq!(a.models, None);
    assert_eq!((b.name.as_str(), b.weight), ("fallback", 1));
    assert_eq!(b.config.api_key_env, crate::job::DEFAULT_KEY_ENV);
    assert!(b.serves("m2") && !b.serves("m3") && a.serves("m3"));
    assert_eq!(job.endpoint.url, a.config.url);
}

#[test]
fn entry_mistakes_are_each_a_problem_at_their_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = TWO
        .replace("weight = 2", "weight = 0\nwieght = 3")
        .replace("name = \"fallback\"", "name = \"key-a\"")
        .replace("models = [\"m1\", \"m2\"]", "models = []");
    write(dir.path(), "j.toml", &bad);
    let found = problems(&job_args(Some("j.toml")), dir.path());
    let all = format!("{found:#?}");
    assert_problem(
        &found,
        "j.toml:10:10: [[endpoints]] #1 (\"key-a\") weight",
        "between 1 and 1000000, got 0",
    );
    assert!(all.contains("did you mean \\\"weight\\\""), "{all}");
    assert!(all.contains("endpoint names must be unique"), "{all}");
    assert!(all.contains("leave it out to serve every model"), "{all}");
    let nameless = TWO.replace("name = \"fallback\"\n", "");
    write(dir.path(), "j.toml", &nameless);
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert!(
        format!("{found:?}").contains("every endpoint needs a name"),
        "{found:?}"
    );
    let both = format!("[endpoint]\nurl = \"http://127.0.0.1:9/v1/chat/completions\"\n{TWO}");
    write(dir.path(), "j.toml", &both);
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert!(format!("{found:?}").contains("are exclusive"), "{found:?}");
}

#[test]
fn a_model_no_endpoint_serves_is_refused_naming_each_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = TWO.replace("model = \"m1\"", "model = \"m9\"").replace(
        "api_key_env = \"KEY_A\"",
        "api_key_env = \"KEY_A\"\nmodels = [\"m1\"]",
    );
    write(dir.path(), "j.toml", &job);
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(
        &found,
        "j.toml:6:3: [[endpoints]]",
        "no endpoint serves the model \"m9\" the job requests (\"key-a\" serves [\"m1\"]; \"fallback\" serves [\"m1\", \"m2\"])",
    );
}

#[test]
fn flags_endpoint_replaces_the_list_and_timeout_applies_to_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "j.toml", TWO);
    let args = JobArgs {
        timeout: Some(7.0),
        headers: vec!["X-Run=1".into()],
        ..job_args(Some("j.toml"))
    };
    let job = load(&args, dir.path()).expect("valid");
    for e in &job.endpoints {
        assert_eq!(e.config.timeout, Duration::from_secs(7), "{}", e.name);
        assert!(
            e.config.headers.contains(&("X-Run".into(), "1".into())),
            "{}",
            e.name
        );
    }
    let args = JobArgs {
        endpoint: Some("http://127.0.0.1:8000/v1/chat/completions".into()),
        ..job_args(Some("j.toml"))
    };
    let job = load(&args, dir.path()).expect("valid");
    assert!(job.endpoints.is_empty());
    assert_eq!(
        job.endpoint.url,
        "http://127.0.0.1:8000/v1/chat/completions"
    );
}

#[test]
fn shards_divide_each_endpoints_rates_unless_per_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "j.toml", TWO);
    let args = JobArgs {
        shard: Some("1/4".into()),
        output: Some("out/{name}-{shard}.jsonl".into()),
        ..job_args(Some("j.toml"))
    };
    let job = load(&args, dir.path()).expect("valid");
    let a = &job.endpoints[0];
    assert_eq!((a.requests_per_minute, a.tokens_per_minute), (150, 22_500));
    let per_shard = TWO.replace("[defaults]", "[limits]\nper_shard = true\n[defaults]");
    write(dir.path(), "j.toml", &per_shard);
    let job = load(&args, dir.path()).expect("valid");
    let a = &job.endpoints[0];
    assert_eq!((a.requests_per_minute, a.tokens_per_minute), (600, 90_000));
}

#[test]
fn a_name_with_a_control_character_or_too_long_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, says) in [
        ("a\\u001b[31mred", "holds a control character"),
        ("two\\nlines", "holds a control character"),
        ("tab\\there", "holds a control character"),
        (&"x".repeat(101), "is 101 characters long; at most 100"),
    ] {
        let job = TWO.replace("name = \"fallback\"", &format!("name = \"{name}\""));
        write(dir.path(), "j.toml", &job);
        let found = problems(&job_args(Some("j.toml")), dir.path());
        assert!(format!("{found:?}").contains(says), "{name}: {found:?}");
    }
    // Odd but printable names are fine.
    let job = TWO.replace("name = \"fallback\"", "name = \"clé · #2 (EU)\"");
    write(dir.path(), "j.toml", &job);
    load(&job_args(Some("j.toml")), dir.path()).expect("a printable name is fine");
}

#[test]
fn more_endpoints_than_the_bound_are_refused_saying_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entry = |i: usize| {
        format!(
            "[[endpoints]]\nname = \"e{i}\"\nurl = \"http://127.0.0.1:9/v1/chat/completions\"\n"
        )
    };
    let head = "[input]\npath = \"q.jsonl\"\n[defaults]\nmodel = \"m1\"\n";
    let at_bound: String = (0..1000).map(entry).collect();
    write(dir.path(), "j.toml", &format!("{head}{at_bound}"));
    let job = load(&job_args(Some("j.toml")), dir.path()).expect("1000 endpoints are fine");
    assert_eq!(job.endpoints.len(), 1000);
    let past: String = (0..1001).map(entry).collect();
    write(dir.path(), "j.toml", &format!("{head}{past}"));
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert!(
        format!("{found:?}").contains("lists 1001 endpoints; at most 1000 are allowed"),
        "{found:?}"
    );
}

#[test]
fn batch_mode_with_several_endpoints_is_refused_saying_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let batch = TWO.replace("http = \"1.1\"", "http = \"1.1\"\nmode = \"batch\"");
    write(dir.path(), "j.toml", &batch);
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert!(
        format!("{found:?}").contains("give one [endpoint] with mode = \\\"batch\\\""),
        "{found:?}"
    );
    write(dir.path(), "j.toml", TWO);
    let mut args = job_args(Some("j.toml"));
    args.batch_api = true;
    let found = problems(&args, dir.path());
    assert!(
        format!("{found:?}").contains("batch mode sends a job through one endpoint"),
        "{found:?}"
    );
    // One endpoint in batch mode is fine.
    let one =
        "[input]\npath = \"q.jsonl\"\n[defaults]\nmodel = \"m1\"\n[endpoint]\nmode = \"batch\"\n";
    write(dir.path(), "j.toml", one);
    assert!(load(&job_args(Some("j.toml")), dir.path()).is_ok());
}
