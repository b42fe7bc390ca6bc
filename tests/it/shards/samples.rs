//! The samples a user copies to shard a job, as written: the Kubernetes
//! Indexed Job manifest parses as YAML and has the fields the README names,
//! and the Slurm array script runs each task under bash against the
//! simulator, the tasks' outputs together being the whole job.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use super::{shard_of, side_by_side};
use crate::common::*;

const MANIFEST: &str = include_str!("../../../samples/kubernetes/promptbatch-indexed-job.yaml");
const SLURM_SCRIPT: &str = include_str!("../../../samples/slurm/promptbatch-array.sh");
const SHARDED_TOML: &str = include_str!("../../../samples/sharded.toml");
const QUESTIONS: &str = include_str!("../../../samples/questions.csv");

#[tokio::test]
async fn the_kubernetes_manifest_is_an_indexed_job_with_the_readme_fields() {
    use saphyr::{LoadableYamlNode, Yaml};
    let docs = Yaml::load_from_str(MANIFEST).expect("the manifest is YAML");
    // `a.b.0.c`: a path of mapping keys and sequence indexes ("job.toml" is one key).
    let get = |node: &Yaml<'static>, path: &str| -> Yaml<'static> {
        let mut at = node.clone();
        let steps = match path.strip_prefix("data.") {
            Some(key) => vec!["data", key],
            None => path.split('.').collect(),
        };
        for step in steps {
            at = match step.parse::<usize>() {
                Ok(i) => at.as_sequence_get(i).cloned(),
                Err(_) => at.as_mapping_get(step).cloned(),
            }
            .unwrap_or_else(|| panic!("no {path} (at {step})"));
        }
        at
    };
    let job = docs
        .iter()
        .find(|d| d.as_mapping_get("kind").and_then(Yaml::as_str) == Some("Job"))
        .expect("a document of kind Job");
    assert_eq!(get(job, "apiVersion").as_str(), Some("batch/v1"));
    assert_eq!(get(job, "spec.completionMode").as_str(), Some("Indexed"));
    let completions = get(job, "spec.completions")
        .as_integer()
        .expect("completions");
    assert_eq!(get(job, "spec.parallelism").as_integer(), Some(completions));
    let container = get(job, "spec.template.spec.containers.0");
    let command: Vec<String> = get(&container, "command")
        .as_sequence()
        .expect("command list")
        .iter()
        .map(|a| a.as_str().expect("a string").to_string())
        .collect();
    assert_eq!(&command[..3], ["promptbatch", "run", "/job/job.toml"]);
    let at = command
        .iter()
        .position(|a| a == "--shards")
        .expect("--shards");
    assert_eq!(command[at + 1], completions.to_string());
    // The key from a Secret, into the variable the job names.
    let env = get(&container, "env");
    let key = env
        .as_sequence()
        .expect("env list")
        .iter()
        .find(|e| e.as_mapping_get("name").and_then(Yaml::as_str) == Some("AIMLAPI_API_KEY"))
        .expect("AIMLAPI_API_KEY");
    let secret = get(key, "valueFrom.secretKeyRef");
    assert!(get(&secret, "name").as_str().is_some() && get(&secret, "key").as_str().is_some());
    // The output on a volume: a PersistentVolumeClaim mounted where the job writes.
    let volumes = get(job, "spec.template.spec.volumes");
    let claim = volumes
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v.as_mapping_get("persistentVolumeClaim").is_some())
        .expect("a PersistentVolumeClaim volume");
    let claim_name = get(claim, "name");
    let mounts = get(&container, "volumeMounts");
    let mount = mounts
        .as_sequence()
        .expect("mounts")
        .iter()
        .find(|m| m.as_mapping_get("name") == Some(&claim_name))
        .expect("the claim is mounted");
    let data = get(mount, "mountPath").as_str().expect("path").to_string();
    // The job file it runs: {shard} in an output on that volume, and a valid job.
    let config = docs
        .iter()
        .find(|d| d.as_mapping_get("kind").and_then(Yaml::as_str) == Some("ConfigMap"))
        .expect("the job file's ConfigMap");
    let toml = get(config, "data.job.toml");
    let toml = toml.as_str().expect("job.toml");
    let output_line = toml
        .lines()
        .find(|l| l.starts_with("path = ") && l.contains("{shard}"))
        .expect("an output path with {shard}");
    assert!(output_line.contains(&format!("\"{data}/")), "{output_line}");
    let sb = Sandbox::new();
    sb.write("job.toml", toml);
    sb.write("questions.csv", QUESTIONS);
    let mut cmd = sb.command(&[
        "validate",
        "job.toml",
        "--shards",
        &completions.to_string(),
        "--input",
        "questions.csv",
        "--output",
        "out/{shard}.jsonl",
        "--json",
    ]);
    cmd.env("JOB_COMPLETION_INDEX", "1");
    let out = output(cmd).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(shard_of(&doc), (1, completions as u64));
    assert!(doc["output"]
        .as_str()
        .expect("output")
        .ends_with("out/1-of-4.jsonl"));
}

#[cfg(unix)]
#[tokio::test]
async fn the_slurm_script_runs_each_array_task_and_together_they_are_the_job() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    sb.write("samples/sharded.toml", SHARDED_TOML);
    sb.write("samples/questions.csv", QUESTIONS);
    let script = sb.write("promptbatch-array.sh", SLURM_SCRIPT);
    // `promptbatch` is this build; `srun` runs its command as a task would.
    let bin = sb.path("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_promptbatch"), bin.join("promptbatch"))
        .expect("symlink");
    let srun = sb.write("bin/srun", "#!/bin/sh\nexec \"$@\"\n");
    std::fs::set_permissions(&srun, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let array = SLURM_SCRIPT
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --array="))
        .expect("an #SBATCH --array line");
    assert_eq!(array, "0-3");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let commands = (0..4)
        .map(|id| {
            // What `sb.command` sets for the binary, for the script under bash.
            let mut bash = Command::new("bash");
            bash.arg(&script)
                .arg("--simulate")
                .current_dir(sb.dir.path())
                .env("PATH", &path)
                .env("NO_COLOR", "1")
                .env("XDG_STATE_HOME", sb.state_home())
                .env("AIMLAPI_API_KEY", SENTINEL_KEY)
                .env_remove("PROMPTBATCH_SHARD")
                .env_remove("JOB_COMPLETION_INDEX")
                .env("SLURM_ARRAY_JOB_ID", "77")
                .env("SLURM_ARRAY_TASK_ID", id.to_string())
                .env("SLURM_ARRAY_TASK_MIN", "0")
                .env("SLURM_ARRAY_TASK_MAX", "3")
                .env("SLURM_ARRAY_TASK_COUNT", "4");
            bash
        })
        .collect();
    let outs = side_by_side(commands).await;
    let mut keys = Vec::new();
    for (k, out) in outs.iter().enumerate() {
        assert_eq!(code(out), 0, "task {k}: {}", stderr(out));
        let file = format!("samples/out/sharded-{k}-of-4.jsonl");
        keys.extend(
            sb.records(&file)
                .iter()
                .map(|r| r["id"].as_str().expect("id").to_string()),
        );
    }
    let ids: BTreeSet<String> = csv::Reader::from_reader(QUESTIONS.as_bytes())
        .records()
        .map(|r| r.expect("a CSV row")[0].to_string())
        .collect();
    assert_eq!(ids.len(), 25);
    assert_eq!(keys.len(), ids.len(), "no id in two shards");
    assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), ids);
}
