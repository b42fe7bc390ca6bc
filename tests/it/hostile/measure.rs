//! Runs the binary to its end under a wall-clock bound and measures its
//! peak resident memory.

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::WALL;

/// How a run of the binary ended.
pub(super) struct Finished {
    pub code: i32,
    pub stderr: String,
    pub elapsed: Duration,
    /// The child's peak resident memory; None when the run ended before it
    /// could be sampled (a run of a few milliseconds).
    pub peak_rss_bytes: Option<u64>,
}

/// Runs the child to its end and measures its peak memory; kills it past
/// [`WALL`] + 30 s so a broken bound fails the test instead of hanging it.
///
/// On Linux the peak is the child's own `VmHWM`, sampled every few
/// milliseconds from /proc once it runs our binary: `ru_maxrss` from `wait4`
/// also counts the memory of the test process it was spawned from (the kernel
/// carries the pre-exec high-water mark over), so it grows with whatever the
/// other tests hold. Elsewhere `ru_maxrss` is the best there is.
// The child is reaped by wait4 (which also gives its rusage), not by Child::wait.
#[allow(clippy::zombie_processes)]
pub(super) async fn run_measured(mut cmd: Command, stderr_path: std::path::PathBuf) -> Finished {
    tokio::task::spawn_blocking(move || {
        let stderr_file = File::create(&stderr_path).expect("stderr file");
        cmd.stdout(Stdio::null()).stderr(stderr_file);
        let program = std::path::PathBuf::from(cmd.get_program());
        let started = Instant::now();
        let child = cmd.spawn().expect("the binary starts");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        let (ended, watch) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            let mut peak_kib = 0u64;
            loop {
                match watch.recv_timeout(Duration::from_millis(5)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return peak_kib,
                }
                if started.elapsed() > WALL + Duration::from_secs(30) {
                    // SAFETY: kill(2) on our own child, which has not been reaped yet.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                if let Some(kib) = own_peak_kib(pid, &program) {
                    peak_kib = peak_kib.max(kib);
                }
            }
        });
        let mut status = 0;
        // SAFETY: rusage is plain data, filled by wait4 for the child we started.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let elapsed = started.elapsed();
        let _ = ended.send(());
        let sampled_kib = watchdog.join().expect("watchdog");
        assert_eq!(reaped, pid, "wait4 failed");
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        let max_rss = u64::try_from(usage.ru_maxrss).unwrap_or(0);
        let peak_rss_bytes = if cfg!(target_os = "linux") {
            (sampled_kib > 0).then_some(sampled_kib * 1024)
        } else if cfg!(target_os = "macos") {
            Some(max_rss)
        } else {
            Some(max_rss * 1024)
        };
        Finished {
            code,
            stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
            elapsed,
            peak_rss_bytes,
        }
    })
    .await
    .expect("join")
}

/// The high-water mark of resident memory (KiB) of `pid` once it runs
/// `program`; None before its exec, after its exit, or off Linux.
fn own_peak_kib(pid: libc::pid_t, program: &std::path::Path) -> Option<u64> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    if exe.file_name() != program.file_name() {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
