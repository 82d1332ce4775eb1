//! Batch verification of ed25519 signatures under the ZIP-215 rules, with decoded public keys
//! kept between batches.
//!
//! The equation and its checks are ed25519-zebra's batch verifier's (`ed25519_zebra::batch`):
//! for signatures (R_i, s_i) by keys A_i on messages M_i, with k_i = SHA-512(R_i ‖ A_i ‖ M_i)
//! and random 128-bit z_i, the batch is valid when
//! `[8](−(Σ z_i s_i) B + Σ z_i R_i + Σ_A (Σ_{i: A_i = A} z_i k_i) A)` is the identity, every
//! R_i and A_i decodes (non-canonical encodings and small-order points allowed: ZIP-215) and
//! every s_i is canonical. ed25519-zebra decodes every key again in every batch: decoding is
//! a field square root (~3.4 µs here, about a quarter of a batched verification), and the same
//! senders sign batch after batch. This verifier takes decoded keys from [`KeyCache`] and
//! decodes only the ones it has not seen. Single verification stays ed25519-zebra's, and the
//! tests check that both accept the same inputs.

use std::sync::{Mutex, OnceLock};

use curve25519_dalek::digest::Update;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use netchain_types::{Digest, PublicKey, Signature};
use sha2::Sha512;

use crate::rng::BatchRng;

/// Decoded public keys, direct-mapped by their bytes: bounded by construction (a slot holds
/// one key; a key landing on a taken slot replaces it), so a flood of fresh keys costs only
/// their decoding, as it did without the cache. Entries are keyed by the exact 32 bytes, so
/// two encodings of one point (ZIP-215 allows non-canonical ones) are two entries, each
/// hashed into k_i as given.
pub(crate) struct KeyCache {
    slots: Mutex<Vec<Slot>>,
}

/// A key's bytes and its decoded point.
type Slot = Option<([u8; 32], EdwardsPoint)>;

/// Slots of the process's key cache (~6.5 MB: a decoded point is 160 bytes).
const KEY_CACHE_SLOTS: usize = 1 << 15;

impl KeyCache {
    fn new(slots: usize) -> Self {
        Self {
            slots: Mutex::new(vec![None; slots.max(1)]),
        }
    }

    /// The process-wide cache.
    pub(crate) fn global() -> &'static KeyCache {
        static CACHE: OnceLock<KeyCache> = OnceLock::new();
        CACHE.get_or_init(|| KeyCache::new(KEY_CACHE_SLOTS))
    }

    fn slot(bytes: &[u8; 32], len: usize) -> usize {
        // Keys are points' encodings, uniformly spread: their low bytes index well. Chosen
        // collisions only make keys decode again.
        let mut low = [0u8; 8];
        low.copy_from_slice(&bytes[..8]);
        (u64::from_le_bytes(low) % len as u64) as usize
    }

    /// The decoded points of `keys`, in order; `None` when one does not decode. One lock to
    /// look up, decoding outside it, one lock to keep what was decoded.
    pub(crate) fn decode(&self, keys: &[[u8; 32]]) -> Option<Vec<EdwardsPoint>> {
        let mut found: Vec<Option<EdwardsPoint>> = {
            let slots = self.slots.lock().ok()?;
            keys.iter()
                .map(|k| match &slots[Self::slot(k, slots.len())] {
                    Some((held, point)) if held == k => Some(*point),
                    _ => None,
                })
                .collect()
        };
        let mut fresh = Vec::new();
        for (k, point) in keys.iter().zip(found.iter_mut()) {
            if point.is_none() {
                let decoded = CompressedEdwardsY(*k).decompress()?;
                *point = Some(decoded);
                fresh.push((*k, decoded));
            }
        }
        if !fresh.is_empty() {
            if let Ok(mut slots) = self.slots.lock() {
                let len = slots.len();
                for (k, point) in fresh {
                    slots[Self::slot(&k, len)] = Some((k, point));
                }
            }
        }
        found.into_iter().collect()
    }
}

/// Checks `items` as one batch (at least two). `Err(())` when any key or R does not decode,
/// any s is not canonical, or the equation fails (which, for a batch with an invalid
/// signature, it does except with probability 2^-128).
pub(crate) fn verify(
    items: &[(PublicKey, Digest, Signature)],
    cache: &KeyCache,
    rng: &mut BatchRng,
) -> Result<(), ()> {
    // One coefficient per distinct key: a sender's several signatures share its point.
    let mut distinct: Vec<[u8; 32]> = Vec::with_capacity(items.len());
    let mut index: std::collections::HashMap<[u8; 32], usize, foldhash::fast::RandomState> =
        std::collections::HashMap::with_capacity_and_hasher(items.len(), Default::default());
    let key_of: Vec<usize> = items
        .iter()
        .map(|(pk, _, _)| {
            *index.entry(pk.0).or_insert_with(|| {
                distinct.push(pk.0);
                distinct.len() - 1
            })
        })
        .collect();
    let points = cache.decode(&distinct).ok_or(())?;

    let mut a_coeffs = vec![Scalar::ZERO; distinct.len()];
    let mut r_coeffs = Vec::with_capacity(items.len());
    let mut rs = Vec::with_capacity(items.len());
    let mut b_coeff = Scalar::ZERO;
    for ((pk, msg, sig), key) in items.iter().zip(key_of) {
        let mut r_bytes = [0u8; 32];
        r_bytes.copy_from_slice(&sig.0[..32]);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&sig.0[32..]);
        let r = CompressedEdwardsY(r_bytes).decompress().ok_or(())?;
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(())?;
        let k = Scalar::from_hash(Sha512::default().chain(r_bytes).chain(pk.0).chain(msg.0));
        let z = Scalar::from(rng.next_u128());
        b_coeff -= z * s;
        a_coeffs[key] += z * k;
        r_coeffs.push(z);
        rs.push(r);
    }
    let check = EdwardsPoint::vartime_multiscalar_mul(
        std::iter::once(&b_coeff)
            .chain(a_coeffs.iter())
            .chain(r_coeffs.iter()),
        std::iter::once(&curve25519_dalek::constants::ED25519_BASEPOINT_POINT)
            .chain(points.iter())
            .chain(rs.iter()),
    );
    if check.mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_and_answers_by_exact_bytes() {
        let cache = KeyCache::new(4);
        let keys: Vec<[u8; 32]> = (1..=12u8)
            .map(|i| crate::Keypair::from_secret([i; 32]).public().0)
            .collect();
        let decoded = cache.decode(&keys).unwrap();
        for (k, p) in keys.iter().zip(&decoded) {
            assert_eq!(CompressedEdwardsY(*k).decompress().unwrap(), *p);
        }
        // Four slots, so at most four kept, each under its own bytes.
        let slots = cache.slots.lock().unwrap();
        assert_eq!(slots.len(), 4);
        for (held, point) in slots.iter().flatten() {
            assert_eq!(CompressedEdwardsY(*held).decompress().unwrap(), *point);
        }
        drop(slots);
        // Answers again (from the slots or by decoding), and a bad key is a None.
        assert_eq!(cache.decode(&keys).unwrap(), decoded);
        let not_a_point = (2..=255u8)
            .map(|y| {
                let mut enc = [0u8; 32];
                enc[0] = y;
                enc
            })
            .find(|enc| CompressedEdwardsY(*enc).decompress().is_none())
            .unwrap();
        let mut with_bad = keys.clone();
        with_bad[5] = not_a_point;
        assert!(cache.decode(&with_bad).is_none());
    }
}
