//! The static server that is not ours: Debian's nginx, started by the
//! benchmark on a free loopback port when it is installed, answering every
//! POST with one fixed chat completion. It shows what the client costs against
//! a server that spends next to nothing per request.
//!
//! nginx counts nothing the benchmark can read, so the requests of its row
//! are the summary's ok + failed, not a server-side count.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the row says when there is no nginx to run.
pub const NOT_INSTALLED: &str = "nginx not installed (apt-get install nginx-light)";

/// The one answer nginx gives: a complete chat completion with usage, so the
/// client writes the same full record as against the mock.
pub const BODY: &str = concat!(
    r#"{"id":"chatcmpl-static","object":"chat.completion","created":1700000000,"#,
    r#""model":"google/gemma-3-4b-it","choices":[{"index":0,"message":"#,
    r#"{"role":"assistant","content":"The capital is Paris."},"finish_reason":"stop"}],"#,
    r#""usage":{"prompt_tokens":24,"completion_tokens":6,"total_tokens":30}}"#
);

/// The nginx executable: `PROMPTBATCH_BENCH_NGINX` when set, else on PATH,
/// else Debian's /usr/sbin (not on a normal user's PATH).
pub fn find() -> Option<PathBuf> {
    // Another nginx, or none at all with a path that is not a file.
    if let Some(exe) = std::env::var_os("PROMPTBATCH_BENCH_NGINX") {
        let exe = PathBuf::from(exe);
        return exe.is_file().then_some(exe);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
}

/// The whole configuration for one worker on `port`, every file it writes
/// (error log, pid, temporary bodies) inside `dir`, so it runs as any user
/// and leaves nothing behind. `return` answers before the content phase, so
/// a POST gets the body too (the static module would refuse it with a 405).
pub fn config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    let temps: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|t| format!("    {t}_temp_path {d}/{t}_temp;\n"))
        .collect();
    format!(
        "worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
{temps}    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{BODY}';
        }}
    }}
}}
"
    )
}

/// A running nginx; killed and reaped when dropped, also when the benchmark
/// panics in between.
pub struct Nginx {
    child: Child,
    port: u16,
    /// Holds the configuration and the logs until nginx is gone.
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts `exe` on a free loopback port and waits until the port accepts;
    /// why not, in words, for the row that is then skipped.
    pub fn start(exe: &Path) -> Result<Nginx, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
        // A port the kernel just gave out is free; nginx binds it right after.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config(dir.path(), port)).map_err(|e| format!("config: {e}"))?;
        let child = Command::new(exe)
            // -e: the error log before the configuration is read (the
            // compiled-in one may not be writable).
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("nginx does not start: {e}"))?;
        let mut nginx = Nginx {
            child,
            port,
            _dir: dir,
        };
        nginx.wait_ready()?;
        Ok(nginx)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log =
                    std::fs::read_to_string(self._dir.path().join("error.log")).unwrap_or_default();
                return Err(format!("nginx exited with {status}: {}", log.trim()));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx did not accept on port {} in 10 s",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The base URL the client is given.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM first: the master tells its worker to quit and waits for
        // it (a SIGKILLed master leaves its worker running). SIGKILL if it
        // has not gone within two seconds.
        // SAFETY: kill(2) on our own child's pid, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
