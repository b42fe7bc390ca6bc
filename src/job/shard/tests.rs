//! The shard hash pinned to fixed ids, and every source of K and N with its bad values.

use std::collections::HashMap;

use super::*;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.get(name).cloned()
}

fn shard(index: u64, count: u64) -> Shard {
    Shard { index, count }
}

#[test]
fn the_hash_is_the_contracts_on_every_machine_and_version() {
    // First 8 bytes of SHA-256, big-endian: computed independently
    // (python3: int.from_bytes(hashlib.sha256(id).digest()[:8], "big")).
    // Changing any of these splits every sharded job differently.
    let pinned = [
        ("q1", 0xc75d_e8c1_b7c3_ae52_u64),
        ("q2", 0xbee9_8bf1_20e8_9063),
        ("17", 0x4523_540f_1504_cd17),
        ("row-42", 0x4aed_7eeb_4664_0064),
        ("ü", 0x6074_74ca_475a_9724),
        ("a/b", 0xc14c_ddc0_33f6_4b9d),
    ];
    for (id, first8) in pinned {
        for n in [1, 2, 4, 7, 1000] {
            assert_eq!(of(id, n), first8 % n, "{id:?} mod {n}");
        }
    }
    assert_eq!(of("q1", 4), 2);
    assert_eq!(of("q2", 4), 3);
    assert_eq!(of("row-42", 4), 0);
    assert_eq!(of("a/b", 4), 1);
    assert_eq!(of("row-42", 1000), 892);
}

#[test]
fn every_id_is_in_exactly_one_shard() {
    for i in 0..500 {
        let id = format!("id{i}");
        let owners = (0..5).filter(|k| shard(*k, 5).has(&id)).count();
        assert_eq!(owners, 1, "{id}");
        assert!(Shard::default().has(&id));
    }
}

#[test]
fn the_placeholder_and_display() {
    assert_eq!(shard(2, 4).placeholder(), "2-of-4");
    assert_eq!(Shard::default().placeholder(), "0-of-1");
    assert_eq!(shard(2, 4).to_string(), "2/4");
    assert!(!Shard::default().is_split());
}

#[test]
fn k_of_n_parses_and_bad_values_say_what_to_do() {
    assert_eq!(parse("0/4"), Ok(shard(0, 4)));
    assert_eq!(parse(" 3 / 4 "), Ok(shard(3, 4)));
    assert_eq!(parse("0/1"), Ok(shard(0, 1)));
    for bad in ["4/4", "5/4", "0/0", "1", "a/4", "1/b", "-1/4", "1/4/2", ""] {
        let e = parse(bad).expect_err(bad);
        assert!(e.contains(&format!("{bad:?}")), "{e}");
    }
    assert!(parse("4/4").unwrap_err().contains("0 to 3"));
    assert!(parse("0/0").unwrap_err().contains("at least 1"));
}

#[test]
fn nothing_said_is_the_whole_job() {
    assert_eq!(resolve(None, None, &env(&[])), Ok(Shard::default()));
    // Index 0 without --shards may be a Job of one completion: the whole job.
    assert_eq!(
        resolve(None, None, &env(&[(K8S_INDEX, "0")])),
        Ok(Shard::default())
    );
}

/// A pod above index 0 with no --shards is one of several: run as the whole
/// job, every pod would send (and pay for) every row. Refused, saying what to pass.
#[test]
fn a_kubernetes_index_above_0_without_shards_is_refused() {
    let e = env(&[(K8S_INDEX, "2")]);
    let err = resolve(None, None, &e).expect_err("one pod of several");
    assert_eq!(err.place, K8S_INDEX);
    assert!(
        err.message.contains("--shards N") && err.message.contains("--shard 0/1"),
        "{err}"
    );
    // Said any other way, the shard is what was said.
    assert_eq!(resolve(Some("0/1"), None, &e), Ok(Shard::default()));
    assert_eq!(resolve(None, Some(3), &e), Ok(shard(2, 3)));
    let with_var = env(&[(K8S_INDEX, "2"), (SHARD_VAR, "1/4")]);
    assert_eq!(resolve(None, None, &with_var), Ok(shard(1, 4)));
}

