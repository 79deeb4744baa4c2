//! Sandbox and container ids, and the digests image references carry.
//!
//! An id is made from a 64-bit key, so the fake's tables hold the key (8 bytes) and
//! make the id (64 hex characters, as long as a real runtime's) when asked: the key's
//! hex, then three mixes of it. Keys are a process-wide counter through a bijective
//! mix, started at a random point, so no two ids of a process are alike and two
//! processes' hardly ever are.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// The counter keys are made from.
static NEXT_KEY: LazyLock<AtomicU64> = LazyLock::new(|| AtomicU64::new(rand::random()));

/// An id's key in the fake's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct IdKey(u64);

impl IdKey {
    /// A key no other id of this process has.
    pub(super) fn new() -> Self {
        IdKey(mix(NEXT_KEY.fetch_add(1, Ordering::Relaxed)))
    }

    /// The id made from this key.
    pub(super) fn id(self) -> String {
        let IdKey(key) = self;
        let (a, b, c) = (mix(key), mix(key ^ 0x5555_5555_5555_5555), mix(!key));
        format!("{key:016x}{a:016x}{b:016x}{c:016x}")
    }

    /// The key `id` was made from; `None` for an id this process did not make.
    pub(super) fn of(id: &str) -> Option<Self> {
        let key = u64::from_str_radix(id.get(..16)?, 16).ok().map(IdKey)?;
        (key.id() == id).then_some(key)
    }
}

/// SplitMix64's finalizer: a bijection of 64-bit words that looks random.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A table by id, holding keys.
#[derive(Debug)]
pub(super) struct IdMap<V>(HashMap<IdKey, V>);

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap(HashMap::new())
    }
}

impl<V> IdMap<V> {
    pub(super) fn insert(&mut self, key: IdKey, value: V) {
        self.0.insert(key, value);
    }

    pub(super) fn get(&self, id: &str) -> Option<&V> {
        self.0.get(&IdKey::of(id)?)
    }

    pub(super) fn get_mut(&mut self, id: &str) -> Option<&mut V> {
        self.0.get_mut(&IdKey::of(id)?)
    }

    pub(super) fn by_key(&self, key: IdKey) -> Option<&V> {
        self.0.get(&key)
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<V> {
        self.0.remove(&IdKey::of(id)?)
    }

    pub(super) fn contains_key(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (IdKey, &V)> {
        self.0.iter().map(|(key, value)| (*key, value))
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (IdKey, &mut V)> {
        self.0.iter_mut().map(|(key, value)| (*key, value))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.0.values()
    }

    pub(super) fn retain(&mut self, keep: impl FnMut(&IdKey, &mut V) -> bool) {
        self.0.retain(keep);
    }
}

/// The SHA-256 of `input`, in lowercase hex.
fn hex_digest(input: &str) -> String {
    Sha256::digest(input.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `nginx:1.27` -> `docker.io/library/nginx@sha256:<digest of the name>`.
pub(super) fn image_ref(image: &str) -> String {
    let without_tag = match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    };
    let repo = without_tag.split('@').next().unwrap_or(without_tag);
    let qualified = match repo.split_once('/') {
        None => format!("docker.io/library/{repo}"),
        Some((host, _)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            repo.to_string()
        }
        Some(_) => format!("docker.io/{repo}"),
    };
    format!("{qualified}@sha256:{}", hex_digest(image))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_are_qualified_digests() {
        let nginx = image_ref("nginx:1.27");
        assert!(
            nginx.starts_with("docker.io/library/nginx@sha256:"),
            "{nginx}"
        );
        assert_eq!(nginx.len(), "docker.io/library/nginx@sha256:".len() + 64);
        assert!(image_ref("registry.k8s.io/pause:3.10").starts_with("registry.k8s.io/pause@"));
        assert!(image_ref("localhost:5000/app").starts_with("localhost:5000/app@"));
        assert!(image_ref("me/app:v1").starts_with("docker.io/me/app@"));
        assert_ne!(image_ref("nginx:1.27"), image_ref("nginx:1.28"));
    }

    #[test]
    fn ids_are_a_runtimes_length_distinct_and_read_back_to_their_keys() {
        let keys: Vec<IdKey> = (0..1000).map(|_| IdKey::new()).collect();
        let ids: std::collections::HashSet<String> = keys.iter().map(|k| k.id()).collect();
        assert_eq!(ids.len(), keys.len());
        for key in &keys {
            let id = key.id();
            assert_eq!(id.len(), 64);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert_eq!(IdKey::of(&id), Some(*key));
        }
        // Ids this process did not make, or changed ones, are no keys.
        let id = keys[0].id();
        let changed = format!("{}0", &id[..63]);
        assert!(changed == id || IdKey::of(&changed).is_none());
        assert_eq!(IdKey::of("missing"), None);
        assert_eq!(IdKey::of(&"f".repeat(64)), None);
        assert_eq!(IdKey::of("ñ"), None);
    }
}
