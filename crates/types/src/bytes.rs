//! Fixed-size byte newtypes (digests, public keys, signatures) shown as hex.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Error parsing a hex-encoded fixed-size value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} hex bytes: {reason}")]
pub struct HexError {
    /// Number of bytes expected.
    pub expected: usize,
    /// What was wrong.
    pub reason: String,
}

fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    let bytes = hex::decode(s).map_err(|e| HexError {
        expected: N,
        reason: e.to_string(),
    })?;
    bytes.try_into().map_err(|b: Vec<u8>| HexError {
        expected: N,
        reason: format!("got {} bytes", b.len()),
    })
}

macro_rules! hex_bytes {
    ($(#[$meta:meta])* $name:ident, $n:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// Number of bytes.
            pub const LEN: usize = $n;
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $n] {
                &self.0
            }
            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self([0; $n])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}..)", stringify!($name), &hex::encode(&self.0[..4]))
            }
        }

        impl FromStr for $name {
            type Err = HexError;
            fn from_str(s: &str) -> Result<Self, HexError> {
                parse_hex::<$n>(s).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(self.0))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as Deserialize>::deserialize(d)?;
                s.parse().map_err(D::Error::custom)
            }
        }
    };
}

hex_bytes!(
    /// A 32-byte blake3 digest.
    Digest,
    32
);
hex_bytes!(
    /// An ed25519 public key (32 bytes); also an account address.
    PublicKey,
    32
);
hex_bytes!(
    /// An ed25519 signature (64 bytes).
    Signature,
    64
);
hex_bytes!(
    /// A 16-byte reference chosen by whoever creates a request (unique per request).
    Reference,
    16
);

/// Serde for variable-length bytes as a lowercase hex string.
pub mod hex_vec {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as hex.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    /// Parses hex.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        hex::decode(s).map_err(|e| D::Error::custom(format!("expected hex bytes: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let d = Digest([7; 32]);
        let s = d.to_string();
        assert_eq!(s.parse::<Digest>().unwrap(), d);
        assert_eq!(format!("0x{s}").parse::<Digest>().unwrap(), d);
        assert!("abcd".parse::<Digest>().is_err());
        assert!("zz".repeat(32).parse::<Digest>().is_err());
    }
}
