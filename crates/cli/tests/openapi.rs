//! Contract test: real responses of every endpoint validate against `/openapi.json`.

mod common;

use common::{transfer, Net, SERIAL};
use netchain_cli::layout::demo_account;
use netchain_crypto::{sign_transaction, Keypair};
use netchain_types::currency::{
    voucher_id, CurrencyOp, CurrencyRules, Deposit, MerchantInfo, PaymentRequest, VoucherOp,
};
use netchain_types::{codec, Digest, Payload, Reference, SignedTransaction, Transaction};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A small JSON-schema checker for the keywords our document uses.
fn check(doc: &Value, schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "dangling $ref {r}");
        return check(doc, target, v, path);
    }
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let ok = options
            .iter()
            .filter(|o| check(doc, o, v, path).is_ok())
            .count();
        return if ok == 1 {
            Ok(())
        } else {
            Err(format!("{path}: {ok} oneOf branches match"))
        };
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let fits = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !fits {
            return Err(format!("{path}: {actual} is not {types:?}"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != v {
            return Err(format!("{path}: {v} is not {c}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err(format!("{path}: {v} not in {e:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if n < min {
            return Err(format!("{path}: {n} < {min}"));
        }
    }
    if let (Some(p), Some(s)) = (schema.get("pattern").and_then(Value::as_str), v.as_str()) {
        // The document's patterns are lowercase-hex of a fixed length, or height:index.
        let ok = if let Some(len) = p
            .strip_prefix("^[0-9a-f]{")
            .and_then(|r| r.strip_suffix("}$"))
        {
            s.len() == len.parse::<usize>().unwrap() && s.bytes().all(|b| b.is_ascii_hexdigit())
        } else {
            true
        };
        if !ok {
            return Err(format!("{path}: {s:?} does not match {p}"));
        }
    }
    if let Value::Object(map) = v {
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = r.as_str().unwrap();
            if !map.contains_key(key) {
                return Err(format!("{path}: missing {key}"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, val) in map {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(doc, s, val, &format!("{path}.{k}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{path}: unexpected {k}"))
                }
                None => {}
            }
        }
    }
    if let Value::Array(items) = v {
        if let Some(prefix) = schema.get("prefixItems").and_then(Value::as_array) {
            for (i, (s, item)) in prefix.iter().zip(items).enumerate() {
                check(doc, s, item, &format!("{path}[{i}]"))?;
            }
        } else if let Some(s) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(doc, s, item, &format!("{path}[{i}]"))?;
            }
        }
    }
    Ok(())
}

impl Contract {
    /// Submits a transaction and waits for its outcome; returns the status body.
    async fn send(&mut self, tx: SignedTransaction) -> Value {
        let id = tx.id().to_string();
        let (s, _) = self
            .call(
                "post",
                "/v1/transactions",
                "/v1/transactions",
                Some(serde_json::json!({ "tx": tx })),
            )
            .await;
        assert_eq!(s, 202);
        let start = Instant::now();
        loop {
            let (_, v) = self
                .call(
                    "get",
                    "/v1/transactions/{id}",
                    &format!("/v1/transactions/{id}"),
                    None,
                )
                .await;
            if v["status"] != "pending" {
                return v;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{id} stuck");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn signed(chain: &str, kp: &Keypair, nonce: u64, payload: Payload) -> SignedTransaction {
    sign_transaction(
        kp,
        Transaction {
            chain_id: chain.into(),
            sender: kp.public(),
            nonce,
            payload,
        },
    )
}

/// Runs one of every local-currency flow through the API and validates each read endpoint.
async fn currency_endpoints(c: &mut Contract, chain: &str) {
    let (issuer, bank, shop) = (
        demo_account(chain, 0),
        demo_account(chain, 1),
        demo_account(chain, 2),
    );
    let resident = bank.clone();
    let mut n_issuer = 2; // two transfers above
    let mut n_bank = 0;
    let rules = CurrencyRules {
        regions: vec!["north".into()],
        categories: vec!["cafe".into()],
        wallet_balance_max: 1_000_000,
        monthly_charge_max: 1_000_000,
        bonus_bps: 500,
        require_verified: false,
    };
    let run = async |c: &mut Contract, kp: &Keypair, n: &mut u64, payload| {
        let v = c.send(signed(chain, kp, *n, payload)).await;
        assert_eq!(v["status"], "committed", "{v}");
        *n += 1;
        v
    };
    let cur = |op| Payload::Currency(op);
    run(
        c,
        &issuer,
        &mut n_issuer,
        cur(CurrencyOp::Define {
            currency: "TOWN".into(),
            bank: bank.public(),
            expiry_secs: 3_600,
            rules,
        }),
    )
    .await;
    run(
        c,
        &issuer,
        &mut n_issuer,
        cur(CurrencyOp::RegisterMerchants {
            currency: "TOWN".into(),
            merchants: vec![MerchantInfo {
                merchant: shop.public(),
                region: "north".into(),
                category: "cafe".into(),
                settlement_account: "acct-1".into(),
            }],
        }),
    )
    .await;
    run(
        c,
        &bank,
        &mut n_bank,
        cur(CurrencyOp::Charge {
            currency: "TOWN".into(),
            deposits: vec![Deposit {
                wallet: resident.public(),
                amount: 10_000,
                reference: Digest([1; 32]),
            }],
        }),
    )
    .await;
    let request = PaymentRequest {
        chain_id: chain.into(),
        currency: "TOWN".into(),
        merchant: shop.public(),
        amount: 4_000,
        reference: Reference([9; 16]),
        expires_at_ms: u64::MAX,
    };
    let payment = request.id();
    let merchant_signature = shop.sign(&payment);
    run(
        c,
        &resident,
        &mut n_bank,
        cur(CurrencyOp::Pay {
            request,
            merchant_signature,
        }),
    )
    .await;
    let mut n_shop = 0;
    run(
        c,
        &shop,
        &mut n_shop,
        cur(CurrencyOp::Redeem {
            currency: "TOWN".into(),
            amount: 1_000,
        }),
    )
    .await;
    let v = run(
        c,
        &issuer,
        &mut n_issuer,
        Payload::Voucher(VoucherOp::Issue {
            currency: "TOWN".into(),
            to: resident.public(),
            face_value: 500,
            count: 1,
            expires_at_ms: u64::MAX,
        }),
    )
    .await;
    let voucher = voucher_id(&v["tx_id"].as_str().unwrap().parse().unwrap(), 0);
    let get = async |c: &mut Contract, template: &str, path: String| {
        c.call("get", template, &path, None).await
    };
    let (s, v) = get(c, "/v1/currencies", "/v1/currencies".into()).await;
    assert_eq!((s, v[0]["id"].as_str()), (200, Some("TOWN")));
    let (s, v) = get(c, "/v1/currencies/{id}", "/v1/currencies/TOWN".into()).await;
    assert_eq!((s, v["totals"]["minted_bonus"].as_u64()), (200, Some(500)));
    let (s, _) = get(c, "/v1/currencies/{id}", "/v1/currencies/NOPE".into()).await;
    assert_eq!(s, 404);
    let (s, _) = get(c, "/v1/currencies/{id}", "/v1/currencies/bad%20id".into()).await;
    assert_eq!(s, 400);
    let (s, v) = get(
        c,
        "/v1/currencies/{id}/reconciliation",
        "/v1/currencies/TOWN/reconciliation".into(),
    )
    .await;
    assert_eq!(
        (s, &v["balanced"], v["minted"].as_u64()),
        (200, &Value::Bool(true), Some(11_000))
    );
    let (s, v) = get(
        c,
        "/v1/currencies/{id}/reconciliation",
        "/v1/currencies/TOWN/reconciliation?height=1".into(),
    )
    .await;
    assert_eq!(
        (s, v["minted"].as_u64()),
        (200, Some(0)),
        "nothing minted at height 1"
    );
    let (s, _) = get(
        c,
        "/v1/currencies/{id}/reconciliation",
        "/v1/currencies/TOWN/reconciliation?height=999999999".into(),
    )
    .await;
    assert_eq!(s, 404);
    let (s, v) = get(
        c,
        "/v1/currencies/{id}/wallets/{key}",
        format!("/v1/currencies/TOWN/wallets/{}", resident.public()),
    )
    .await;
    assert_eq!((s, v["spendable"].as_u64()), (200, Some(6_500)));
    let (s, v) = get(
        c,
        "/v1/currencies/{id}/merchants/{key}",
        format!("/v1/currencies/TOWN/merchants/{}", shop.public()),
    )
    .await;
    assert_eq!(
        (s, v["balance"].as_u64(), v["redeemed"].as_u64()),
        (200, Some(3_000), Some(1_000))
    );
    let (s, _) = get(
        c,
        "/v1/currencies/{id}/merchants/{key}",
        format!("/v1/currencies/TOWN/merchants/{}", issuer.public()),
    )
    .await;
    assert_eq!(s, 404);
    let (s, v) = get(
        c,
        "/v1/currencies/{id}/settlements",
        "/v1/currencies/TOWN/settlements?paid=false".into(),
    )
    .await;
    assert_eq!(
        (
            s,
            v[0]["amount"].as_u64(),
            v[0]["settlement_account"].as_str()
        ),
        (200, Some(1_000), Some("acct-1"))
    );
    let (s, v) = get(c, "/v1/payments/{id}", format!("/v1/payments/{payment}")).await;
    assert_eq!((s, v["amount"].as_u64()), (200, Some(4_000)));
    let (s, _) = get(
        c,
        "/v1/payments/{id}",
        format!("/v1/payments/{}", "00".repeat(32)),
    )
    .await;
    assert_eq!(s, 404);
    let (s, v) = get(c, "/v1/vouchers/{id}", format!("/v1/vouchers/{voucher}")).await;
    assert_eq!((s, v["remaining"].as_u64()), (200, Some(500)));
}

struct Contract {
    doc: Value,
    http: reqwest::Client,
    base: String,
    checked: std::collections::BTreeSet<(String, String)>,
}

impl Contract {
    /// Calls `method path` and validates the answer against the documented response of its
    /// status; returns the status and body.
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "get" => self.http.get(url),
            _ => self.http.post(url).json(&body.unwrap_or(Value::Null)),
        };
        let resp = req.send().await.unwrap();
        self.answer(method, template, path, resp).await
    }

    /// A POST with a binary body.
    async fn post_bytes(&mut self, template: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .post(url)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        self.answer("post", template, path, resp).await
    }

    /// Checks an answer against the documented response of `method template`.
    async fn answer(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        resp: reqwest::Response,
    ) -> (u16, Value) {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let op = &self.doc["paths"][template][method];
        assert!(!op.is_null(), "{method} {template} is not documented");
        let documented = &op["responses"][status.to_string()];
        assert!(
            !documented.is_null(),
            "{method} {path}: status {status} not documented: {text}"
        );
        let content = &documented["content"];
        let value = if let Some(s) = content.get("application/json") {
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
            check(&self.doc, &s["schema"], &v, path)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{text}"));
            v
        } else {
            Value::String(text)
        };
        self.checked
            .insert((method.to_string(), template.to_string()));
        (status, value)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_as_documented() {
    let _serial = SERIAL.lock().await;
    let net = Net::start(4, 3).await;
    let chain = net.chain_id();
    let api = net.layout.api_address(0).to_string();
    let doc: Value = reqwest::get(format!("http://{api}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut c = Contract {
        doc,
        http: reqwest::Client::new(),
        base: format!("http://{api}"),
        checked: Default::default(),
    };
    let (a, b) = (demo_account(&chain, 0), demo_account(&chain, 1));

    let tx = transfer(&chain, &a, 0, b.public(), 3);
    let hex_tx = hex::encode(codec::encode(&tx));
    let (s, v) = c
        .call(
            "post",
            "/v1/transactions",
            "/v1/transactions",
            Some(serde_json::json!({ "tx_hex": hex_tx })),
        )
        .await;
    assert_eq!(s, 202);
    let id = v["tx_id"].as_str().unwrap().to_string();
    let (s, _) = c
        .call(
            "post",
            "/v1/transactions",
            "/v1/transactions",
            Some(serde_json::json!({ "tx_hex": "zz" })),
        )
        .await;
    assert_eq!(s, 400);
    let tx2 = transfer(&chain, &a, 1, b.public(), 4);
    let (s, v) = c
        .call(
            "post",
            "/v1/transactions/batch",
            "/v1/transactions/batch",
            Some(serde_json::json!({ "txs": [tx2], "txs_hex": ["00"] })),
        )
        .await;
    assert_eq!(
        (s, v["accepted"].as_u64(), v["rejected"].as_u64()),
        (200, Some(1), Some(1))
    );
    // From an account no other call uses (unfunded: admitted, refused by execution).
    let tx3 = transfer(&chain, &Keypair::from_secret([77; 32]), 0, b.public(), 4);
    let encoded = codec::encode(&tx3);
    let body = [(encoded.len() as u32).to_le_bytes().to_vec(), encoded].concat();
    let (s, v) = c
        .post_bytes("/v1/transactions/bulk", "/v1/transactions/bulk", body)
        .await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(1)), "{v}");
    let (s, _) = c
        .post_bytes(
            "/v1/transactions/bulk",
            "/v1/transactions/bulk",
            vec![9, 0, 0],
        )
        .await;
    assert_eq!(s, 400);
    // Wait for the first transfer to commit and a checkpoint to cover it.
    let start = Instant::now();
    loop {
        let (_, v) = c
            .call(
                "get",
                "/v1/transactions/{id}",
                &format!("/v1/transactions/{id}"),
                None,
            )
            .await;
        if v["status"] == "committed" {
            assert!(v["tx"].is_object());
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, _) = c
        .call(
            "get",
            "/v1/transactions/{id}",
            &format!("/v1/transactions/{}", "ab".repeat(32)),
            None,
        )
        .await;
    assert_eq!(s, 404);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, v) = c
        .call(
            "get",
            "/v1/accounts/{key}",
            &format!("/v1/accounts/{}?proof=true", b.public()),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert!(v["proof"].is_object());
    c.call(
        "get",
        "/v1/accounts/{key}",
        &format!("/v1/accounts/{}", a.public()),
        None,
    )
    .await;
    let (s, _) = c
        .call("get", "/v1/accounts/{key}", "/v1/accounts/nothex", None)
        .await;
    assert_eq!(s, 400);
    let (_, list) = c
        .call("get", "/v1/blocks", "/v1/blocks?limit=5", None)
        .await;
    let first = &list[0];
    c.call(
        "get",
        "/v1/blocks",
        &format!("/v1/blocks?before={}&limit=2", first["height"]),
        None,
    )
    .await;
    c.call("get", "/v1/blocks/{height}", "/v1/blocks/latest", None)
        .await;
    c.call("get", "/v1/blocks/{height}", "/v1/blocks/1", None)
        .await;
    let (s, v) = c
        .call(
            "get",
            "/v1/blocks/{height}",
            &format!("/v1/blocks/{}", first["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!((s, &v["id"]), (200, &first["id"]));
    let (s, _) = c
        .call("get", "/v1/blocks/{height}", "/v1/blocks/99999999", None)
        .await;
    assert_eq!(s, 404);
    let (_, mut status) = c.call("get", "/v1/status", "/v1/status", None).await;
    // The checker bites: a response missing a field or with a wrong type is refused.
    let status_schema = serde_json::json!({ "$ref": "#/components/schemas/Status" });
    status["height"] = Value::String("tall".into());
    assert!(check(&c.doc, &status_schema, &status, "status").is_err());
    status.as_object_mut().unwrap().remove("height");
    assert!(check(&c.doc, &status_schema, &status, "status").is_err());
    c.call(
        "get",
        "/v1/checkpoints/latest",
        "/v1/checkpoints/latest",
        None,
    )
    .await;
    let (_, v) = c
        .call("get", "/v1/validators", "/v1/validators", None)
        .await;
    assert_eq!(v.as_array().unwrap().len(), 4);
    let (s, v) = c.call("get", "/metrics", "/metrics", None).await;
    assert_eq!(s, 200);
    assert!(v.as_str().unwrap().contains("netchain_height"));
    let (s, _) = c
        .call("get", "/v1/events", "/v1/events?cursor=bad", None)
        .await;
    assert_eq!(s, 400);
    // One event from the stream, validated against the Event schema.
    let mut resp = reqwest::get(format!("http://{api}/v1/events?cursor=0:0"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut buf = String::new();
    while !buf.contains("\n\n") {
        buf.push_str(&String::from_utf8_lossy(
            &resp.chunk().await.unwrap().unwrap(),
        ));
    }
    let data = buf
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap()
        .trim();
    let event: Value = serde_json::from_str(data).unwrap();
    check(
        &c.doc,
        &serde_json::json!({ "$ref": "#/components/schemas/Event" }),
        &event,
        "event",
    )
    .unwrap();
    c.checked.insert(("get".into(), "/v1/events".into()));
    currency_endpoints(&mut c, &chain).await;
    // The registry endpoints on a standalone chain: nothing registered; state proofs at a height.
    let (s, v) = c.call("get", "/v1/chains", "/v1/chains", None).await;
    assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(0)));
    let (s, _) = c
        .call("get", "/v1/chains/{id}", "/v1/chains/svc-1", None)
        .await;
    assert_eq!(s, 404);
    let (s, _) = c
        .call(
            "get",
            "/v1/chains/{id}/anchors/{height}",
            "/v1/chains/svc-1/anchors/latest?proof=true",
            None,
        )
        .await;
    assert_eq!(s, 404);
    let key = hex::encode(netchain_execution::account_key(&b.public()));
    let (s, v) = c
        .call(
            "get",
            "/v1/state/proof",
            &format!("/v1/state/proof?key={key}&height=2"),
            None,
        )
        .await;
    assert_eq!((s, v["height"].as_u64()), (200, Some(2)));
    let (s, _) = c
        .call("get", "/v1/state/proof", "/v1/state/proof?key=zz", None)
        .await;
    assert_eq!(s, 400);
    identity_endpoints(&mut c, &net).await;
    // Every documented operation was exercised.
    let documented: std::collections::BTreeSet<(String, String)> = c.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    assert_eq!(
        documented, c.checked,
        "documented vs exercised operations differ"
    );
}

/// The identity registry of the test network (its consortium of organizations).
async fn identity_endpoints(c: &mut Contract, net: &Net) {
    let (s, v) = c
        .call("get", "/v1/identity/orgs", "/v1/identity/orgs", None)
        .await;
    assert_eq!(s, 200);
    let orgs = v["organizations"].as_array().unwrap();
    assert_eq!(orgs.len(), netchain_cli::layout::DEFAULT_ORGANIZATIONS);
    let (s, _) = c
        .call(
            "get",
            "/v1/identity/orgs/{org}",
            "/v1/identity/orgs/org-1",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = c
        .call(
            "get",
            "/v1/identity/orgs/{org}/identities/{name}",
            "/v1/identity/orgs/org-1/identities/validator-0",
            None,
        )
        .await;
    assert_eq!((s, v["record"]["status"].as_str()), (200, Some("active")));
    let key = net.layout.genesis.committee.validators[0].public_key;
    let (s, v) = c
        .call(
            "get",
            "/v1/identity/keys/{key}",
            &format!("/v1/identity/keys/{key}?proof=true"),
            None,
        )
        .await;
    assert_eq!((s, v["standing"].as_str()), (200, Some("active")));
    let (s, v) = c
        .call(
            "get",
            "/v1/identity/keys/{key}",
            &format!("/v1/identity/keys/{}", "ab".repeat(32)),
            None,
        )
        .await;
    assert_eq!((s, v["standing"].as_str()), (200, Some("unknown")));
    let (s, _) = c
        .call(
            "get",
            "/v1/identity/orgs/{org}",
            "/v1/identity/orgs/nope",
            None,
        )
        .await;
    assert_eq!(s, 404);
    // A token signed by a key the registry does not list as a client: refused, as documented.
    let stranger = netchain_crypto::Keypair::from_secret([77; 32]);
    let token = net.clients[0]
        .access_token(&stranger, 60_000)
        .await
        .unwrap();
    let (s, v) = c
        .call(
            "post",
            "/v1/auth/session",
            "/v1/auth/session",
            Some(serde_json::json!({ "token": token })),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (403, Some("unregistered_client")));
}
