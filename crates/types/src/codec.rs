//! The canonical codec: borsh with a size bound and no trailing bytes.

use borsh::{BorshDeserialize, BorshSerialize};

/// Error decoding bytes into a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input is longer than the caller's bound.
    #[error("encoded value is {len} bytes, over the {max} byte limit")]
    TooLarge {
        /// Input length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The bytes are not a valid encoding (including trailing bytes or unknown variants).
    #[error("malformed encoding: {0}")]
    Malformed(String),
}

/// Encodes a value canonically.
pub fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh encoding into a Vec cannot fail")
}

/// The length of a value's canonical encoding, without building it.
pub fn encoded_len<T: BorshSerialize>(value: &T) -> usize {
    borsh::object_length(value).expect("borsh length of an in-memory value cannot fail")
}

/// Decodes a value, refusing inputs over `max_bytes` and any trailing bytes.
pub fn decode<T: BorshDeserialize>(bytes: &[u8], max_bytes: usize) -> Result<T, CodecError> {
    if bytes.len() > max_bytes {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max: max_bytes,
        });
    }
    borsh::from_slice(bytes).map_err(|e| CodecError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_trailing_bytes_and_oversize() {
        let mut bytes = encode(&(1u64, 2u32));
        assert_eq!(decode::<(u64, u32)>(&bytes, 100).unwrap(), (1, 2));
        bytes.push(0);
        assert!(matches!(
            decode::<(u64, u32)>(&bytes, 100),
            Err(CodecError::Malformed(_))
        ));
        assert!(matches!(
            decode::<(u64, u32)>(&bytes, 4),
            Err(CodecError::TooLarge { len: 13, max: 4 })
        ));
    }
}
