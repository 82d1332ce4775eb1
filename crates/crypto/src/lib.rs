//! Keys, signatures and key files for netchain.
//!
//! Design note: one signature rule everywhere. ed25519-zebra implements the ZIP-215 validation
//! rules, under which single and batch verification accept exactly the same inputs, so a block
//! checked by batch on one validator and one by one on another can never be judged differently.
//! Single verification is ed25519-zebra's; batch verification is its batch equation over the
//! same curve library with decoded keys kept between batches (`batch`), and the tests check
//! that the two accept the same inputs, edge cases included.
//! This crate is the only holder of a secret key.

mod batch;
mod keys;
mod quorum;
mod rng;

pub use keys::{KeyFile, Keypair};
pub use quorum::verify_quorum;

use netchain_types::{Digest, PublicKey, Signature, SignedTransaction, Transaction};

/// Errors of signature checks and key handling.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The public key bytes are not a valid curve point.
    #[error("invalid public key {0}")]
    BadPublicKey(PublicKey),
    /// A signature did not verify.
    #[error("invalid signature by {signer}")]
    BadSignature {
        /// Claimed signer.
        signer: PublicKey,
    },
    /// At least one signature in a batch did not verify.
    #[error("batch of {count} signatures failed verification")]
    BadBatch {
        /// Batch size.
        count: usize,
    },
    /// A certificate's signer set is not a valid quorum.
    #[error("certificate invalid: {0}")]
    BadCertificate(String),
    /// A key file could not be read or written.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// File path.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

fn zebra_sig(sig: &Signature) -> ed25519_zebra::Signature {
    ed25519_zebra::Signature::from_bytes(&sig.0)
}

/// Verifies one signature over a digest.
pub fn verify(signer: &PublicKey, msg: &Digest, sig: &Signature) -> Result<(), CryptoError> {
    let key = ed25519_zebra::VerificationKey::try_from(signer.0)
        .map_err(|_| CryptoError::BadPublicKey(*signer))?;
    key.verify(&zebra_sig(sig), &msg.0)
        .map_err(|_| CryptoError::BadSignature { signer: *signer })
}

/// Verifies all signatures at once; fails if any is invalid. Same accept set as [`verify`]
/// (ZIP-215; decoded public keys are kept between calls, see `batch`).
pub fn verify_batch(items: &[(PublicKey, Digest, Signature)]) -> Result<(), CryptoError> {
    match items {
        [] => Ok(()),
        [(pk, msg, sig)] => verify(pk, msg, sig),
        _ => batch::verify(items, batch::KeyCache::global(), &mut rng::BatchRng::new())
            .map_err(|()| CryptoError::BadBatch { count: items.len() }),
    }
}

/// Below this many signatures per thread, [`verify_each`] stays on the calling thread (a thread
/// costs more than it saves).
const PARALLEL_CHUNK_MIN: usize = 64;
/// At or below this many signatures, a failed batch is checked one by one rather than halved.
const BISECT_MIN: usize = 4;

/// Verifies many signatures and says which ones are valid. Large inputs are split over the
/// machine's cores; each part is one batch check, and a failed batch is halved until the bad
/// signatures are found, so a few forged signatures in a large block cost a few extra batch
/// checks, not a one-by-one pass over everything. Same accept set as [`verify`] (ZIP-215), so
/// the answer does not depend on how the input is split.
pub fn verify_each(items: &[(PublicKey, Digest, Signature)]) -> Vec<bool> {
    // Asked once: the answer reads the cgroup's CPU quota from files (~9 % of admitting a
    // client's request when asked every time).
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let threads = cores.min(items.len() / PARALLEL_CHUNK_MIN).max(1);
    if threads == 1 {
        let mut out = Vec::with_capacity(items.len());
        verify_range(items, &mut out);
        return out;
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut out = Vec::with_capacity(part.len());
                    verify_range(part, &mut out);
                    out
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().expect("signature check thread"))
            .collect()
    })
}

