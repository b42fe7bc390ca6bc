//! What both benchmarks measure a child process with: its exit status and
//! resource usage (CPU time, peak memory) from `wait4`.

use std::time::Duration;

/// Waits for the child `pid`; its exit code and resource usage.
pub fn wait4(pid: libc::pid_t) -> (i32, libc::rusage) {
    // SAFETY: wait4 writes the status and rusage of our own child into the
    // locals passed by pointer; both are plain C structs.
    unsafe {
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        let r = libc::wait4(pid, &mut status, 0, &mut usage);
        assert_eq!(r, pid, "wait4 failed");
        (libc::WEXITSTATUS(status), usage)
    }
}

/// A `timeval` as a `Duration`.
pub fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}
