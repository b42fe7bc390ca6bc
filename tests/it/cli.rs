//! The command line itself: shell completions, the man page, `--version`,
//! and which flags each subcommand's help lists.

use clap::CommandFactory;

use crate::common::{code, stdout, Sandbox};

/// The subcommands as the flag definitions declare them.
fn subcommands() -> Vec<String> {
    promptbatch::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect()
}

#[tokio::test]
async fn bash_completions_are_a_valid_bash_script() {
    let sb = Sandbox::new();
    let out = crate::common::output(sb.command(&["completions", "bash"])).await;
    assert_eq!(code(&out), 0);
    let script = stdout(&out);
    assert!(script.contains("validate") && script.contains("mock-server"));
    let path = sb.write("promptbatch.bash", &script);
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash runs");
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// Loaded into bash as a user's shell loads it: the completion function
/// offers the subcommand, the long flag and the values of `--by`.
#[tokio::test]
async fn bash_completions_complete_subcommands_flags_and_values_once_loaded() {
    let sb = Sandbox::new();
    let out = crate::common::output(sb.command(&["completions", "bash"])).await;
    let path = sb.write("promptbatch.bash", &stdout(&out));
    // `complete WORDS...`: what the function offers for the last word.
    let script = r#"
        source "$1"
        complete() {
            COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
            COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
            _promptbatch promptbatch "${@: -1}" "${@: -2:1}"
            echo "$*: ${COMPREPLY[*]}"
        }
        complete promptbatch rep
        complete promptbatch report --fo
        complete promptbatch report --by ''
        complete promptbatch run --progr
    "#;
    let check = std::process::Command::new("bash")
        .args(["-c", script, "bash"])
        .arg(&path)
        .output()
        .expect("bash runs");
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines[0], "promptbatch rep: report", "{said}");
    assert_eq!(lines[1], "promptbatch report --fo: --format", "{said}");
    for field in ["model", "param_set", "day", "error_kind", "file"] {
        assert!(lines[2].split(' ').any(|w| w == field), "{said}");
    }
    assert_eq!(lines[3], "promptbatch run --progr: --progress", "{said}");
}

#[tokio::test]
async fn every_shell_gets_a_script_naming_the_subcommands() {
    let sb = Sandbox::new();
    for shell in ["zsh", "fish", "powershell"] {
        let out = crate::common::output(sb.command(&["completions", shell])).await;
        assert_eq!(code(&out), 0, "{shell}");
        let script = stdout(&out);
        for sub in subcommands() {
            assert!(script.contains(&sub), "{shell}: no {sub}");
        }
    }
}

#[tokio::test]
async fn man_prints_a_roff_page_naming_every_subcommand() {
    let sb = Sandbox::new();
    let out = crate::common::output(sb.command(&["man"])).await;
    assert_eq!(code(&out), 0);
    let page = stdout(&out);
    assert!(page.starts_with(".TH"), "{}", &page[..60.min(page.len())]);
    for sub in subcommands() {
        let heading = format!(".SH \"PROMPTBATCH {}\"", sub.to_uppercase());
        assert!(page.contains(&heading), "no {sub}");
    }
}

#[tokio::test]
async fn version_names_the_commit_it_was_built_from() {
    let sb = Sandbox::new();
    let out = crate::common::output(sb.command(&["--version"])).await;
    assert_eq!(code(&out), 0);
    // The commit as this test finds it, independently of the build script.
    let root = env!("CARGO_MANIFEST_DIR");
    let commit = std::path::Path::new(root)
        .join(".git")
        .exists()
        .then(|| {
            std::process::Command::new("git")
                .args(["rev-parse", "--short", "HEAD"])
                .current_dir(root)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        })
        .flatten()
        .unwrap_or_else(|| "unknown".to_string());
    let expected = format!("promptbatch {} ({commit})\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(stdout(&out), expected);
}

#[tokio::test]
async fn validate_checks_the_run_flags_its_help_leaves_out() {
    let sb = Sandbox::new();
    sb.write("rows.jsonl", "{\"prompt\":\"hi\"}\n");
    let base = [
        "validate",
        "--input",
        "rows.jsonl",
        "--model",
        "m",
        "--simulate",
    ];
    let ok =
        crate::common::output(sb.command(&[&base[..], &["--concurrency", "4"]].concat())).await;
    assert_eq!(code(&ok), 0, "{}", crate::common::stderr(&ok));
    // A preflight given the run's flags passes only if the run could start.
    let bad =
        crate::common::output(sb.command(&[&base[..], &["--concurrency", "0"]].concat())).await;
    assert_eq!(code(&bad), 2);
    assert!(crate::common::stderr(&bad).contains("--concurrency"));
}
