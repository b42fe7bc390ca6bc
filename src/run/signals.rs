//! Ctrl-C and SIGTERM during a run: the first stops sending and gives the
//! requests in flight their grace period, the second stops at once.

use std::sync::Arc;

use super::GRACE;
use crate::printer;
use crate::scheduler::StopSignal;

pub(super) async fn watch_signals(stop: Arc<StopSignal>, quiet: bool) {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        #[cfg(unix)]
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminated = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated => {}
        }
        let second = stop.interrupt();
        if quiet {
            continue;
        }
        if second {
            printer::notice("stopping at once: requests in flight are recorded as abandoned");
        } else {
            printer::notice(format_args!(
                "stopping: nothing new is sent; requests in flight get {} s (press Ctrl-C again to stop at once)",
                GRACE.as_secs()
            ));
        }
    }
}
