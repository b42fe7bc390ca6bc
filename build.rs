//! Build script: records the commit the binary is built from for `--version`.
//!
//! `PROMPTBATCH_COMMIT` is the short hash of HEAD when this is a git checkout
//! and git runs, else "unknown" (a crates.io build has no .git). Nothing here
//! can fail the build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let commit = manifest_dir
        .as_deref()
        .and_then(|dir| {
            // Only this package's own checkout: a crate unpacked inside some
            // other repository must not report that repository's commit.
            if !dir.join(".git").exists() {
                return None;
            }
            watch_head(dir);
            git(dir, &["rev-parse", "--short", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=PROMPTBATCH_COMMIT={commit}");
}

/// Reruns this script when HEAD moves: HEAD itself (a checkout), the branch
/// it points to (a commit) and packed-refs (where a branch may live). Paths
/// come from git, so a linked worktree (.git is a file) works too. A path
/// that does not exist is not watched (cargo would rerun on every build).
fn watch_head(dir: &Path) {
    let mut watched = vec![git(dir, &["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(dir, &["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(dir, &["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        let path = dir.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// The trimmed standard output of a successful `git ARGS` in `dir`, if any.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}
