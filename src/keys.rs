//! Compact maps keyed by request key, for jobs of millions of rows.
//!
//! A run needs to know, for every key of the job, whether it is done, sent,
//! and how it ended; holding the key strings (and 64-hex-digit hashes) for a
//! million rows costs hundreds of MiB. A [`KeyId`] is a 128-bit fingerprint
//! of the key instead (two independent SipHashes): within one process the
//! chance of two keys of even a billion-row job colliding is below 10^-20.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::OnceLock;

/// The fingerprint of one request key (`<id>/<param set>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(u128);

impl KeyId {
    pub fn of(key: &str) -> KeyId {
        static SEEDS: OnceLock<(RandomState, RandomState)> = OnceLock::new();
        let (a, b) = SEEDS.get_or_init(|| (RandomState::new(), RandomState::new()));
        KeyId((u128::from(a.hash_one(key)) << 64) | u128::from(b.hash_one(key)))
    }
}

/// A map by [`KeyId`]; the id is already a hash, so it is not hashed again.
pub type KeyMap<V> = HashMap<KeyId, V, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only KeyId (a u128) is ever hashed here; this keeps any other use correct.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// The first 128 bits of a hex SHA-256: enough to tell an edited request from
/// an unchanged one, in 16 bytes instead of a 64-character string.
pub fn sha_prefix(hex: &str) -> Option<u128> {
    u128::from_str_radix(hex.get(..32)?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_within_a_run_and_tell_keys_apart() {
        assert_eq!(KeyId::of("q1/precise"), KeyId::of("q1/precise"));
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
        assert_eq!(
            sha_prefix(&hex),
            Some(0x3b9f_3b9f_3b9f_3b9f_3b9f_3b9f_3b9f_3b9f)
        );
        assert_eq!(sha_prefix("short"), None);
        assert_eq!(sha_prefix(&"zz".repeat(32)), None);
    }
}
