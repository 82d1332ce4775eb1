//! Key pairs and key files.

use crate::CryptoError;
use netchain_types::{Digest, PublicKey, Signature};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// An ed25519 key pair.
#[derive(Clone)]
pub struct Keypair {
    signing: ed25519_zebra::SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.public)
    }
}

impl Keypair {
    /// A fresh key from OS randomness.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret).expect("OS randomness unavailable");
        Self::from_secret(secret)
    }

    /// The key pair of a 32-byte secret seed (deterministic: tests and derived demo keys).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let signing = ed25519_zebra::SigningKey::from(secret);
        let public = PublicKey(ed25519_zebra::VerificationKeyBytes::from(&signing).into());
        Self { signing, public }
    }

    /// The secret seed.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.into()
    }

    /// The public key (also the account address).
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Signs a digest.
    pub fn sign(&self, msg: &Digest) -> Signature {
        Signature(self.signing.sign(&msg.0).to_bytes())
    }
}

/// A key pair as stored on disk (JSON, hex).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Public key.
    pub public_key: PublicKey,
    /// Secret seed, hex.
    pub secret_key: String,
}

impl KeyFile {
    /// The file form of a key pair.
    pub fn from_keypair(kp: &Keypair) -> Self {
        Self {
            public_key: kp.public(),
            secret_key: hex::encode(kp.secret_bytes()),
        }
    }

    /// The key pair, checking that the public key matches the secret.
    pub fn keypair(&self) -> Result<Keypair, String> {
        let bytes = hex::decode(&self.secret_key).map_err(|e| e.to_string())?;
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "secret key must be 32 bytes".to_string())?;
        let kp = Keypair::from_secret(secret);
        if kp.public() != self.public_key {
            return Err("public key does not match the secret key".into());
        }
        Ok(kp)
    }

    /// Writes the key file (mode 0600 on Unix).
    pub fn save(&self, path: &Path) -> Result<(), CryptoError> {
        let err = |reason: String| CryptoError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let json = serde_json::to_string_pretty(self).map_err(|e| err(e.to_string()))?;
        std::fs::write(path, json).map_err(|e| err(e.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| err(e.to_string()))?;
        }
        Ok(())
    }

    /// Reads a key file and returns its key pair.
    pub fn load(path: &Path) -> Result<Keypair, CryptoError> {
        let err = |reason: String| CryptoError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        file.keypair().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_mismatch() {
        let dir = std::env::temp_dir().join(format!("netchain-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.json");
        let kp = Keypair::generate();
        KeyFile::from_keypair(&kp).save(&path).unwrap();
        assert_eq!(KeyFile::load(&path).unwrap().public(), kp.public());
        let mut wrong = KeyFile::from_keypair(&kp);
        wrong.public_key = PublicKey([1; 32]);
        wrong.save(&path).unwrap();
        assert!(KeyFile::load(&path).is_err());
        std::fs::write(&path, "not json").unwrap();
        assert!(KeyFile::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
