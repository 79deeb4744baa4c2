//! A pod's UID as a node holds it. The API server's UIDs are UUIDs in their lowercase
//! hyphenated form: held as their 16 bytes, inline, where a shared string was an
//! allocation of 52 bytes (a UID lives as long as its pod); any other UID is kept as
//! it is.

use std::fmt;

use super::runtime_id::lower_hex_bytes;

/// Where a UUID's hyphens are.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

/// A pod's UID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum PodUid {
    /// A lowercase hyphenated UUID, as bytes.
    Uuid([u8; 16]),
    /// Any other UID.
    Other(Box<str>),
}

impl From<&str> for PodUid {
    fn from(uid: &str) -> Self {
        match uuid_bytes(uid) {
            Some(bytes) => PodUid::Uuid(bytes),
            None => PodUid::Other(uid.into()),
        }
    }
}

/// The bytes of a UUID in its lowercase hyphenated form (36 characters).
fn uuid_bytes(uid: &str) -> Option<[u8; 16]> {
    let text = uid.as_bytes();
    if text.len() != 36 || HYPHENS.iter().any(|&at| text[at] != b'-') {
        return None;
    }
    let mut hex = [0u8; 32];
    let digits = text
        .iter()
        .enumerate()
        .filter(|(at, _)| !HYPHENS.contains(at));
    for (slot, (_, digit)) in hex.iter_mut().zip(digits) {
        *slot = *digit;
    }
    lower_hex_bytes(&hex)
}

impl fmt::Display for PodUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodUid::Uuid(bytes) => {
                for (at, byte) in bytes.iter().enumerate() {
                    if matches!(at, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            PodUid::Other(uid) => f.write_str(uid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_read_back_as_given_and_uuids_are_held_as_bytes() {
        let uuid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        let uid = PodUid::from(uuid);
        assert!(matches!(uid, PodUid::Uuid(_)));
        assert_eq!(uid.to_string(), uuid);
        assert_eq!(uid, PodUid::from(uuid.to_string().as_str()));
        for other in [
            "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f}",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg",
            "0f1e2d3c-4b5a-6978-87964a5b4c3d2e1f0",
            "pod-1",
            "",
        ] {
            let uid = PodUid::from(other);
            assert!(matches!(uid, PodUid::Other(_)), "{other}");
            assert_eq!(uid.to_string(), other);
            assert_ne!(uid, PodUid::from(uuid));
        }
        assert!(size_of::<PodUid>() <= 24);
    }
}
