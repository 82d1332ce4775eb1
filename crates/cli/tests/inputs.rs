//! Bad inputs from clients and peers, and light-client proofs, against real validators.

mod common;

use common::{transfer, Net, SERIAL};
use netchain_cli::layout::demo_account;
use netchain_client::verify_account_proof;
use netchain_types::codec;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post_raw(net: &Net, path: &str, body: &str) -> (u16, serde_json::Value) {
    let url = format!("http://{}{path}", net.layout.api_address(0));
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let json = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}

async fn wait_status(net: &Net, id: &netchain_types::Digest, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Some(s) = net.clients[0].tx_status(id).await.unwrap() {
            if s.status != "pending" {
                return format!("{}:{}", s.status, s.code.unwrap_or_default());
            }
        }
        assert!(start.elapsed() < timeout, "transaction {id} still pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads from a raw connection until EOF; returns the bytes the peer sent.
async fn drain(mut s: tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_client_inputs_get_clear_errors_and_change_nothing() {
    let _serial = SERIAL.lock().await;
    let net = Net::start(4, 3).await;
    let chain = net.chain_id();
    let (a, b) = (demo_account(&chain, 0), demo_account(&chain, 1));
    let c = &net.clients[0];
    let before = (
        c.account(&a.public(), false).await.unwrap(),
        c.account(&b.public(), false).await.unwrap(),
    );

    // Bad signature.
    let mut bad = transfer(&chain, &a, 0, b.public(), 5);
    bad.signature.0[3] ^= 1;
    assert_eq!(
        c.submit(&bad).await.unwrap_err().code(),
        Some("bad_signature")
    );
    // Wrong chain id.
    let other = transfer("other-chain", &a, 0, b.public(), 5);
    assert_eq!(
        c.submit(&other).await.unwrap_err().code(),
        Some("wrong_chain")
    );
    // Oversize, garbage hex, garbage bytes, non-JSON, unknown fields, both forms at once.
    let huge = format!("{{\"tx_hex\":\"{}\"}}", "00".repeat(10_000));
    assert_eq!(
        post_raw(&net, "/v1/transactions", &huge).await.1["code"],
        "oversize"
    );
    let (status, body) = post_raw(&net, "/v1/transactions", "{\"tx_hex\":\"zz\"}").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("malformed")));
    let junk = format!("{{\"tx_hex\":\"{}\"}}", "ab".repeat(100));
    assert_eq!(
        post_raw(&net, "/v1/transactions", &junk).await.1["code"],
        "malformed"
    );
    assert_eq!(
        post_raw(&net, "/v1/transactions", "\u{1}\u{2}garbage")
            .await
            .1["code"],
        "malformed"
    );
    let good = transfer(&chain, &a, 0, b.public(), 5);
    let mut extra = serde_json::json!({ "tx": good });
    extra["tx"]["tx"]["evil"] = serde_json::json!(1);
    let (status, body) = post_raw(&net, "/v1/transactions", &extra.to_string()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("malformed")),
        "{body}"
    );
    let both = serde_json::json!({ "tx": good, "tx_hex": hex::encode(codec::encode(&good)) });
    assert_eq!(
        post_raw(&net, "/v1/transactions", &both.to_string())
            .await
            .1["code"],
        "malformed"
    );
    // Unknown endpoint and bad path parameters.
    assert_eq!(
        net.clients[0]
            .get_json("/v1/nope")
            .await
            .unwrap_err()
            .code(),
        Some("not_found")
    );
    assert_eq!(
        net.clients[0]
            .get_json("/v1/accounts/xyz")
            .await
            .unwrap_err()
            .code(),
        Some("malformed")
    );
    assert_eq!(
        net.clients[0]
            .get_json("/v1/blocks/-1")
            .await
            .unwrap_err()
            .code(),
        Some("malformed")
    );

    // Nothing above changed any state.
    let after = (
        c.account(&a.public(), false).await.unwrap(),
        c.account(&b.public(), false).await.unwrap(),
    );
    assert_eq!(
        (before.0.balance, before.0.nonce),
        (after.0.balance, after.0.nonce)
    );
    assert_eq!(
        (before.1.balance, before.1.nonce),
        (after.1.balance, after.1.nonce)
    );

    // A valid transfer commits; replaying it is refused (at admission, and it never re-executes).
    let id = c.submit(&good).await.unwrap().tx_id;
    assert_eq!(
        wait_status(&net, &id, Duration::from_secs(30)).await,
        "committed:"
    );
    let replay = c.submit(&good).await.unwrap_err();
    assert_eq!(replay.code(), Some("nonce_too_low"), "{replay}");
    // Insufficient funds passes admission; execution refuses it, moves nothing and uses up the
    // nonce, so the same signed transaction can never apply later.
    let rich = c.account(&a.public(), false).await.unwrap();
    let broke = transfer(&chain, &a, rich.nonce, b.public(), rich.balance + 1);
    let id = c.submit(&broke).await.unwrap().tx_id;
    assert_eq!(
        wait_status(&net, &id, Duration::from_secs(30)).await,
        "rejected:insufficient_funds"
    );
    let now = c.account(&a.public(), false).await.unwrap();
    assert_eq!((now.balance, now.nonce), (rich.balance, rich.nonce + 1));
    let again = c.submit(&broke).await.unwrap_err();
    assert_eq!(again.code(), Some("nonce_too_low"), "{again}");
    let batch = c.submit_batch(&[bad.clone(), good.clone()]).await.unwrap();
    assert_eq!((batch.accepted, batch.rejected), (0, 2));
    assert_eq!(batch.results[0].code.as_deref(), Some("bad_signature"));

    // Bulk binary submission: malformed bodies are refused whole and admit nothing.
    let next = c.account(&a.public(), false).await.unwrap().nonce;
    let fresh = transfer(&chain, &a, next, b.public(), 1);
    let frame = |tx: &netchain_types::SignedTransaction| {
        let bytes = codec::encode(tx);
        [(bytes.len() as u32).to_le_bytes().to_vec(), bytes].concat()
    };
    let bulk_url = format!("http://{}/v1/transactions/bulk", net.layout.api_address(0));
    let post_bytes = |body: Vec<u8>| {
        let url = bulk_url.clone();
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let whole = frame(&fresh);
    for (body, what) in [
        (whole[..whole.len() - 1].to_vec(), "frame cut short"),
        (whole[..3].to_vec(), "length cut short"),
        (
            [whole.clone(), vec![0xff, 0xff, 0xff, 0x7f]].concat(),
            "huge claimed length",
        ),
    ] {
        let (status, json) = post_bytes(body).await;
        assert_eq!(status, 400, "{what}: {json}");
        assert_eq!(json["code"], "malformed", "{what}: {json}");
    }
    assert!(
        c.tx_status(&fresh.id()).await.unwrap().is_none(),
        "admitted from a bad body"
    );
    // More frames than the batch limit.
    let many: Vec<u8> = std::iter::repeat_n(frame(&fresh), 10_001)
        .flatten()
        .collect();
    let (status, json) = post_bytes(many).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (400, Some("oversize")),
        "{json}"
    );
    // A garbage frame, a forged signature and a good transaction: only the good one goes in,
    // and the answer names the refused ones by position.
    let garbage = [4u32.to_le_bytes().to_vec(), vec![1, 2, 3, 4]].concat();
    let body = [garbage, frame(&bad), frame(&fresh)].concat();
    let (status, json) = post_bytes(body).await;
    assert_eq!(status, 200, "{json}");
    let answer: netchain_api::BulkResponse = serde_json::from_value(json).unwrap();
    assert_eq!((answer.accepted, answer.rejected), (1, 2));
    let refused: Vec<_> = answer
        .refused
        .iter()
        .map(|r| (r.index, r.code.as_str()))
        .collect();
    assert_eq!(refused, vec![(0, "malformed"), (1, "bad_signature")]);
    assert_eq!(
        wait_status(&net, &fresh.id(), Duration::from_secs(30)).await,
        "committed:"
    );
    // The client's helper speaks the same format.
    let again = c.submit_bulk(std::slice::from_ref(&fresh)).await.unwrap();
    assert_eq!(again.refused[0].code, "nonce_too_low");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_port_refuses_strangers_and_garbage_without_a_byte() {
    let _serial = SERIAL.lock().await;
    let net = Net::start(4, 1).await;
    net.wait_height(0, 2, Duration::from_secs(30)).await;
    let addr = net.p2p_address(0);
    // Garbage bytes.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(drain(s).await.is_empty(), "garbage got an answer");
    // An oversized frame header.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
        .await
        .unwrap();
    assert!(drain(s).await.is_empty(), "oversized frame got an answer");
    // A well-formed hello signed by a key outside the committee.
    let stranger = netchain_crypto::Keypair::from_secret([42; 32]);
    let me = net.layout.genesis.committee.validators[0].public_key;
    let hello = netchain_network::hello_frame(&net.chain_id(), &stranger, &me);
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(&(hello.len() as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&hello).await.unwrap();
    assert!(drain(s).await.is_empty(), "a stranger got an answer");
    // The node is unharmed and still commits.
    let h = net.height(0).await.unwrap();
    net.wait_height(0, h + 3, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_proofs_verify_with_committee_keys_and_tampering_is_caught() {
    let _serial = SERIAL.lock().await;
    let net = Net::start(4, 2).await;
    let chain = net.chain_id();
    let (a, b) = (demo_account(&chain, 0), demo_account(&chain, 1));
    let id = net.clients[0]
        .submit(&transfer(&chain, &a, 0, b.public(), 77))
        .await
        .unwrap()
        .tx_id;
    assert_eq!(
        wait_status(&net, &id, Duration::from_secs(30)).await,
        "committed:"
    );
    let committee = &net.layout.genesis.committee;
    // Wait for a checkpoint certified after the transfer.
    let start = Instant::now();
    let resp = loop {
        let r = net.clients[1].account(&b.public(), true).await;
        if let Ok(r) = r {
            if let Ok(v) = verify_account_proof(committee, &chain, &b.public(), &r) {
                if v.account.is_some_and(|acc| acc.balance == 1_000_077) {
                    break r;
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no certified proof of the transfer"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Tampered account value.
    let mut t = resp.clone();
    let p = t.proof.as_mut().unwrap();
    let mut acc: netchain_types::Account =
        codec::decode(&hex::decode(p.account_hex.as_ref().unwrap()).unwrap(), 64).unwrap();
    acc.balance += 1;
    p.account_hex = Some(hex::encode(codec::encode(&acc)));
    assert!(verify_account_proof(committee, &chain, &b.public(), &t).is_err());
    // Tampered proof bytes.
    let mut t = resp.clone();
    let p = t.proof.as_mut().unwrap();
    let mut bytes = hex::decode(&p.state_proof_hex).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    p.state_proof_hex = hex::encode(bytes);
    assert!(verify_account_proof(committee, &chain, &b.public(), &t).is_err());
    // Too few signatures, or a forged state root.
    let mut t = resp.clone();
    t.proof.as_mut().unwrap().checkpoint.signatures.truncate(2);
    assert!(verify_account_proof(committee, &chain, &b.public(), &t).is_err());
    let mut t = resp.clone();
    t.proof.as_mut().unwrap().checkpoint.checkpoint.state_root.0[0] ^= 1;
    assert!(verify_account_proof(committee, &chain, &b.public(), &t).is_err());
    // Another account's proof does not pass for this account.
    assert!(verify_account_proof(committee, &chain, &a.public(), &resp).is_err());
    // The CLI checks the same with only the genesis file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netchain"))
        .args([
            "verify",
            "--account",
            &b.public().to_string(),
            "--node",
            net.layout.api_address(2),
        ])
        .arg("--genesis")
        .arg(net.layout.genesis_file())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verified"), "{stdout}");
}
