//! The committee-key handshake (see the crate note).

use borsh::{BorshDeserialize, BorshSerialize};
use futures::{SinkExt, StreamExt};
use netchain_crypto::{verify, Keypair};
use netchain_types::{codec, hash_parts, Committee, Digest, PublicKey, Signature, ValidatorIndex};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const HELLO_BYTES_MAX: usize = 512;
/// Frame bound while a connection is not authenticated yet.
pub(crate) const HANDSHAKE_FRAME_BYTES_MAX: usize = 1024;
/// How far a Hello's timestamp may be from the responder's clock.
const CLOCK_SKEW_MAX_MS: u64 = 60_000;

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The connection failed or closed.
    #[error("i/o: {0}")]
    Io(String),
    /// A handshake message did not decode.
    #[error("malformed handshake message")]
    Malformed,
    /// The initiator is not a committee member.
    #[error("key {0} is not in the committee")]
    Stranger(PublicKey),
    /// The initiator is a committee member the identity registry does not admit now.
    #[error("key {0} is not admitted by the identity registry")]
    NotAdmitted(PublicKey),
    /// Wrong chain, wrong recipient, stale timestamp or bad signature.
    #[error("handshake refused: {0}")]
    Refused(&'static str),
}

#[derive(BorshSerialize, BorshDeserialize)]
struct Hello {
    chain_id: String,
    from: PublicKey,
    to: PublicKey,
    nonce: [u8; 32],
    timestamp_ms: u64,
    signature: Signature,
}

impl Hello {
    fn digest(&self) -> Digest {
        hash_parts(
            "netchain/hello/v1",
            &[
                self.chain_id.as_bytes(),
                &self.from.0,
                &self.to.0,
                &self.nonce,
                &self.timestamp_ms.to_le_bytes(),
            ],
        )
    }
}

#[derive(BorshSerialize, BorshDeserialize)]
struct Welcome {
    nonce: [u8; 32],
    signature: Signature,
}

#[derive(BorshSerialize, BorshDeserialize)]
struct Confirm {
    signature: Signature,
}

fn welcome_digest(hello: &Digest, nonce: &[u8; 32]) -> Digest {
    hash_parts("netchain/welcome/v1", &[&hello.0, nonce])
}

fn confirm_digest(hello: &Digest, nonce: &[u8; 32]) -> Digest {
    hash_parts("netchain/confirm/v1", &[&hello.0, nonce])
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn fresh_nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    getrandom::getrandom(&mut n).expect("OS randomness unavailable");
    n
}

type Conn = Framed<TcpStream, LengthDelimitedCodec>;

async fn recv<T: BorshDeserialize>(framed: &mut Conn) -> Result<T, HandshakeError> {
    let frame = framed
        .next()
        .await
        .ok_or_else(|| HandshakeError::Io("closed".into()))?
        .map_err(|e| HandshakeError::Io(e.to_string()))?;
    codec::decode(&frame, HELLO_BYTES_MAX).map_err(|_| HandshakeError::Malformed)
}

async fn send<T: BorshSerialize>(framed: &mut Conn, msg: &T) -> Result<(), HandshakeError> {
    let bytes: bytes::Bytes = codec::encode(msg).into();
    framed
        .send(bytes)
        .await
        .map_err(|e: std::io::Error| HandshakeError::Io(e.to_string()))
}

/// The first frame an initiator sends `to`: its signed `Hello` (without the length prefix).
/// Probing tools and tests use it to knock on a peer port as a given key.
pub fn hello_frame(chain_id: &str, keypair: &Keypair, to: &PublicKey) -> Vec<u8> {
    let mut hello = Hello {
        chain_id: chain_id.to_string(),
        from: keypair.public(),
        to: *to,
        nonce: fresh_nonce(),
        timestamp_ms: now_ms(),
        signature: Signature::default(),
    };
    hello.signature = keypair.sign(&hello.digest());
    codec::encode(&hello)
}

/// Initiator side: prove our key to `peer` and check that it is really `peer`.
pub(crate) async fn initiate(
    framed: &mut Conn,
    chain_id: &str,
    keypair: &Keypair,
    peer: &PublicKey,
) -> Result<(), HandshakeError> {
    let mut hello = Hello {
        chain_id: chain_id.to_string(),
        from: keypair.public(),
        to: *peer,
        nonce: fresh_nonce(),
        timestamp_ms: now_ms(),
        signature: Signature::default(),
    };
    let digest = hello.digest();
    hello.signature = keypair.sign(&digest);
    send(framed, &hello).await?;
    let welcome: Welcome = recv(framed).await?;
    verify(
        peer,
        &welcome_digest(&digest, &welcome.nonce),
        &welcome.signature,
    )
    .map_err(|_| HandshakeError::Refused("responder signature"))?;
    let confirm = Confirm {
        signature: keypair.sign(&confirm_digest(&digest, &welcome.nonce)),
    };
    send(framed, &confirm).await
}

/// Responder side: returns the authenticated initiator. Sends nothing unless the initiator's
/// `Hello` verifies against a committee key that `admits` accepts.
pub(crate) async fn respond(
    framed: &mut Conn,
    chain_id: &str,
    keypair: &Keypair,
    committee: &Committee,
    admits: &(dyn Fn(&PublicKey) -> bool + Sync),
) -> Result<ValidatorIndex, HandshakeError> {
    let hello: Hello = recv(framed).await?;
    let from = committee
        .index_of(&hello.from)
        .ok_or(HandshakeError::Stranger(hello.from))?;
    if !admits(&hello.from) {
        return Err(HandshakeError::NotAdmitted(hello.from));
    }
    if hello.chain_id != chain_id {
        return Err(HandshakeError::Refused("chain id"));
    }
    if hello.to != keypair.public() {
        return Err(HandshakeError::Refused("addressed to another key"));
    }
    if now_ms().abs_diff(hello.timestamp_ms) > CLOCK_SKEW_MAX_MS {
        return Err(HandshakeError::Refused("timestamp"));
    }
    let digest = hello.digest();
    verify(&hello.from, &digest, &hello.signature)
        .map_err(|_| HandshakeError::Refused("initiator signature"))?;
    let nonce = fresh_nonce();
    let welcome = Welcome {
        nonce,
        signature: keypair.sign(&welcome_digest(&digest, &nonce)),
    };
    send(framed, &welcome).await?;
    let confirm: Confirm = recv(framed).await?;
    verify(
        &hello.from,
        &confirm_digest(&digest, &nonce),
        &confirm.signature,
    )
    .map_err(|_| HandshakeError::Refused("confirm signature"))?;
    Ok(from)
}
