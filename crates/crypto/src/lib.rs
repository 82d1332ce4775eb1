//! Keys, signatures and key files for netchain.
//!
//! Design note: one signature rule everywhere. ed25519-zebra implements the ZIP-215 validation
//! rules, under which single and batch verification accept exactly the same inputs, so a block
//! checked by batch on one validator and one by one on another can never be judged differently.
//! This crate is the only holder of a secret key.

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

/// Verifies all signatures at once; fails if any is invalid. Same accept set as [`verify`].
pub fn verify_batch(items: &[(PublicKey, Digest, Signature)]) -> Result<(), CryptoError> {
    match items {
        [] => Ok(()),
        [(pk, msg, sig)] => verify(pk, msg, sig),
        _ => {
            let mut verifier = ed25519_zebra::batch::Verifier::new();
            for (pk, msg, sig) in items {
                verifier.queue((
                    ed25519_zebra::VerificationKeyBytes::from(pk.0),
                    zebra_sig(sig),
                    &msg.0,
                ));
            }
            verifier
                .verify(rng::BatchRng::new())
                .map_err(|_| CryptoError::BadBatch { count: items.len() })
        }
    }
}

/// Verifies many signatures and says which ones are valid: one batch check, and one-by-one
/// checks only when the batch fails.
pub fn verify_each(items: &[(PublicKey, Digest, Signature)]) -> Vec<bool> {
    if verify_batch(items).is_ok() {
        return vec![true; items.len()];
    }
    items
        .iter()
        .map(|(pk, msg, sig)| verify(pk, msg, sig).is_ok())
        .collect()
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
            },
        };
        let signed = sign_transaction(&kp, tx);
        verify_transaction(&signed).unwrap();
        let mut forged = signed.clone();
        forged.tx.nonce = 1;
        assert!(verify_transaction(&forged).is_err());
    }
}
