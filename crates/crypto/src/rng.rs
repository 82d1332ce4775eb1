//! Randomness for batch verification coefficients.

use rand_core::{TryCryptoRng, TryRng};
use std::convert::Infallible;

/// A blake3 XOF keyed from the OS: unpredictable batch coefficients (a forger must not know them).
pub(crate) struct BatchRng(blake3::OutputReader);

impl BatchRng {
    pub(crate) fn new() -> Self {
        let mut seed = [0u8; 32];
        // An OS without randomness cannot run a validator safely; fail loudly rather than use a
        // predictable seed.
        getrandom::getrandom(&mut seed).expect("OS randomness unavailable");
        Self(blake3::Hasher::new_keyed(&seed).finalize_xof())
    }
}

impl TryRng for BatchRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}

impl TryCryptoRng for BatchRng {}
