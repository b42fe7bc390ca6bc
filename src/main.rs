//! The thin binary: parse flags, build the runtime, map the exit status to the process exit code.

use clap::FromArgMatches;

use promptbatch::cli::{Cli, ColorChoice, LogFormat};
use promptbatch::printer;

fn main() {
    ignore_file_size_signal();
    no_huge_pages();
    let cli = parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            promptbatch::printer::error(format_args!("cannot start the async runtime: {e}"));
            std::process::exit(promptbatch::ExitStatus::Invalid.code());
        }
    };
    let status = runtime.block_on(promptbatch::main(cli));
    // Every request has ended by now; do not wait on a blocking thread that
    // may still sit in a read (a spooled standard input, say).
    runtime.shutdown_background();
    std::process::exit(status.code());
}

/// Under a file-size limit (`ulimit -f`, systemd's `LimitFSIZE=`) the
/// kernel kills a process whose write passes it with SIGXFSZ: no summary, no
/// message, exit 153. Ignored, the write fails with EFBIG instead, and the
/// run handles that as it handles a full disk (exit 5, a rerun resumes).
fn ignore_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread starts; SIG_IGN
    // installs no handler code, and signal() with a valid signal number and
    // SIG_IGN has no other precondition.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// The flags; a usage error is said as clap says it, or, when the command
/// line asks for `--log-format json`, as one JSON error event, so every line
/// on stderr stays JSON for a shipper even when the flags are wrong.
///
/// clap prints help and its errors before the flags are parsed: it takes
/// `--color` from the raw arguments, so `--color never --help` is plain.
fn parse() -> Cli {
    let color = ColorChoice::from_args(std::env::args_os());
    let parsed = promptbatch::docs::command()
        .color(color.clap())
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    match parsed {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() && asks_json_logs(std::env::args_os().skip(1)) => {
            printer::set_format(LogFormat::Json);
            let text = e.render().to_string();
            let text = text.trim_end();
            printer::error(text.strip_prefix("error: ").unwrap_or(text));
            std::process::exit(e.exit_code());
        }
        Err(e) => e.exit(),
    }
}

/// `--log-format json` or `--log-format=json` among the arguments.
fn asks_json_logs(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let mut previous = None;
    for arg in args {
        if arg == "--log-format=json"
            || (previous.as_deref() == Some("--log-format".as_ref()) && arg == "json")
        {
            return true;
        }
        previous = Some(arg);
    }
    false
}

/// Transparent huge pages off for this process: where the kernel gives
/// them to every large enough mapping ("always"), one byte written into a
/// fresh 2 MiB region of the allocator makes it all resident, which added
/// 15 MiB of peak memory to a run of a million rows for no measurable speed.
/// (The allocator itself never asks for them: mimalloc's `no_thp`.)
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// mimalloc: about 20 % less CPU per request than the system allocator in the
/// benchmark, where every request allocates its body, reply and record.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