#[test]
fn kubernetes_index_with_shards() {
    let e = env(&[(K8S_INDEX, "2")]);
    assert_eq!(resolve(None, Some(4), &e), Ok(shard(2, 4)));
    let missing = resolve(None, Some(4), &env(&[])).expect_err("no index");
    assert_eq!(missing.place, "--shards");
    assert!(missing.message.contains(K8S_INDEX), "{missing}");
    let over = resolve(None, Some(2), &e).expect_err("2 of 2");
    assert_eq!(over.place, K8S_INDEX);
    assert!(over.message.contains("completions"), "{over}");
    let junk = resolve(None, Some(4), &env(&[(K8S_INDEX, "x")])).expect_err("x");
    assert_eq!(junk.place, K8S_INDEX);
    assert_eq!(resolve(None, Some(0), &e).expect_err("0").place, "--shards");
}

#[test]
fn slurm_arrays_from_one_and_with_a_step() {
    // --array=1-4: ids 1..=4, min 1, count 4, no step variable.
    for (id, k) in [("1", 0), ("2", 1), ("3", 2), ("4", 3)] {
        let e = env(&[(SLURM_ID, id), (SLURM_MIN, "1"), (SLURM_COUNT, "4")]);
        assert_eq!(resolve(None, None, &e), Ok(shard(k, 4)), "id {id}");
    }
    // --array=0-15:4: ids 0, 4, 8, 12.
    for (id, k) in [("0", 0), ("4", 1), ("8", 2), ("12", 3)] {
        let e = env(&[
            (SLURM_ID, id),
            (SLURM_MIN, "0"),
            (SLURM_STEP, "4"),
            (SLURM_COUNT, "4"),
        ]);
        assert_eq!(resolve(None, None, &e), Ok(shard(k, 4)), "id {id}");
    }
}

#[test]
fn slurm_values_off_the_grid_or_missing_are_refused() {
    let base = |id: &str| {
        env(&[
            (SLURM_ID, id),
            (SLURM_MIN, "0"),
            (SLURM_STEP, "4"),
            (SLURM_COUNT, "4"),
        ])
    };
    let off = resolve(None, None, &base("5")).expect_err("off the grid");
    assert_eq!(off.place, SLURM_ID);
    assert!(off.message.contains("grid"), "{off}");
    let past = resolve(None, None, &base("16")).expect_err("past the count");
    assert_eq!(past.place, SLURM_ID);
    let no_count = env(&[(SLURM_ID, "1"), (SLURM_MIN, "0")]);
    assert_eq!(
        resolve(None, None, &no_count).expect_err("no count").place,
        SLURM_COUNT
    );
    let junk = env(&[(SLURM_ID, "1"), (SLURM_MIN, "0"), (SLURM_COUNT, "x")]);
    assert_eq!(
        resolve(None, None, &junk).expect_err("junk").place,
        SLURM_COUNT
    );
    let zero_step = env(&[
        (SLURM_ID, "1"),
        (SLURM_MIN, "0"),
        (SLURM_STEP, "0"),
        (SLURM_COUNT, "2"),
    ]);
    assert_eq!(
        resolve(None, None, &zero_step).expect_err("step 0").place,
        SLURM_STEP
    );
}

#[test]
fn a_flag_beats_the_environment_and_promptbatch_shard_beats_slurm() {
    let e = env(&[
        (SHARD_VAR, "1/3"),
        (SLURM_ID, "0"),
        (SLURM_MIN, "0"),
        (SLURM_COUNT, "2"),
        (K8S_INDEX, "0"),
    ]);
    assert_eq!(resolve(Some("2/5"), None, &e), Ok(shard(2, 5)));
    assert_eq!(resolve(None, Some(4), &e), Ok(shard(0, 4)));
    assert_eq!(resolve(None, None, &e), Ok(shard(1, 3)));
    let bad = resolve(None, None, &env(&[(SHARD_VAR, "3/3")])).expect_err("3/3");
    assert_eq!(bad.place, SHARD_VAR);
    assert!(bad.message.contains("PROMPTBATCH_SHARD=\"3/3\""), "{bad}");
    assert_eq!(
        resolve(Some("9/2"), None, &e).expect_err("9/2").place,
        "--shard"
    );
}
