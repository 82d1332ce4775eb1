//! Certificate checks: a quorum of distinct committee members, each signature valid.

use crate::{verify_batch, CryptoError};
use netchain_types::{Committee, Digest, Signature, ValidatorIndex};

/// Verifies a certificate: signer indices strictly ascending (so distinct), all in the committee,
/// at least a quorum of them, and every signature valid over its message.
pub fn verify_quorum(
    committee: &Committee,
    signed: &[(ValidatorIndex, Digest, Signature)],
) -> Result<(), CryptoError> {
    if signed.len() < committee.quorum() {
        return Err(CryptoError::BadCertificate(format!(
            "{} signers, quorum is {}",
            signed.len(),
            committee.quorum()
        )));
    }
    let mut items = Vec::with_capacity(signed.len());
    let mut last: Option<ValidatorIndex> = None;
    for (index, msg, sig) in signed {
        if last.is_some_and(|l| *index <= l) {
            return Err(CryptoError::BadCertificate(
                "signers not strictly ascending".into(),
            ));
        }
        last = Some(*index);
        let key = committee.key(*index).ok_or_else(|| {
            CryptoError::BadCertificate(format!("signer {index} not in committee"))
        })?;
        items.push((*key, *msg, *sig));
    }
    verify_batch(&items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;
    use netchain_types::{hash_parts, Validator};

    #[test]
    fn quorum_rules() {
        let keys: Vec<_> = (0..4u8)
            .map(|i| Keypair::from_secret([i + 1; 32]))
            .collect();
        let committee = Committee {
            validators: keys
                .iter()
                .map(|k| Validator {
                    public_key: k.public(),
                    p2p_address: String::new(),
                    api_address: String::new(),
                })
                .collect(),
        };
        let m = hash_parts("m", &[]);
        let sig = |i: usize| (i as ValidatorIndex, m, keys[i].sign(&m));
        verify_quorum(&committee, &[sig(0), sig(1), sig(3)]).unwrap();
        assert!(verify_quorum(&committee, &[sig(0), sig(1)]).is_err());
        assert!(verify_quorum(&committee, &[sig(0), sig(0), sig(1)]).is_err());
        assert!(verify_quorum(&committee, &[sig(1), sig(0), sig(2)]).is_err());
        let mut bad = sig(2);
        bad.0 = 9;
        assert!(verify_quorum(&committee, &[sig(0), sig(1), bad]).is_err());
        let mut forged = sig(2);
        forged.2 = keys[0].sign(&m);
        assert!(verify_quorum(&committee, &[sig(0), sig(1), forged]).is_err());
    }
}
