//! The event stream against real validators: resume by cursor after a dropped connection and
//! after a node restart, compared with the chain's own record.

mod common;

use common::{transfer, Net, SERIAL};
use netchain_cli::layout::demo_account;
use std::time::{Duration, Instant};

/// A minimal server-sent-events reader.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Ev {
    id: String,
    kind: String,
    data: serde_json::Value,
}

impl Sse {
    async fn open(api: &str, query: &str) -> Sse {
        let resp = reqwest::Client::new()
            .get(format!("http://{api}/v1/events?{query}"))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        Sse {
            resp,
            buf: String::new(),
        }
    }

    async fn next(&mut self, timeout: Duration) -> Option<Ev> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (String::new(), String::new(), String::new());
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return Some(Ev {
                    id,
                    kind,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }
}

/// The chain's own record of transaction events (cursor, tx id) for heights 1..=top.
async fn chain_record(net: &Net, node: usize, top: u64) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for h in 1..=top {
        let b = net.clients[node].block(h).await.unwrap().unwrap();
        for (i, id) in b.transactions.iter().enumerate() {
            out.push((format!("{h}:{}", i + 1), id.to_string()));
        }
    }
    out
}

async fn submit(net: &Net, from_account: usize, count: u64, first_nonce: u64) -> Vec<String> {
    let chain = net.chain_id();
    let key = demo_account(&chain, from_account);
    let to = demo_account(&chain, from_account + 1).public();
    let txs: Vec<_> = (0..count)
        .map(|n| transfer(&chain, &key, first_nonce + n, to, 1))
        .collect();
    let resp = net.clients[1].submit_batch(&txs).await.unwrap();
    assert_eq!(resp.accepted, count as usize);
    txs.iter().map(|t| t.id().to_string()).collect()
}

/// Reads tx events until every id in `want` was seen (or the time runs out).
async fn read_until(sse: &mut Sse, got: &mut Vec<Ev>, want: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !want
        .iter()
        .all(|w| got.iter().any(|e| e.data["id"].as_str() == Some(w)))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match sse.next(left).await {
            Some(e) => got.push(e),
            None => panic!("stream ended or timed out after {} events", got.len()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_resumes_by_cursor_across_drops_and_restarts() {
    let _serial = SERIAL.lock().await;
    let mut net = Net::start(4, 4).await;
    let api = net.layout.api_address(0).to_string();
    let first = submit(&net, 0, 20, 0).await;

    // Read part of the stream from genesis, then drop the connection.
    let mut got = Vec::new();
    let mut sse = Sse::open(&api, "cursor=0:0&type=tx").await;
    while got.len() < 7 {
        got.push(sse.next(Duration::from_secs(30)).await.expect("event"));
    }
    drop(sse);
    let cursor = got.last().unwrap().id.clone();
    // Reconnect with the last cursor: the rest follows with no gap and no duplicate.
    let mut sse = Sse::open(&api, &format!("cursor={cursor}&type=tx")).await;
    read_until(&mut sse, &mut got, &first).await;
    drop(sse);

    // Restart the node; resume from the last cursor against the restarted node.
    let cursor = got.last().unwrap().id.clone();
    net.kill(0).await;
    let more = submit(&net, 2, 10, 0).await;
    net.start_node(0);
    netchain_cli::procs::wait_ready(&net.clients[..1], Duration::from_secs(30))
        .await
        .unwrap();
    let mut sse = Sse::open(&api, &format!("cursor={cursor}&type=tx")).await;
    read_until(&mut sse, &mut got, &more).await;

    // Compare with the chain's record up to the last height seen.
    let top: u64 = got.last().unwrap().data["height"].as_u64().unwrap();
    let record = chain_record(&net, 0, top).await;
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|e| (e.id.clone(), e.data["id"].as_str().unwrap().to_string()))
        .collect();
    // The stream may end mid-block; compare up to what it delivered.
    assert_eq!(
        seen,
        record[..seen.len()].to_vec(),
        "gap or duplicate in the stream"
    );
    assert!(seen.len() >= 30);
    let odd: Vec<_> = got
        .iter()
        .filter(|e| e.kind != "tx" || e.data["status"] != "applied")
        .collect();
    assert!(odd.is_empty(), "{odd:#?}");

    // Filters: account and type; a malformed cursor is refused with a clear error.
    let who = demo_account(&net.chain_id(), 2).public().to_string();
    let mut sse = Sse::open(&api, &format!("cursor=0:0&account={who}")).await;
    let e = sse.next(Duration::from_secs(30)).await.unwrap();
    assert!(
        e.data["sender"] == who.as_str() || e.data["to"] == who.as_str(),
        "{e:?}"
    );
    let resp = reqwest::get(format!("http://{api}/v1/events?cursor=nope"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "malformed");
}
