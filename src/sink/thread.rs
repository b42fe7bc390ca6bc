//! The writer thread: appends the output's lines off the async runtime's
//! thread, so a slow disk never stalls reading the streams of requests in
//! flight nor inflates their latency figures.
//!
//! Batches of whole lines go to the thread over a channel bounded in bytes
//! (a semaphore the sender awaits and the thread releases once a batch is in
//! the file): dispatch goes on while a slow disk catches up, up to that many
//! bytes waiting, then backpressure. Each batch written is acknowledged in
//! order, so the caller counts a request for the job only once its line is in
//! the file. After a failed write (disk full) nothing more is attempted: what
//! comes is kept, in order, and handed back with the sink at the end for one
//! last attempt.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::Semaphore;

use super::{SinkError, Writer};

/// Where the thread appends: the output's [`Writer`] (a trait so a test can
/// stall it).
pub trait Append: Send + 'static {
    /// Appends `lines` (whole lines, each ending in a newline): all or none.
    fn append_lines(&mut self, lines: &[u8]) -> Result<(), SinkError>;
}

impl Append for Writer {
    fn append_lines(&mut self, lines: &[u8]) -> Result<(), SinkError> {
        Writer::append_lines(self, lines)
    }
}

/// A batch on its way to the thread, with the permits it holds.
struct Batch {
    lines: Vec<u8>,
    permits: u32,
}

/// What the thread leaves once every batch sent is handled.
pub struct Drained<A> {
    /// The sink, for a last attempt and the final checks.
    pub sink: A,
    /// The first failed write; nothing was attempted after it.
    pub failed: Option<SinkError>,
    /// The lines of every batch not acknowledged, in order.
    pub pending: Vec<u8>,
}

/// The sending side of the writer thread.
pub struct WriterThread<A> {
    tx: Option<Sender<Batch>>,
    /// One emptied buffer per batch written, in order.
    acks: Receiver<Vec<u8>>,
    /// Emptied buffers to fill again (no allocation per batch).
    spare: Vec<Vec<u8>>,
    room: Arc<Semaphore>,
    capacity: u32,
    handle: Option<JoinHandle<Drained<A>>>,
}

