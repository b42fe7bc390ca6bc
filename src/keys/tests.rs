//! Fingerprints and their tables: lookups, duplicates, memory kept in place.
use super::*;

#[test]
fn ids_are_stable_within_a_run_and_tell_keys_apart() {
    assert_eq!(KeyId::of("q1/precise"), KeyId::of("q1/precise"));
    let id = KeyId::of("q1/precise");
    assert_eq!(ShortId::of("q1/precise"), ShortId::from(id));
    assert_ne!(KeyId::of("q1/precise"), KeyId::of("q1/creative"));
    let mut map: KeyMap<u32> = KeyMap::default();
    for i in 0..10_000 {
        map.insert(KeyId::of(&format!("r{i}/default")), i);
    }
    assert_eq!(map.len(), 10_000);
    assert_eq!(map.get(&KeyId::of("r1234/default")), Some(&1234));
}

#[test]
fn sha_prefixes_parse_hex_and_reject_anything_else() {
    let hex = "3b9f".repeat(16);
    assert_eq!(sha_prefix(&hex), Some(0x3b9f_3b9f_3b9f_3b9f >> 2));
    assert_ne!(sha_prefix(&hex), sha_prefix(&"3b9e".repeat(16)));
    assert_eq!(sha_prefix("short"), None);
    assert_eq!(sha_prefix(&"zz".repeat(32)), None);
}

#[test]
fn a_table_finds_every_key_it_holds_and_no_other() {
    for n in [0u32, 1, 2, 3, 100, 70_000, 200_000] {
        let mut gathered = Gather::default();
        for i in 0..n {
            gathered.push((KeyId::of(&format!("r{i}/default")), i));
        }
        assert_eq!(gathered.len(), n as usize);
        let (mut table, dropped) = KeyTable::build(gathered, Keep::First, None);
        assert!(dropped.is_empty());
        assert_eq!(table.len(), n as usize);
        for i in (0..n).step_by(7) {
            assert_eq!(table.get(&KeyId::of(&format!("r{i}/default"))), Some(&i));
        }
        assert!(!table.contains_key(&KeyId::of("absent/default")));
        if n > 0 {
            *table.get_mut(&KeyId::of("r0/default")).expect("held") = 99;
            assert!(table.values().any(|v| *v == 99));
        }
    }
    assert_eq!(KeyTable::<u8>::default().get(&KeyId::of("x")), None);
}

#[test]
fn a_table_entry_is_an_id_and_one_word() {
    // What a million keys cost: 24 MB for the job's, 16 for the output's.
    assert_eq!(std::mem::size_of::<(KeyId, u64)>(), 24);
    assert_eq!(std::mem::size_of::<(ShortId, u64)>(), 16);
    let mut gathered = Gather::default();
    gathered.expect(10_000);
    for i in 0..1000u64 {
        gathered.push((ShortId::of(&format!("r{i}")), i));
    }
    let (table, _) = KeyTable::build(gathered, Keep::Last, None);
    assert_eq!(table.len(), 1000);
    assert_eq!(table.get(&ShortId::of("r999")), Some(&999));
    assert!(table.index.len() <= 1000 / 2);
}

#[test]
fn entries_made_into_others_of_their_size_keep_their_memory() {
    let mut gathered = Gather::default();
    gathered.expect(1000);
    for i in 0..1000u64 {
        gathered.push((KeyId::of(&format!("r{i}")), i));
    }
    let at = gathered.items.as_ptr() as usize;
    let kept = gathered.filter_map(|i, (id, n)| (i % 3 != 0).then_some((id, [n as u32, 7])));
    assert_eq!(
        kept.items.as_ptr() as usize,
        at,
        "copied, not made in place"
    );
    assert_eq!(kept.len(), 666);
    assert_eq!(kept.items[0].1, [1, 7]);
}

#[test]
fn key_lines_sort_a_key_s_lines_together_in_file_order() {
    assert_eq!(std::mem::size_of::<KeyLine>(), 16);
    let (a, b) = (KeyId::of("a/default"), KeyId::of("b/default"));
    let mut lines = [
        KeyLine::new(a, 9),
        KeyLine::new(b, 2),
        KeyLine::new(a, 1),
        KeyLine::new(b, u32::MAX),
        KeyLine::new(a, 4),
    ];
    lines.sort_unstable();
    let a_lines: Vec<u32> = lines
        .iter()
        .filter(|l| l.same_key(KeyLine::new(a, 0)))
        .map(|l| l.line())
        .collect();
    assert_eq!(a_lines, [1, 4, 9]);
    assert!(lines.windows(2).filter(|w| !w[0].same_key(w[1])).count() == 1);
    assert!([ShortId::from(a), ShortId::from(b)].contains(&lines[0].short()));
}

#[test]
fn the_estimate_of_lines_is_above_their_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rows.jsonl");
    let rows: String = (0..20_000).map(|i| format!("{{\"id\": {i}}}\n")).collect();
    std::fs::write(&path, rows).expect("write");
    let n = estimate_lines(&path);
    assert!((20_000..40_000).contains(&n), "{n}");
    assert_eq!(estimate_lines(&dir.path().join("none")), 0);
}

#[test]
fn a_key_pushed_twice_keeps_its_first_or_last_entry() {
    let push = |keep, order: Option<fn(&usize, &usize) -> std::cmp::Ordering>| {
        let mut gathered = Gather::default();
        gathered.expect(2);
        for (i, key) in ["a", "b", "a", "c", "a"].into_iter().enumerate() {
            gathered.push((KeyId::of(key), i));
        }
        let at = gathered.items.as_ptr() as usize;
        let built = KeyTable::build(gathered, keep, order);
        assert_eq!(
            built.0.entries.as_ptr() as usize,
            at,
            "copied, not weeded in place"
        );
        built
    };
    // In place, ordered by the value.
    let (first, _) = push(Keep::First, Some(|a: &usize, b: &usize| a.cmp(b)));
    assert_eq!(first.get(&KeyId::of("a")), Some(&0));
    let (first, mut dropped) = push(Keep::First, None);
    assert_eq!(first.get(&KeyId::of("a")), Some(&0));
    dropped.sort_by_key(|(_, i)| *i);
    assert_eq!(dropped.iter().map(|(_, i)| *i).collect::<Vec<_>>(), [2, 4]);
    let (last, dropped) = push(Keep::Last, None);
    assert_eq!(last.get(&KeyId::of("a")), Some(&4));
    assert_eq!((last.len(), dropped.len()), (3, 2));
    assert_eq!(last.get(&KeyId::of("c")), Some(&3));
}
