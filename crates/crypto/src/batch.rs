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

use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use curve25519_dalek::digest::Update;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use netchain_types::{Digest, PublicKey, Signature};
use sha2::Sha512;

use crate::rng::BatchRng;

/// Decoded public keys, direct-mapped by a keyed hash of their bytes (the key is drawn per
/// process, so slots cannot be aimed at): bounded by construction (a slot holds one key; a key
/// landing on a taken slot replaces it), so a flood of fresh keys costs only their decoding, as
/// it did without the cache. Entries are keyed by the exact 32 bytes, so two encodings of one
/// point (ZIP-215 allows non-canonical ones) are two entries, each hashed into k_i as given.
pub(crate) struct KeyCache {
    slots: Mutex<Vec<Slot>>,
    hasher: foldhash::quality::RandomState,
}

/// A key's bytes and its decoded point.
type Slot = Option<([u8; 32], EdwardsPoint)>;

/// Slots of the process's key cache (~6.5 MB: a slot is 200 bytes).
const KEY_CACHE_SLOTS: usize = 1 << 15;

impl KeyCache {
    fn new(slots: usize) -> Self {
        Self {
            slots: Mutex::new(vec![None; slots.max(1)]),
            hasher: Default::default(),
        }
    }

    /// The process-wide cache.
    pub(crate) fn global() -> &'static KeyCache {
        static CACHE: OnceLock<KeyCache> = OnceLock::new();
        CACHE.get_or_init(|| KeyCache::new(KEY_CACHE_SLOTS))
    }

    fn slot(&self, bytes: &[u8; 32], len: usize) -> usize {
        (self.hasher.hash_one(bytes) % len as u64) as usize
    }

    /// The slots, also after a panic elsewhere while they were held: a slot is always written
    /// whole, so they are never half-updated.
    fn slots(&self) -> MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The decoded points of `keys`, in order; `None` when one does not decode. One lock to
    /// look up, decoding outside it, one lock to keep what was decoded (also when a later key
    /// fails: bisecting a failed batch looks the good ones up again).
    pub(crate) fn decode(&self, keys: &[[u8; 32]]) -> Option<Vec<EdwardsPoint>> {
        let mut found: Vec<Option<EdwardsPoint>> = {
            let slots = self.slots();
            keys.iter()
                .map(|k| match &slots[self.slot(k, slots.len())] {
                    Some((held, point)) if held == k => Some(*point),
                    _ => None,
                })
                .collect()
        };
        let mut fresh = Vec::new();
        for (k, point) in keys.iter().zip(found.iter_mut()) {
            if point.is_none() {
                match CompressedEdwardsY(*k).decompress() {
                    Some(decoded) => {
                        *point = Some(decoded);
                        fresh.push((*k, decoded));
                    }
                    None => break,
                }
            }
        }
        if !fresh.is_empty() {
            let mut slots = self.slots();
            let len = slots.len();
            for (k, point) in fresh {
                slots[self.slot(&k, len)] = Some((k, point));
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
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};

    fn scalar(i: u8) -> Scalar {
        Scalar::from_bytes_mod_order([i.wrapping_mul(37).wrapping_add(11); 32])
    }

    fn msg(i: u8) -> Digest {
        netchain_types::hash_parts("batch-test", &[&[i]])
    }

    /// A signature with nonce scalar `r` by secret scalar `a`, its R encoded as `r_bytes` and
    /// its key as `a_bytes` (which may carry torsion or be encoded non-canonically: only the
    /// prime-order parts have to match `r` and `a`).
    fn sign_raw(
        a: Scalar,
        a_bytes: [u8; 32],
        r: Scalar,
        r_bytes: [u8; 32],
        m: &Digest,
    ) -> Signature {
        let k = Scalar::from_hash(Sha512::default().chain(r_bytes).chain(a_bytes).chain(m.0));
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r_bytes);
        sig[32..].copy_from_slice((r + k * a).as_bytes());
        Signature(sig)
    }

    /// s + ℓ: the same s modulo ℓ, but not canonical.
    fn plus_order(sig: &Signature) -> Signature {
        const ORDER: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut out = *sig;
        let mut carry = 0u16;
        for (byte, add) in out.0[32..].iter_mut().zip(ORDER) {
            let sum = u16::from(*byte) + u16::from(add) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        out
    }

    /// Whether ed25519-zebra's single check and this batch check (alone, in a batch of good
    /// signatures, through `verify_each`) all give `expected`.
    fn judged(item: (PublicKey, Digest, Signature), expected: bool, what: &str) {
        let (pk, m, sig) = item;
        assert_eq!(
            crate::verify(&pk, &m, &sig).is_ok(),
            expected,
            "single: {what}"
        );
        let good = crate::Keypair::from_secret([9; 32]);
        let mut items = vec![(good.public(), msg(0), good.sign(&msg(0))), item];
        assert_eq!(
            crate::verify_batch(&items).is_ok(),
            expected,
            "batch: {what}"
        );
        items.extend((1..140u8).map(|i| (good.public(), msg(i), good.sign(&msg(i)))));
        items.swap(1, 77);
        let each = crate::verify_each(&items);
        assert_eq!(each[77], expected, "verify_each: {what}");
        assert_eq!(
            each.iter().filter(|ok| !**ok).count(),
            usize::from(!expected)
        );
    }

    /// Keys and R with torsion components (every pair of the eight torsion points): valid under
    /// the cofactored rule, so both checks accept them; with s + ℓ both refuse.
    #[test]
    fn mixed_order_keys_and_nonces_are_judged_alike() {
        for (t, torsion) in EIGHT_TORSION.iter().enumerate() {
            for (u, other) in EIGHT_TORSION.iter().enumerate() {
                let (a, r) = (scalar(t as u8), scalar(100 + u as u8));
                let a_bytes = (a * B + other).compress().to_bytes();
                let r_bytes = (r * B + torsion).compress().to_bytes();
                let m = msg((t * 8 + u) as u8);
                let sig = sign_raw(a, a_bytes, r, r_bytes, &m);
                judged(
                    (PublicKey(a_bytes), m, sig),
                    true,
                    &format!("R+T{t}, A+T{u}"),
                );
                judged(
                    (PublicKey(a_bytes), m, plus_order(&sig)),
                    false,
                    &format!("s+l, R+T{t}, A+T{u}"),
                );
            }
        }
    }

    /// k hashes R exactly as encoded: with a non-canonical encoding of R the signature is valid
    /// when k was taken over those bytes and not when it was taken over the canonical ones.
    /// (A key with a non-canonical encoding is a small-order point, for which k does not
    /// matter; `mixed_order_keys_and_nonces_are_judged_alike` hashes keys with torsion.)
    #[test]
    fn k_hashes_the_encodings_as_given() {
        let y_plus_p = |y: u8, sign: bool| {
            let mut enc = [0xff; 32];
            enc[0] = 0xed + y;
            enc[31] = if sign { 0xff } else { 0x7f };
            enc
        };
        let identity = EdwardsPoint::default().compress().to_bytes();
        let mut flipped_identity = identity;
        flipped_identity[31] ^= 0x80;
        let odd_encodings = [y_plus_p(1, false), y_plus_p(1, true), flipped_identity];
        for (i, odd) in odd_encodings.iter().enumerate() {
            assert_eq!(
                CompressedEdwardsY(*odd).decompress(),
                Some(EdwardsPoint::default())
            );
            let a = scalar(i as u8);
            let a_bytes = (a * B).compress().to_bytes();
            let m = msg(i as u8);
            // R is the identity (r = 0), written oddly.
            let right = sign_raw(a, a_bytes, Scalar::ZERO, *odd, &m);
            judged((PublicKey(a_bytes), m, right), true, &format!("R as {i}"));
            let mut wrong = sign_raw(a, a_bytes, Scalar::ZERO, identity, &m);
            wrong.0[..32].copy_from_slice(odd);
            judged(
                (PublicKey(a_bytes), m, wrong),
                false,
                &format!("k over canonical R, {i}"),
            );
        }
    }

    /// A cache of one or two slots: A and −A (whose encodings differ only in the sign bit) and
    /// other keys evict each other all the time; every answer stays the decoded point of
    /// exactly the bytes asked, so valid batches pass and a batch with one bad signature fails,
    /// in either order, again and again, and from two threads at once.
    #[test]
    fn colliding_keys_never_borrow_each_others_points() {
        for slots in [1, 2] {
            let cache = KeyCache::new(slots);
            let mut items = Vec::new();
            for i in 0..6u8 {
                let a = scalar(i);
                for (secret, point) in [(a, a * B), (-a, -(a * B))] {
                    let a_bytes = point.compress().to_bytes();
                    let r = scalar(200 + i);
                    let r_bytes = (r * B).compress().to_bytes();
                    let m = msg(i);
                    items.push((
                        PublicKey(a_bytes),
                        m,
                        sign_raw(secret, a_bytes, r, r_bytes, &m),
                    ));
                }
            }
            assert_eq!(items[0].0 .0[..31], items[1].0 .0[..31]);
            std::thread::scope(|s| {
                for t in 0..2 {
                    let (cache, items) = (&cache, &items);
                    s.spawn(move || {
                        let mut rng = BatchRng::new();
                        for round in 0..20 {
                            let mut batch = items.clone();
                            if (round + t) % 2 == 1 {
                                batch.reverse();
                            }
                            assert_eq!(verify(&batch, cache, &mut rng), Ok(()));
                            // A's signature under −A's key.
                            batch[3].0 = batch[2].0;
                            assert_eq!(verify(&batch, cache, &mut rng), Err(()));
                            let keys: Vec<_> = batch.iter().map(|(pk, _, _)| pk.0).collect();
                            let points = cache.decode(&keys).unwrap();
                            for (k, p) in keys.iter().zip(points) {
                                assert_eq!(CompressedEdwardsY(*k).decompress(), Some(p));
                            }
                        }
                    });
                }
            });
        }
    }

    /// A panic elsewhere while the cache was held does not make valid batches fail.
    #[test]
    fn a_poisoned_cache_still_answers() {
        let cache = KeyCache::new(16);
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _held = cache.slots.lock().unwrap();
                    panic!("poison the cache");
                })
                .join();
        });
        assert!(cache.slots.is_poisoned());
        let keys: Vec<_> = (1..5u8)
            .map(|i| crate::Keypair::from_secret([i; 32]))
            .collect();
        let items: Vec<_> = keys
            .iter()
            .map(|k| (k.public(), msg(1), k.sign(&msg(1))))
            .collect();
        let mut rng = BatchRng::new();
        assert_eq!(verify(&items, &cache, &mut rng), Ok(()));
        assert_eq!(verify(&items, &cache, &mut rng), Ok(()));
    }

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
