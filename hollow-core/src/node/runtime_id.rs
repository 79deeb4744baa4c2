//! A sandbox's or container's id as a node holds it. Runtimes' ids are 64 lowercase hex
//! characters (containerd's, CRI-O's, the fake's): held as their 32 bytes, a record
//! keeps 40 bytes where a `String` took 88 (it lives as long as its pod); any other id
//! is kept as it is.

use std::fmt;

/// A runtime's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RuntimeId {
    /// 64 lowercase hex characters, as bytes.
    Hex([u8; 32]),
    /// Any other id.
    Other(Box<str>),
}

impl From<String> for RuntimeId {
    fn from(id: String) -> Self {
        match decode(&id) {
            Some(bytes) => RuntimeId::Hex(bytes),
            None => RuntimeId::Other(id.into_boxed_str()),
        }
    }
}

/// The bytes of an id of 64 lowercase hex characters.
fn decode(id: &str) -> Option<[u8; 32]> {
    lower_hex_bytes(id.as_bytes())
}

/// The bytes `hex` (lowercase hex digits, two a byte) spells; `None` for anything else.
pub(super) fn lower_hex_bytes<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    for (pair, byte) in hex.chunks(2).zip(&mut bytes) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(bytes)
}

impl From<&str> for RuntimeId {
    fn from(id: &str) -> Self {
        id.to_string().into()
    }
}

/// A lowercase hex digit's value.
fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for RuntimeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeId::Hex(bytes) => bytes.iter().try_for_each(|byte| write!(f, "{byte:02x}")),
            RuntimeId::Other(id) => f.write_str(id),
        }
    }
}

impl PartialEq<str> for RuntimeId {
    fn eq(&self, other: &str) -> bool {
        match self {
            RuntimeId::Hex(bytes) => decode(other).as_ref() == Some(bytes),
            RuntimeId::Other(id) => &**id == other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_as_given_and_hex_ones_are_held_as_bytes() {
        let hex = "0123456789abcdef".repeat(4);
        let id = RuntimeId::from(hex.clone());
        assert!(matches!(id, RuntimeId::Hex(_)));
        assert_eq!(id.to_string(), hex);
        assert!(id == *hex.as_str());
        for other in [
            "ABCDEF".repeat(10) + "0123",
            "abc".into(),
            "g".repeat(64),
            String::new(),
        ] {
            let id = RuntimeId::from(other.clone());
            assert!(matches!(id, RuntimeId::Other(_)), "{other}");
            assert_eq!(id.to_string(), other);
        }
        assert!(size_of::<Option<RuntimeId>>() <= 40);
    }
}
