//! The check before sending, side by side: the check pass plans the input
//! on one thread while the resume scan (and the summary's read-back, in
//! the same pass) reads the output on another, and the two are joined once
//! both are done. Each reads a file of up to a million lines and neither
//! needs the other until the end, so a rerun with nothing to send takes
//! the time of the longer of the two on two cores, not of both.

use super::{checked, scan, Scan, StartError};
use crate::input::Spooled;
use crate::job::Job;
use crate::report;
use crate::sink::{self, ResumeState};

/// The check pass and the resume scan side by side, then joined: the same
/// judgement as `scan_input` after `sink::read`. Also the summary's tally
/// of every line, when the output holds one line per key.
pub(super) async fn scan_beside_output(
    job: &Job,
    file: &Spooled,
    fresh: bool,
    allow_empty: bool,
) -> Result<(Scan, ResumeState, Option<report::Tally>), StartError> {
    let output = job.output.path.clone();
    // No line to compare a request's hash with: none is computed in the
    // check (a line written meanwhile has the pass made again, below).
    let hash = !fresh && std::fs::metadata(&output).is_ok_and(|m| m.len() > 0);
    // The summary's read-back of the output is made in the same pass: kept
    // only when the output holds one line per key, every one of which the
    // summary reads back (see `run`).
    let reading = tokio::task::spawn_blocking(move || {
        let mut back = report::ReadBack::default();
        let resume = sink::read_with(&output, fresh, &mut back)?;
        let one_per_key = resume.lines > 0 && resume.lines == resume.keys;
        Ok::<_, sink::SinkError>((resume, one_per_key.then(|| back.finish())))
    });
    let (job, file) = (job.clone(), file.file.clone());
    let display = file.display.clone();
    let pass = {
        let (job, file) = (job.clone(), file.clone());
        tokio::task::spawn_blocking(move || scan::check(&job, &file, None, hash))
    };
    // An output that is not one is said first, as when it is read first.
    let (resume, prefold) = reading.await.map_err(StartError::Check)??;
    let pass = pass.await.map_err(StartError::Check)?;
    let (scan, resume) = tokio::task::spawn_blocking(move || {
        let mut resume = resume;
        let pass = match pass.needs_output() || pass.needs_hashes(&resume) {
            true => scan::check(&job, &file, Some(&resume), resume.lines > 0),
            false => pass,
        };
        let scan = scan::join(pass, &job, &file, &mut resume);
        (scan, resume)
    })
    .await
    .map_err(StartError::Check)?;
    let (scan, resume) = checked(scan, resume, display, allow_empty)?;
    Ok((scan, resume, prefold))
}