impl<A: Append> WriterThread<A> {
    /// Starts the thread. `capacity`: bytes of lines that may wait for it
    /// before [`send`](Self::send) waits; `on_fail` is called (on the thread)
    /// at the first failed write, so dispatch stops at once.
    pub fn spawn(
        sink: A,
        capacity: u32,
        on_fail: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<WriterThread<A>> {
        let capacity = capacity.max(1);
        let room = Arc::new(Semaphore::new(capacity as usize));
        let (tx, rx) = mpsc::channel();
        let (ack_tx, acks) = mpsc::channel();
        let thread_room = room.clone();
        let handle = std::thread::Builder::new()
            .name("promptbatch-writer".into())
            .spawn(move || write_loop(sink, &rx, &ack_tx, &thread_room, on_fail))?;
        Ok(WriterThread {
            tx: Some(tx),
            acks,
            spare: Vec::new(),
            room,
            capacity,
            handle: Some(handle),
        })
    }

    /// Queues `lines` for the thread, waiting while `capacity` bytes are
    /// already waiting. (A batch larger than the capacity waits for the queue
    /// to be empty.)
    pub async fn send(&mut self, lines: Vec<u8>) {
        if lines.is_empty() {
            return;
        }
        let permits = u32::try_from(lines.len())
            .unwrap_or(u32::MAX)
            .min(self.capacity);
        // The semaphore is never closed, so acquiring only waits.
        if let Ok(held) = self.room.acquire_many(permits).await {
            held.forget();
        }
        self.queue(Batch { lines, permits });
    }

    /// How many batches were written since the last call (in the order sent).
    pub fn written(&mut self) -> usize {
        let mut n = 0;
        for buffer in self.acks.try_iter() {
            n += 1;
            if self.spare.len() < 2 {
                self.spare.push(buffer);
            }
        }
        n
    }

    /// An empty buffer for the next batch, reusing one already written.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Sends `last` (without waiting for room: the run is over), waits for the
    /// thread to write everything, and returns what it leaves with the number
    /// of batches acknowledged meanwhile. `None` if the thread panicked.
    pub fn finish(mut self, last: Vec<u8>) -> (Option<Drained<A>>, usize) {
        if !last.is_empty() {
            self.queue(Batch {
                lines: last,
                permits: 0,
            });
        }
        self.tx = None;
        let drained = self.handle.take().and_then(|h| h.join().ok());
        let written = self.written();
        (drained, written)
    }

    fn queue(&mut self, batch: Batch) {
        if let Some(tx) = &self.tx {
            // The thread only ends once the sender is dropped (or it
            // panicked: `finish` then reports the batch lost).
            let _ = tx.send(batch);
        }
    }
}

impl<A> Drop for WriterThread<A> {
    /// Unwinding from a panic: whatever was queued still reaches the file.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn write_loop<A: Append>(
    mut sink: A,
    rx: &Receiver<Batch>,
    acks: &Sender<Vec<u8>>,
    room: &Semaphore,
    on_fail: impl FnOnce(),
) -> Drained<A> {
    let mut failed = None;
    let mut pending = Vec::new();
    let mut on_fail = Some(on_fail);
    for mut batch in rx.iter() {
        let permits = batch.permits as usize;
        if failed.is_none() {
            match sink.append_lines(&batch.lines) {
                Ok(()) => {
                    batch.lines.clear();
                    let _ = acks.send(batch.lines);
                }
                Err(e) => {
                    failed = Some(e);
                    if let Some(f) = on_fail.take() {
                        f();
                    }
                    pending = batch.lines;
                }
            }
        } else {
            // Dispatch has stopped: what still comes is bounded by the
            // requests that were in flight.
            pending.extend_from_slice(&batch.lines);
        }
        room.add_permits(permits);
    }
    Drained {
        sink,
        failed,
        pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Barrier, Mutex};
    use std::time::Duration;

    /// A sink that holds its first write until the test opens the gate.
    struct Gated {
        gate: Arc<Barrier>,
        first: bool,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Append for Gated {
        fn append_lines(&mut self, lines: &[u8]) -> Result<(), SinkError> {
            if std::mem::take(&mut self.first) {
                self.gate.wait();
            }
            self.got.lock().expect("lock").extend_from_slice(lines);
            Ok(())
        }
    }

    fn line(i: usize) -> Vec<u8> {
        format!("{{\"key\":\"{i:03}\"}}\n").into_bytes()
    }

    #[tokio::test]
    async fn a_stalled_writer_lets_sends_on_up_to_its_capacity_then_holds_them() {
        let gate = Arc::new(Barrier::new(2));
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Gated {
            gate: gate.clone(),
            first: true,
            got: got.clone(),
        };
        let size = line(0).len() as u32;
        // Room for 4 lines waiting (a batch's room is freed once it is written).
        let mut w = WriterThread::spawn(sink, 4 * size, || {}).expect("spawn");
        for i in 0..4 {
            tokio::time::timeout(Duration::from_secs(30), w.send(line(i)))
                .await
                .expect("room in the queue: the send does not wait");
        }
        // The thread took the first line and is stuck writing it: the fifth
        // must wait.
        let blocked = tokio::time::timeout(Duration::from_millis(300), w.send(line(4))).await;
        assert!(
            blocked.is_err(),
            "a fifth line is held back while the writer stalls"
        );
        assert_eq!(w.written(), 0, "nothing acknowledged while stalled");
        assert!(got.lock().expect("lock").is_empty());
        // The writer resumes: everything queued is written, in order.
        let opener = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.wait())
        };
        for i in 4..8 {
            tokio::time::timeout(Duration::from_secs(30), w.send(line(i)))
                .await
                .expect("room again once the writer resumed");
        }
        opener.join().expect("opener");
        let (drained, written) = w.finish(line(8));
        let drained = drained.expect("the thread ended");
        assert!(drained.failed.is_none() && drained.pending.is_empty());
        assert_eq!(written, 9, "every batch acknowledged");
        let want: Vec<u8> = (0..9).flat_map(line).collect();
        assert_eq!(*got.lock().expect("lock"), want);
    }

    /// Fails every write after the first `ok` ones.
    struct FailsAfter {
        ok: usize,
        got: Vec<u8>,
    }

    impl Append for FailsAfter {
        fn append_lines(&mut self, lines: &[u8]) -> Result<(), SinkError> {
            if self.ok == 0 {
                return Err(SinkError::Io {
                    path: "out.jsonl".into(),
                    error: std::io::Error::other("no space left on device"),
                });
            }
            self.ok -= 1;
            self.got.extend_from_slice(lines);
            Ok(())
        }
    }

    #[tokio::test]
    async fn after_a_failed_write_the_rest_is_kept_in_order_for_a_last_attempt() {
        let fails = Arc::new(AtomicBool::new(false));
        let sink = FailsAfter {
            ok: 2,
            got: Vec::new(),
        };
        let flag = fails.clone();
        let mut w = WriterThread::spawn(sink, 1 << 20, move || flag.store(true, Ordering::SeqCst))
            .expect("spawn");
        for i in 0..5 {
            w.send(line(i)).await;
        }
        let (drained, written) = w.finish(line(5));
        let drained = drained.expect("the thread ended");
        assert!(fails.load(Ordering::SeqCst), "told at the first failure");
        assert_eq!(written, 2);
        assert!(drained.failed.is_some());
        assert_eq!(drained.sink.got, [line(0), line(1)].concat());
        assert_eq!(drained.pending, (2..6).flat_map(line).collect::<Vec<u8>>());
    }

    #[tokio::test]
    async fn dropped_mid_run_it_still_writes_everything_queued() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Barrier::new(1));
        let sink = Gated {
            gate,
            first: true,
            got: got.clone(),
        };
        let mut w = WriterThread::spawn(sink, 1 << 20, || {}).expect("spawn");
        for i in 0..3 {
            w.send(line(i)).await;
        }
        drop(w);
        assert_eq!(
            *got.lock().expect("lock"),
            (0..3).flat_map(line).collect::<Vec<u8>>()
        );
    }
}
