//! Randomness for batch verification coefficients.

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

    /// A batch coefficient.
    pub(crate) fn next_u128(&mut self) -> u128 {
        let mut b = [0u8; 16];
        self.0.fill(&mut b);
        u128::from_le_bytes(b)
    }
}
