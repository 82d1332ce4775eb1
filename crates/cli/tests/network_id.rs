//! Network ID on a real 4-validator network whose genesis holds a consortium of three
//! organizations, driven with `netchain id ...` as the README shows: a new organization is added
//! with the approvals of two of three, registers a node, and its standing verifies against the
//! committee keys; an organization's admin cannot act for another; a validator revoked by its
//! organization is cut off by the others within a block of the revocation, while they keep
//! committing; knocking on a peer port with the revoked key gets zero bytes back.

mod common;

use common::{Net, SERIAL};
use netchain_client::Client;
use netchain_crypto::{KeyFile, Keypair};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs `netchain args...`; returns (success, stdout + stderr).
fn netchain(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netchain"))
        .args(args)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A metric's value on validator `i`.
async fn metric(net: &Net, i: usize, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", net.layout.api_address(i)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(" ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// Everything a peer port answers to a Hello signed by `key`.
async fn answer(net: &Net, to: usize, key: &Keypair) -> Vec<u8> {
    let me = net.layout.genesis.committee.validators[to].public_key;
    let hello = netchain_network::hello_frame(&net.chain_id(), key, &me);
    let mut s = tokio::net::TcpStream::connect(net.p2p_address(to))
        .await
        .unwrap();
    s.write_all(&(hello.len() as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&hello).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consortium_admission_and_revocation_at_once() {
    let _serial = SERIAL.lock().await;
    let net = Net::start(4, 2).await;
    net.wait_height(0, 2, Duration::from_secs(30)).await;
    let node = net.layout.api_address(0).to_string();
    let dir = net.layout.dir.clone();
    let admin = |org: &str| {
        netchain_cli::layout::org_admin_file(&dir, org)
            .display()
            .to_string()
    };
    let genesis = dir.join("genesis.json").display().to_string();
    let scratch = tempfile::tempdir().unwrap();
    let keyfile = |name: &str| -> (String, Keypair) {
        let kp = Keypair::from_secret(*blake3::hash(name.as_bytes()).as_bytes());
        let path: PathBuf = scratch.path().join(format!("{name}.json"));
        KeyFile::from_keypair(&kp).save(&path).unwrap();
        (path.display().to_string(), kp)
    };

    // A new organization: one approval is not enough, two of three are.
    let (d_admin_file, d_admin) = keyfile("energy-admin");
    let d_admin_pk = d_admin.public().to_string();
    let add = |approvals: &[&str]| {
        let mut args = vec![
            "id",
            "org",
            "add",
            "--node",
            &node,
            "--key",
            &d_admin_file,
            "--id",
            "energy-d",
            "--name",
            "Energy D",
            "--admins",
            &d_admin_pk,
        ];
        for a in approvals {
            args.extend(["--approve", a]);
        }
        netchain(&args)
    };
    let one = format!("org-1={}", admin("org-1"));
    let two = format!("org-2={}", admin("org-2"));
    let (ok, out) = add(&[&one]);
    assert!(!ok && out.contains("insufficient_approvals"), "{out}");
    let (ok, out) = add(&[&one, &two]);
    assert!(ok, "{out}");
    // It registers a node of its own, which then verifies as active with a proof.
    let (gw_file, gw) = keyfile("energy-gateway");
    let gw_pk = gw.public().to_string();
    let (ok, out) = netchain(&[
        "id",
        "node",
        "add",
        "--node",
        &node,
        "--key",
        &d_admin_file,
        "--org",
        "energy-d",
        "--name",
        "gateway-1",
        "--identity-key",
        &gw_file,
        "--role",
        "full-node",
        "--chains",
        "*",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = netchain(&[
        "id", "show", "--node", &node, "--key", &gw_pk, "--verify", &genesis,
    ]);
    assert!(ok && out.contains("is active"), "{out}");
    // A proof about another key, or one claiming another height, is refused.
    let proven: netchain_api::identity::KeyResponse = net.clients[0]
        .get_typed(&format!("/v1/identity/keys/{gw_pk}?proof=true"))
        .await
        .unwrap();
    let committee = &net.layout.genesis.committee;
    let now = netchain_node::now_ms();
    let chain = net.chain_id();
    assert!(
        netchain_client::verify_key_standing(committee, &chain, &gw.public(), now, &proven).is_ok()
    );
    let other = d_admin.public();
    assert!(netchain_client::verify_key_standing(committee, &chain, &other, now, &proven).is_err());
    let mut lying = proven.clone();
    lying.height = u64::MAX;
    assert!(
        netchain_client::verify_key_standing(committee, &chain, &gw.public(), now, &lying).is_err()
    );
    // energy-d's admin cannot revoke org-1's validator.
    let (ok, out) = netchain(&[
        "id",
        "revoke",
        "--node",
        &node,
        "--key",
        &d_admin_file,
        "--org",
        "org-1",
        "--name",
        "validator-3",
    ]);
    assert!(!ok && out.contains("not_org_admin"), "{out}");

    // Before: validator 3's key is admitted (a Hello gets a Welcome).
    let v3_key: Keypair = KeyFile::load(&net.layout.validator_dir(3).join("key.json")).unwrap();
    assert!(!answer(&net, 0, &v3_key).await.is_empty());
    // org-1 revokes its validator 3.
    let (ok, out) = netchain(&[
        "id",
        "revoke",
        "--node",
        &node,
        "--key",
        &admin("org-1"),
        "--org",
        "org-1",
        "--name",
        "validator-3",
    ]);
    assert!(ok, "{out}");
    let revoked_at: u64 = out
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("\"height\": ")?
                .trim_end_matches(',')
                .parse()
                .ok()
        })
        .expect("commit height in the output");
    // Every other validator closes its connections with 3 (the metric counts them) ...
    let start = Instant::now();
    for i in 0..3 {
        while metric(&net, i, "netchain_p2p_evicted_connections").await < 1.0 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "validator {i} did not cut off the revoked validator"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // ... within one block of learning of it: validator 3 commits nothing past the block after
    // the revocation, while the other three keep committing.
    let h0 = net.height(0).await.unwrap();
    net.wait_height(0, h0 + 3, Duration::from_secs(60)).await;
    let h3 = net.height(3).await.unwrap();
    assert!(
        h3 <= revoked_at + 1,
        "the revoked validator reached height {h3}, revoked at {revoked_at}"
    );
    // Knocking with the revoked key: not a byte back.
    assert!(answer(&net, 0, &v3_key).await.is_empty());
    let (ok, out) = netchain(&[
        "id",
        "show",
        "--node",
        &node,
        "--key",
        &v3_key.public().to_string(),
        "--verify",
        &genesis,
    ]);
    assert!(ok && out.contains("is revoked"), "{out}");
    // Revocation is final.
    let (ok, out) = netchain(&[
        "id",
        "resume",
        "--node",
        &node,
        "--key",
        &admin("org-1"),
        "--org",
        "org-1",
        "--name",
        "validator-3",
    ]);
    assert!(!ok && out.contains("revoked"), "{out}");
}

/// A transaction signed by `key` on the test chain.
fn signed(
    net: &Net,
    key: &Keypair,
    nonce: u64,
    payload: netchain_types::Payload,
) -> netchain_types::SignedTransaction {
    netchain_crypto::sign_transaction(
        key,
        netchain_types::Transaction {
            chain_id: net.chain_id(),
            sender: key.public(),
            nonce,
            payload,
        },
    )
}

/// Submits and waits for the outcome: "applied" or the rejection code.
async fn outcome(net: &Net, tx: &netchain_types::SignedTransaction) -> String {
    let c = &net.clients[1];
    let id = c.submit(tx).await.unwrap().tx_id;
    let start = Instant::now();
    loop {
        if let Some(s) = c.tx_status(&id).await.unwrap() {
            match s.status.as_str() {
                "committed" => return "applied".into(),
                "rejected" => return s.code.unwrap_or_default(),
                _ => {}
            }
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no outcome");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_clients_tokens_sessions_and_rates() {
    use netchain_types::identity::{
        key_proof_message, IdentityKind, IdentityOp, IdentitySpec, IdentityStatus,
    };
    use netchain_types::Payload;
    let _serial = SERIAL.lock().await;
    // Validator 0 serves reads to registered clients only, 20 requests/s per client; the chain
    // accepts transactions from registered identities only (the demo accounts are clients).
    let net = Net::start_with(4, 3, true, |i, cfg| {
        if i == 0 {
            cfg.access.reads = netchain_config::ReadAccess::Registered;
            cfg.access.client_requests_per_sec = 20;
        }
    })
    .await;
    net.wait_height(1, 2, Duration::from_secs(30)).await;
    let chain = net.chain_id();
    let demo = netchain_cli::layout::demo_account(&chain, 0);
    let admin: Keypair = KeyFile::load(&netchain_cli::layout::org_admin_file(
        &net.layout.dir,
        "org-1",
    ))
    .unwrap();
    let sink = Keypair::from_secret([5; 32]).public();
    let transfer = |to| Payload::Transfer {
        to,
        amount: 1,
        memo: Vec::new(),
    };

    // Writes: a registered client passes; a stranger is refused at the door (403) and by
    // execution if a block carried it anyway.
    assert_eq!(
        outcome(&net, &signed(&net, &demo, 0, transfer(sink))).await,
        "applied"
    );
    let stranger = Keypair::from_secret([6; 32]);
    let err = net.clients[1]
        .submit(&signed(&net, &stranger, 0, transfer(sink)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("unregistered_sender"), "{err}");

    // A client registered by org-1's admin (identity operations need no registration).
    let app = Keypair::from_secret([7; 32]);
    let register = |name: &str, key: &Keypair| IdentityOp::Register {
        org: "org-1".into(),
        identity: IdentitySpec {
            name: name.into(),
            key: key.public(),
            kind: IdentityKind::Client {
                roles: vec!["reader".into()],
            },
            expires_ms: None,
        },
        key_proof: key.sign(&key_proof_message(&chain, "org-1", name, &key.public())),
    };
    let mut admin_nonce = 0;
    let mut admin_op = |op| {
        admin_nonce += 1;
        signed(&net, &admin, admin_nonce - 1, Payload::Identity(op))
    };
    let tx = admin_op(register("app-1", &app));
    assert_eq!(outcome(&net, &tx).await, "applied");

    // Reads on validator 0 need a session; /v1/status stays open.
    let open = &net.clients[0];
    assert!(open.status().await.is_ok());
    let err = open.get_json("/v1/blocks/1").await.unwrap_err();
    assert_eq!(err.code(), Some("session_required"), "{err}");
    // A token for validator 0 opens a session once; replayed, it is refused.
    let token = open.access_token(&app, 60_000).await.unwrap();
    let session = open.open_session(&token).await.unwrap();
    let reader = Client::new(net.layout.api_address(0)).with_session(&session.session);
    assert!(reader.get_json("/v1/blocks/1").await.is_ok());
    let err = open.open_session(&token).await.unwrap_err();
    assert_eq!(err.code(), Some("token_replayed"), "{err}");
    // A token for validator 1 is foreign to validator 0; an expired one and a stranger's fail.
    let other = net.clients[1].access_token(&app, 60_000).await.unwrap();
    let err = open.open_session(&other).await.unwrap_err();
    assert_eq!(err.code(), Some("foreign_token"), "{err}");
    let mut expired = open.access_token(&app, 60_000).await.unwrap();
    expired.expires_ms = netchain_node::now_ms() - 1;
    expired.signature = app.sign(&expired.signing_message());
    let err = open.open_session(&expired).await.unwrap_err();
    assert_eq!(err.code(), Some("token_expired"), "{err}");
    let forged = open.access_token(&stranger, 60_000).await.unwrap();
    let err = open.open_session(&forged).await.unwrap_err();
    assert_eq!(err.code(), Some("unregistered_client"), "{err}");
    let mut tampered = open.access_token(&app, 60_000).await.unwrap();
    tampered.expires_ms += 1;
    let err = open.open_session(&tampered).await.unwrap_err();
    assert_eq!(err.code(), Some("bad_signature"), "{err}");

    // One client cannot flood the node: 20 requests/s, bursts of 40.
    tokio::time::sleep(Duration::from_secs(2)).await; // a full bucket
    let mut limited = 0;
    for _ in 0..60 {
        if let Err(e) = reader.get_json("/v1/blocks/1").await {
            assert_eq!(e.code(), Some("rate_limited"), "{e}");
            limited += 1;
        }
    }
    assert!(
        limited >= 10,
        "only {limited} of 60 quick requests were limited"
    );

    // Rotation: the old key's tokens are refused, the new key's accepted.
    let rotated = Keypair::from_secret([8; 32]);
    let tx = admin_op(IdentityOp::Rotate {
        org: "org-1".into(),
        name: "app-1".into(),
        new_key: rotated.public(),
        key_proof: rotated.sign(&key_proof_message(
            &chain,
            "org-1",
            "app-1",
            &rotated.public(),
        )),
    });
    assert_eq!(outcome(&net, &tx).await, "applied");
    net.wait_height(0, net.height(1).await.unwrap(), Duration::from_secs(30))
        .await;
    let old = open.access_token(&app, 60_000).await.unwrap();
    let err = open.open_session(&old).await.unwrap_err();
    assert_eq!(err.code(), Some("unregistered_client"), "{err}");
    let new = open.access_token(&rotated, 60_000).await.unwrap();
    let session = open.open_session(&new).await.unwrap();
    let reader = Client::new(net.layout.api_address(0)).with_session(&session.session);
    assert!(reader.get_json("/v1/blocks/1").await.is_ok());
    // Revocation ends the open session at once.
    let tx = admin_op(IdentityOp::SetStatus {
        org: "org-1".into(),
        name: "app-1".into(),
        status: IdentityStatus::Revoked,
    });
    assert_eq!(outcome(&net, &tx).await, "applied");
    net.wait_height(0, net.height(1).await.unwrap(), Duration::from_secs(30))
        .await;
    let err = reader.get_json("/v1/blocks/1").await.unwrap_err();
    assert_eq!(err.code(), Some("unregistered_client"), "{err}");
}