/// Appends the validity of each of `items` to `out`: one batch check, halving on failure.
fn verify_range(items: &[(PublicKey, Digest, Signature)], out: &mut Vec<bool>) {
    if verify_batch(items).is_ok() {
        out.extend(std::iter::repeat_n(true, items.len()));
    } else if items.len() <= BISECT_MIN {
        out.extend(
            items
                .iter()
                .map(|(pk, msg, sig)| verify(pk, msg, sig).is_ok()),
        );
    } else {
        let (left, right) = items.split_at(items.len() / 2);
        verify_range(left, out);
        verify_range(right, out);
    }
}

/// Signs a transaction.
pub fn sign_transaction(keypair: &Keypair, tx: Transaction) -> SignedTransaction {
    let signature = keypair.sign(&tx.signing_message());
    SignedTransaction { tx, signature }
}

/// Verifies a transaction's signature by its sender.
pub fn verify_transaction(tx: &SignedTransaction) -> Result<(), CryptoError> {
    verify(&tx.tx.sender, &tx.tx.signing_message(), &tx.signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netchain_types::{hash_parts, Payload};

    fn msg(i: u8) -> Digest {
        hash_parts("test", &[&[i]])
    }

    #[test]
    fn sign_verify_and_reject_tampering() {
        let kp = Keypair::from_secret([1; 32]);
        let sig = kp.sign(&msg(1));
        verify(&kp.public(), &msg(1), &sig).unwrap();
        assert!(verify(&kp.public(), &msg(2), &sig).is_err());
        let other = Keypair::from_secret([2; 32]);
        assert!(verify(&other.public(), &msg(1), &sig).is_err());
        let mut bad = sig;
        bad.0[10] ^= 1;
        assert!(verify(&kp.public(), &msg(1), &bad).is_err());
    }

    #[test]
    fn batch_agrees_with_single_and_finds_culprit() {
        let keys: Vec<_> = (0..20u8).map(|i| Keypair::from_secret([i; 32])).collect();
        let mut items: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.public(), msg(i as u8), k.sign(&msg(i as u8))))
            .collect();
        verify_batch(&items).unwrap();
        assert_eq!(verify_each(&items), vec![true; 20]);
        items[7].2 .0[0] ^= 0x55;
        assert!(verify_batch(&items).is_err());
        let each = verify_each(&items);
        assert_eq!(each.iter().filter(|ok| !**ok).count(), 1);
        assert!(!each[7]);
        // Garbage public key bytes never panic.
        items[3].0 = PublicKey([0xff; 32]);
        assert!(verify_batch(&items).is_err());
        assert!(verify(&items[3].0, &items[3].1, &items[3].2).is_err());
    }

    /// Large inputs (split over threads, failed batches halved) give exactly the one-by-one
    /// answer, wherever the bad signatures, garbage keys and wrong messages are.
    #[test]
    fn verify_each_equals_one_by_one_on_random_inputs() {
        let keys: Vec<_> = (0..16u8)
            .map(|i| Keypair::from_secret([i + 1; 32]))
            .collect();
        let mut seed = 0x5EED_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..12 {
            let n = [0, 1, 5, 63, 64, 130, 257, 700][case % 8] + case;
            let mut items: Vec<_> = (0..n)
                .map(|i| {
                    let k = &keys[i % keys.len()];
                    let m = msg((i % 251) as u8);
                    (k.public(), m, k.sign(&m))
                })
                .collect();
            let bad = match case % 4 {
                0 => 0,
                1 => 1,
                2 => n / 50 + 1,
                _ => n / 3,
            };
            for _ in 0..bad.min(n) {
                let i = (next() as usize) % n;
                match next() % 3 {
                    0 => items[i].2 .0[(next() % 64) as usize] ^= 1,
                    1 => items[i].1 = msg(255),
                    _ => items[i].0 = PublicKey([0xff; 32]),
                }
            }
            let expected: Vec<bool> = items
                .iter()
                .map(|(pk, m, sig)| verify(pk, m, sig).is_ok())
                .collect();
            assert_eq!(verify_each(&items), expected, "case {case}, n {n}");
        }
    }

    /// ZIP-215's edge cases: small-order keys and R, in canonical and non-canonical encodings,
    /// with s = 0 are valid for any message; other points with s = 0, and a non-canonical s,
    /// are not. The batch check (with keys decoded afresh and then from its cache) accepts
    /// exactly the batches whose every signature the single check (ed25519-zebra) accepts.
    #[test]
    fn batch_and_single_agree_on_zip215_edge_cases() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        // Small-order points: canonical (and with the sign bit flipped: the negation, or for
        // x = 0 an encoding that is not canonical), and y + p for y = 0 and 1 (below 2^255, so
        // encodings of y that are not canonical).
        let y_plus_p = |y: u8, sign: bool| {
            let mut enc = [0xff; 32];
            enc[0] = 0xed + y;
            enc[31] = if sign { 0xff } else { 0x7f };
            enc
        };
        let mut small: Vec<[u8; 32]> = Vec::new();
        for p in EIGHT_TORSION.iter() {
            let enc = p.compress().to_bytes();
            let mut flipped = enc;
            flipped[31] ^= 0x80;
            small.extend([enc, flipped]);
        }
        for y in 0..2 {
            small.extend([y_plus_p(y, false), y_plus_p(y, true)]);
        }
        // Any point's encoding (and some that decode to no point): y + p for y below 19.
        let mut points = small.clone();
        for y in 2..19 {
            points.extend([y_plus_p(y, false), y_plus_p(y, true)]);
        }
        // ℓ, the group order: s = ℓ is not canonical.
        let order: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let keys: Vec<_> = (0..6u8)
            .map(|i| Keypair::from_secret([i + 40; 32]))
            .collect();
        let mut seed = 0x215_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        let (mut accepted, mut rejected) = (0, 0);
        for case in 0..400 {
            let n = 2 + next() % 6;
            let items: Vec<_> = (0..n)
                .map(|i| {
                    let m = msg((case * 7 + i) as u8);
                    let key = &keys[next() % keys.len()];
                    let pick = |list: &[[u8; 32]], r: usize| list[r % list.len()];
                    match next() % 4 {
                        0 | 1 => (key.public(), m, key.sign(&m)),
                        2 => {
                            let mut sig = [0u8; 64];
                            sig[..32].copy_from_slice(&pick(&small, next()));
                            (PublicKey(pick(&small, next())), m, Signature(sig))
                        }
                        _ => {
                            let a = if next() % 3 == 0 {
                                key.public()
                            } else {
                                PublicKey(pick(&points, next()))
                            };
                            let mut sig = [0u8; 64];
                            sig[..32].copy_from_slice(&pick(&points, next()));
                            if next() % 2 == 0 {
                                sig[32..].copy_from_slice(&order);
                            }
                            (a, m, Signature(sig))
                        }
                    }
                })
                .collect();
            let single: Vec<bool> = items
                .iter()
                .map(|(pk, m, sig)| verify(pk, m, sig).is_ok())
                .collect();
            let all = single.iter().all(|ok| *ok);
            if all {
                accepted += 1;
            } else {
                rejected += 1;
            }
            for _ in 0..2 {
                assert_eq!(verify_batch(&items).is_ok(), all, "case {case}: {single:?}");
            }
            assert_eq!(verify_each(&items), single, "case {case}");
        }
        // Both answers occur, so the comparison means something.
        assert!(accepted > 20 && rejected > 20, "{accepted} / {rejected}");
    }

    #[test]
    fn transaction_signatures() {
        let kp = Keypair::from_secret([5; 32]);
        let tx = Transaction {
            chain_id: "c".into(),
            sender: kp.public(),
            nonce: 0,
            payload: Payload::Transfer {
                to: PublicKey([3; 32]),
                amount: 1,
                memo: Vec::new(),
            },
        };
        let signed = sign_transaction(&kp, tx);
        verify_transaction(&signed).unwrap();
        let mut forged = signed.clone();
        forged.tx.nonce = 1;
        assert!(verify_transaction(&forged).is_err());
    }
}
