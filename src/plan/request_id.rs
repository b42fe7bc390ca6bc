//! `X-Client-Request-Id` values: `<job>:<id>:<set>:<attempt>`.
//!
//! The AI/ML API keeps only 1–128 characters of `[A-Za-z0-9._:-]` and
//! silently drops a header with anything else, so every other character is
//! written as `_`, and a value that could grow past 128 characters is
//! shortened: first the id becomes a hash, then the job and set are cut.

use sha2::{Digest, Sha256};

/// The longest header value the provider keeps.
const MAX_LEN: usize = 128;
/// Room kept for `:<attempt>` (up to 999 attempts).
const ATTEMPT_ROOM: usize = 4;
/// Hex digits of the id's SHA-256 used when the id is too long.
const ID_HASH_LEN: usize = 16;

/// Every character outside `[A-Za-z0-9._:-]` written as `_`.
pub(super) fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `parts` joined by `:`, in one allocation (a million requests: no
/// formatting machinery per request).
fn colon_joined(parts: [&str; 3]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(part);
    }
    out
}

/// `<job>:<id>:<set>`, short enough that `:<attempt>` still fits in 128
/// characters. `job` and `set` are already sanitized (they are the same for
/// every row); the id is sanitized here.
pub(super) fn prefix(job: &str, id: &str, set: &str) -> String {
    let limit = MAX_LEN - ATTEMPT_ROOM;
    let id_part = sanitize(id);
    if job.len() + id_part.len() + set.len() + 2 <= limit {
        return colon_joined([job, &id_part, set]);
    }
    let digest = super::hex(&Sha256::digest(id.as_bytes()));
    let id_part = &digest[..ID_HASH_LEN];
    let room = limit - ID_HASH_LEN - 2;
    if job.len() + set.len() <= room {
        return format!("{job}:{id_part}:{set}");
    }
    // Cut the longer of the two, keeping at least half the room for each
    // when both are long. Sanitized text is ASCII, so byte cuts are safe.
    let half = room / 2;
    let (job_len, set_len) = if job.len() <= half {
        (job.len(), room - job.len())
    } else if set.len() <= half {
        (room - set.len(), set.len())
    } else {
        (room - half, half)
    };
    format!("{}:{id_part}:{}", &job[..job_len], &set[..set_len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_outside_the_kept_set_become_underscores() {
        assert_eq!(sanitize("faq nightly/v2"), "faq_nightly_v2");
        assert_eq!(sanitize("q-17.a_b:c"), "q-17.a_b:c");
        assert_eq!(sanitize("é💥x"), "__x");
        assert_eq!(prefix("job", "id 1", "set"), "job:id_1:set");
    }

    #[test]
    fn a_long_id_becomes_its_hash() {
        let id = "x".repeat(200);
        let p = prefix("job", &id, "precise");
        let digest = crate::plan::hex(&Sha256::digest(id.as_bytes()));
        assert_eq!(p, format!("job:{}:precise", &digest[..16]));
    }

    #[test]
    fn an_id_that_just_fits_is_kept() {
        // job(3) + id + set(7) + 2 colons = 124 leaves room for ":999".
        let id = "i".repeat(124 - 3 - 7 - 2);
        let p = prefix("job", &id, "precise");
        assert_eq!(p, format!("job:{id}:precise"));
        assert_eq!(format!("{p}:999").len(), 128);
        let longer = format!("{id}i");
        assert!(!prefix("job", &longer, "precise").contains(&longer));
    }

    #[test]
    fn long_job_and_set_names_are_cut_to_fit() {
        for (job_len, set_len) in [(300, 5), (5, 300), (300, 300), (60, 70)] {
            let job = "j".repeat(job_len);
            let set = "s".repeat(set_len);
            let p = prefix(&job, "q1", &set);
            assert!(p.len() + 4 <= 128, "{job_len}/{set_len}: {}", p.len());
            let parts: Vec<_> = p.split(':').collect();
            assert_eq!(parts.len(), 3);
            assert_eq!(parts[1].len(), 16, "the id is hashed first");
            assert!(parts[0].starts_with('j') && parts[2].starts_with('s'));
        }
        let p = prefix(&"j".repeat(300), "q1", "precise");
        assert!(p.ends_with(":precise"), "a short set is kept whole: {p}");
    }
}
