//! The OpenAPI 3.1 document served at `/openapi.json`.

use serde_json::{json, Value};

fn error_responses() -> Value {
    json!({
        "400": { "description": "Bad input", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "401": { "description": "A session is required, or the token or session is not valid here", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "403": { "description": "Not an active registered identity (unregistered_sender, unregistered_client)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "429": { "description": "Over the identity's rate (rate_limited)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "404": { "description": "Not found", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "503": { "description": "Unavailable (mempool full, no checkpoint yet)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
    })
}

fn ok(schema: &str) -> Value {
    json!({ "description": "OK", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

fn ok_array(schema: &str) -> Value {
    json!({ "description": "OK", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": format!("#/components/schemas/{schema}") } } } } })
}

fn responses_array(code: &str, schema: &str) -> Value {
    let mut r = error_responses();
    r[code] = ok_array(schema);
    r
}

fn responses(code: &str, schema: &str) -> Value {
    let mut r = error_responses();
    r[code] = ok(schema);
    r
}

fn int() -> Value {
    json!({ "type": "integer", "minimum": 0 })
}

fn currency_id() -> Value {
    json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } })
}

fn height() -> Value {
    json!({ "name": "height", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 0 } })
}

/// The document.
pub fn document() -> Value {
    let hex32 = json!({ "type": "string", "pattern": "^[0-9a-f]{64}$" });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "netchain node API", "version": env!("CARGO_PKG_VERSION") },
        "paths": {
            "/v1/auth/session": { "post": {
                "summary": "Network ID: trade a one-time access token (signed by a registered client for this node) for a session; send it as Authorization: Bearer <session>",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SessionRequest" } } } },
                "responses": responses("200", "Session")
            }},
            "/v1/transactions": { "post": {
                "summary": "Submit one signed transaction",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SubmitRequest" } } } },
                "responses": responses("202", "SubmitResponse")
            }},
            "/v1/transactions/batch": { "post": {
                "summary": "Submit many signed transactions in one request",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/BatchRequest" } } } },
                "responses": responses("200", "BatchResponse")
            }},
            "/v1/transactions/bulk": { "post": {
                "summary": "Submit many signed transactions in one binary request: frames of a 4-byte little-endian length and the transaction's canonical encoding; only refused ones are listed",
                "requestBody": { "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } },
                "responses": responses("200", "BulkResponse")
            }},
            "/v1/transactions/{id}": { "get": {
                "summary": "Status of a transaction: pending, committed at a height, or rejected with a reason",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": hex32 }],
                "responses": responses("200", "TxStatus")
            }},
            "/v1/accounts/{key}": { "get": {
                "summary": "Balance and nonce; with proof=true, a Merkle proof against the latest certified checkpoint",
                "parameters": [
                    { "name": "key", "in": "path", "required": true, "schema": hex32 },
                    { "name": "proof", "in": "query", "required": false, "schema": { "type": "boolean" } }
                ],
                "responses": responses("200", "Account")
            }},
            "/v1/blocks": { "get": {
                "summary": "Committed blocks, newest first, paged with `before`",
                "parameters": [
                    { "name": "before", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 100 } }
                ],
                "responses": responses_array("200", "BlockSummary")
            }},
            "/v1/blocks/{height}": { "get": {
                "summary": "A committed block by height, by id (64 hex) or 'latest'",
                "parameters": [{ "name": "height", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": responses("200", "Block")
            }},
            "/v1/validators": { "get": {
                "summary": "The committee and when this node last heard from each member",
                "responses": { "200": ok_array("Validator") }
            }},
            "/v1/events": { "get": {
                "summary": "Server-sent events (block, tx, resume), each with id = cursor `height:index`; reconnect with ?cursor= or Last-Event-ID to get exactly the events after it",
                "parameters": [
                    { "name": "cursor", "in": "query", "required": false, "schema": { "type": "string", "pattern": "^[0-9]+:[0-9]+$" } },
                    { "name": "account", "in": "query", "required": false, "schema": hex32 },
                    { "name": "type", "in": "query", "required": false, "schema": { "enum": ["block", "tx"] } },
                    { "name": "module", "in": "query", "required": false, "schema": { "type": "string" } }
                ],
                "responses": {
                    "200": { "description": "text/event-stream; each event's data is an Event", "content": { "text/event-stream": { "schema": { "$ref": "#/components/schemas/Event" } } } },
                    "400": { "description": "Bad cursor or filter", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                    "503": { "description": "Too many subscribers", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
                }
            }},
            "/metrics": { "get": {
                "summary": "Prometheus / OpenMetrics text exposition",
                "responses": { "200": { "description": "OK", "content": { "application/openmetrics-text": { "schema": { "type": "string" } } } } }
            }},
            "/v1/status": { "get": { "summary": "Chain status", "responses": { "200": ok("Status") } } },
            "/v1/checkpoints/latest": { "get": {
                "summary": "The newest checkpoint certified by a quorum of validators",
                "responses": responses("200", "CertifiedCheckpoint")
            }},
            "/v1/currencies": { "get": {
                "summary": "Local currencies defined on this chain",
                "responses": responses_array("200", "Currency")
            }},
            "/v1/currencies/{id}": { "get": {
                "summary": "A currency: issuer, bank, rules, totals, expiry queue",
                "parameters": [currency_id()],
                "responses": responses("200", "Currency")
            }},
            "/v1/currencies/{id}/reconciliation": { "get": {
                "summary": "minted = circulating + redeemed + expired_returned, at any executed height",
                "parameters": [currency_id(), height()],
                "responses": responses("200", "Reconciliation")
            }},
            "/v1/currencies/{id}/wallets/{key}": { "get": {
                "summary": "A resident wallet: spendable and expired amounts, lots in spending order",
                "parameters": [currency_id(), { "name": "key", "in": "path", "required": true, "schema": hex32 }, height()],
                "responses": responses("200", "Wallet")
            }},
            "/v1/currencies/{id}/merchants/{key}": { "get": {
                "summary": "A registered merchant: region, category, status, balance and totals",
                "parameters": [currency_id(), { "name": "key", "in": "path", "required": true, "schema": hex32 }, height()],
                "responses": responses("200", "Merchant")
            }},
            "/v1/currencies/{id}/settlements": { "get": {
                "summary": "Settlement records the bank owes merchants, newest first",
                "parameters": [
                    currency_id(),
                    { "name": "before", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 100 } },
                    { "name": "paid", "in": "query", "required": false, "schema": { "type": "boolean" } }
                ],
                "responses": responses_array("200", "Settlement")
            }},
            "/v1/payments/{id}": { "get": {
                "summary": "A payment by id (the hash of its request or authorization)",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": hex32 }, height()],
                "responses": responses("200", "Payment")
            }},
            "/v1/chains": { "get": {
                "summary": "Root chain: registered service chains with their epochs, newest anchor and flag",
                "responses": responses_array("200", "Chain")
            }},
            "/v1/chains/{id}": { "get": {
                "summary": "Root chain: one registered service chain",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": responses("200", "Chain")
            }},
            "/v1/chains/{id}/anchors/{height}": { "get": {
                "summary": "Root chain: a service chain's anchor at a height (or 'latest'); with proof=true, a state proof against the newest certified root checkpoint",
                "parameters": [
                    { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "height", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "proof", "in": "query", "required": false, "schema": { "type": "boolean" } }
                ],
                "responses": responses("200", "AnchorResponse")
            }},
            "/v1/identity/orgs": { "get": {
                "summary": "Network ID: the organizations of the identity registry (404 where the chain keeps none)",
                "responses": responses("200", "Orgs")
            }},
            "/v1/identity/orgs/{org}": { "get": {
                "summary": "Network ID: one organization (admins, identity count)",
                "parameters": [{ "name": "org", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": responses("200", "OrgRecord")
            }},
            "/v1/identity/orgs/{org}/identities/{name}": { "get": {
                "summary": "Network ID: one identity (node, client or device) of an organization",
                "parameters": [
                    { "name": "org", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }
                ],
                "responses": responses("200", "IdentityResponse")
            }},
            "/v1/identity/keys/{key}": { "get": {
                "summary": "Network ID: a key's standing (active, unknown, suspended, revoked, rotated, expired); with proof=true, Merkle proofs of its index entry and record against the newest certified checkpoint",
                "parameters": [
                    { "name": "key", "in": "path", "required": true, "schema": hex32 },
                    { "name": "proof", "in": "query", "required": false, "schema": { "type": "boolean" } }
                ],
                "responses": responses("200", "KeyStanding")
            }},
            "/v1/state/proof": { "get": {
                "summary": "Any state key's value at an executed height with its Merkle proof against that height's state root",
                "parameters": [
                    { "name": "key", "in": "query", "required": true, "schema": { "type": "string" } },
                    height()
                ],
                "responses": responses("200", "StateProof")
            }},
            "/v1/vouchers/{id}": { "get": {
                "summary": "A gift voucher: holder, face value, remaining value, expiry",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": hex32 }, height()],
                "responses": responses("200", "Voucher")
            }}
        },
        "components": { "schemas": {
            "Error": { "type": "object", "required": ["code", "message"], "properties": {
                "code": { "type": "string", "description": "Stable code: malformed, oversize, wrong_chain, bad_signature, duplicate, nonce_too_low, nonce_too_high, nonce_in_use, mempool_full, unregistered_sender, unregistered_client, session_required, unknown_session, session_expired, foreign_token, token_expired, token_replayed, rate_limited, too_many_sessions, not_found, no_checkpoint, too_many_subscribers, internal" },
                "message": { "type": "string" } } },
            "SignedTransaction": { "type": "object", "required": ["tx", "signature"], "properties": {
                "tx": { "type": "object", "required": ["chain_id", "sender", "nonce", "payload"], "properties": {
                    "chain_id": { "type": "string" }, "sender": hex32, "nonce": { "type": "integer" },
                    "payload": { "oneOf": [
                        { "type": "object", "required": ["type", "to", "amount"], "properties": {
                            "type": { "const": "transfer" }, "to": hex32, "amount": { "type": "integer", "minimum": 1 },
                            "memo": { "type": "string", "pattern": "^([0-9a-f]{2})*$", "description": "Free-form bytes (hex); execution ignores them" } } },
                        { "type": "object", "required": ["type", "op"], "description": "Local currency operation; its other fields are those of the op (see docs/LOCAL_CURRENCY.md)", "properties": {
                            "type": { "const": "currency" },
                            "op": { "enum": ["define", "set_rules", "register_merchants", "set_merchant_active", "verify_residents", "charge", "pay", "collect", "refund", "redeem", "confirm_settlement"] } } },
                        { "type": "object", "required": ["type", "op"], "description": "Gift voucher operation", "properties": {
                            "type": { "const": "voucher" },
                            "op": { "enum": ["issue", "transfer", "redeem", "reclaim"] } } },
                        { "type": "object", "required": ["type", "op"], "description": "Root chain registry operation (governance change or anchor)", "properties": {
                            "type": { "const": "registry" },
                            "op": { "enum": ["change", "anchor"] } } },
                        { "type": "object", "required": ["type", "op"], "description": "Identity registry operation (Network ID); its other fields are those of the op (see docs/NETWORK_ID.md)", "properties": {
                            "type": { "const": "identity" },
                            "op": { "enum": ["add_org", "set_admins", "register", "rotate", "set_status"] } } }
                    ] } } },
                "signature": { "type": "string", "pattern": "^[0-9a-f]{128}$" } } },
            "SubmitRequest": { "type": "object", "description": "Exactly one of tx_hex (borsh encoding) and tx", "properties": {
                "tx_hex": { "type": "string" }, "tx": { "$ref": "#/components/schemas/SignedTransaction" } }, "additionalProperties": false },
            "SubmitResponse": { "type": "object", "required": ["tx_id", "status"], "properties": { "tx_id": hex32, "status": { "const": "pending" } } },
            "BatchRequest": { "type": "object", "properties": {
                "txs_hex": { "type": "array", "items": { "type": "string" } },
                "txs": { "type": "array", "items": { "$ref": "#/components/schemas/SignedTransaction" } } }, "additionalProperties": false },
            "BatchResponse": { "type": "object", "required": ["accepted", "rejected", "results"], "properties": {
                "accepted": { "type": "integer" }, "rejected": { "type": "integer" },
                "results": { "type": "array", "items": { "type": "object", "required": ["accepted"], "properties": {
                    "tx_id": { "type": ["string", "null"] }, "accepted": { "type": "boolean" },
                    "code": { "type": ["string", "null"] }, "message": { "type": ["string", "null"] } } } } } },
            "BulkResponse": { "type": "object", "required": ["accepted", "rejected", "refused"], "properties": {
                "accepted": { "type": "integer" }, "rejected": { "type": "integer" },
                "refused": { "type": "array", "items": { "type": "object", "required": ["index", "code", "message"], "properties": {
                    "index": { "type": "integer" }, "code": { "type": "string" }, "message": { "type": "string" } } } } } },
            "TxStatus": { "type": "object", "required": ["tx_id", "status"], "properties": {
                "tx_id": hex32, "status": { "enum": ["pending", "committed", "rejected"] },
                "height": { "type": ["integer", "null"] }, "index": { "type": ["integer", "null"] },
                "code": { "type": ["string", "null"] }, "message": { "type": ["string", "null"] },
                "tx": { "$ref": "#/components/schemas/SignedTransaction" } } },
            "Account": { "type": "object", "required": ["public_key", "balance", "nonce", "height"], "properties": {
                "public_key": hex32, "balance": { "type": "integer" }, "nonce": { "type": "integer" }, "height": { "type": "integer" },
                "proof": { "oneOf": [{ "type": "null" }, { "type": "object", "required": ["height", "state_proof_hex", "checkpoint"], "properties": {
                    "height": { "type": "integer" }, "account_hex": { "type": ["string", "null"] }, "state_proof_hex": { "type": "string" },
                    "checkpoint": { "$ref": "#/components/schemas/CertifiedCheckpoint" } } }] } } },
            "Block": { "type": "object", "required": ["height", "id", "round", "parent_id", "author", "timestamp_ms", "tx_count", "transactions"], "properties": {
                "height": { "type": "integer" }, "id": hex32, "round": { "type": "integer" }, "parent_id": hex32,
                "author": { "type": "integer" }, "timestamp_ms": { "type": "integer" }, "qc_round": { "type": "integer" },
                "qc_signers": { "type": "array", "items": { "type": "integer" } },
                "state_root": { "type": ["string", "null"] }, "tx_count": { "type": "integer" },
                "transactions": { "type": "array", "items": hex32 } } },
            "CertifiedCheckpoint": { "type": "object", "required": ["checkpoint", "signatures"], "properties": {
                "checkpoint": { "type": "object", "required": ["chain_id", "height", "block_id", "state_root"], "properties": {
                    "chain_id": { "type": "string" }, "height": { "type": "integer" }, "block_id": hex32, "state_root": hex32 } },
                "signatures": { "type": "array", "items": { "type": "array", "prefixItems": [{ "type": "integer" }, { "type": "string" }] } } } },
            "BlockSummary": { "type": "object", "required": ["height", "id", "round", "author", "timestamp_ms", "tx_count"], "properties": {
                "height": { "type": "integer" }, "id": hex32, "round": { "type": "integer" }, "author": { "type": "integer" },
                "timestamp_ms": { "type": "integer" }, "tx_count": { "type": "integer" } } },
            "Validator": { "type": "object", "required": ["index", "public_key", "p2p_address", "api_address", "online"], "properties": {
                "index": { "type": "integer" }, "public_key": hex32, "p2p_address": { "type": "string" }, "api_address": { "type": "string" },
                "last_seen_ms_ago": { "type": ["integer", "null"] }, "online": { "type": "boolean" } } },
            "Event": { "type": "object", "required": ["cursor", "type", "height", "id"], "properties": {
                "cursor": { "type": "string" }, "type": { "enum": ["block", "tx"] }, "height": { "type": "integer" }, "id": hex32,
                "tx_count": { "type": "integer" }, "timestamp_ms": { "type": "integer" }, "module": { "enum": ["transfer", "currency", "voucher", "registry", "identity"] },
                "op": { "type": "string" },
                "sender": hex32, "to": hex32, "amount": { "type": "integer" },
                "status": { "enum": ["applied", "rejected", "ordered"], "description": "ordered: an ordering-only chain (genesis ordering_only) orders transactions without executing them" }, "code": { "type": "string" } } },
            "SessionRequest": { "type": "object", "required": ["token"], "properties": {
                "token": { "type": "object", "required": ["chain_id", "client", "node", "nonce", "expires_ms", "signature"], "properties": {
                    "chain_id": { "type": "string" }, "client": hex32, "node": hex32,
                    "nonce": { "type": "string", "pattern": "^[0-9a-f]{32}$" }, "expires_ms": int(),
                    "signature": { "type": "string", "pattern": "^[0-9a-f]{128}$" } }, "additionalProperties": false } }, "additionalProperties": false },
            "Session": { "type": "object", "required": ["session", "client", "expires_ms"], "properties": {
                "session": { "type": "string", "pattern": "^[0-9a-f]{64}$" }, "client": hex32, "expires_ms": int() } },
            "OrgRecord": { "type": "object", "required": ["org", "members", "added_height"], "properties": {
                "org": { "type": "object", "required": ["id", "name", "admins"], "properties": {
                    "id": { "type": "string" }, "name": { "type": "string" }, "admins": { "type": "array", "items": hex32 } } },
                "members": int(), "added_height": int() } },
            "Orgs": { "type": "object", "required": ["height", "organizations"], "properties": {
                "height": int(), "organizations": { "type": "array", "items": { "$ref": "#/components/schemas/OrgRecord" } } } },
            "IdentityRecord": { "type": "object", "required": ["org", "identity", "status", "registered_height", "updated_height", "rotations"], "properties": {
                "org": { "type": "string" },
                "identity": { "type": "object", "required": ["name", "key", "kind"], "properties": {
                    "name": { "type": "string" }, "key": hex32, "kind": { "enum": ["node", "client", "device"] },
                    "role": { "enum": ["validator", "full_node", "relay"] }, "chains": { "type": "array", "items": { "type": "string" } },
                    "roles": { "type": "array", "items": { "type": "string" } }, "expires_ms": { "type": ["integer", "null"] } } },
                "status": { "enum": ["active", "suspended", "revoked"] },
                "registered_height": int(), "updated_height": int(), "rotations": int() } },
            "IdentityResponse": { "type": "object", "required": ["height", "record"], "properties": {
                "height": int(), "record": { "$ref": "#/components/schemas/IdentityRecord" } } },
            "KeyStanding": { "type": "object", "required": ["key", "height", "standing"], "properties": {
                "key": hex32, "height": int(),
                "standing": { "enum": ["active", "unknown", "suspended", "revoked", "rotated", "expired"] },
                "record": { "$ref": "#/components/schemas/IdentityRecord" },
                "proof": { "oneOf": [{ "type": "null" }, { "type": "object", "required": ["checkpoint", "entry_proof_hex", "block_time_ms"], "properties": {
                    "checkpoint": { "$ref": "#/components/schemas/CertifiedCheckpoint" },
                    "entry_hex": { "type": ["string", "null"] }, "entry_proof_hex": { "type": "string" },
                    "record_hex": { "type": ["string", "null"] }, "record_proof_hex": { "type": ["string", "null"] },
                    "block_time_ms": int() } }] } } },
            "Totals": { "type": "object", "required": ["minted_principal", "minted_bonus", "vouchers_issued", "circulating", "redeemed", "expired_returned", "payments", "payment_volume", "refunded", "settlements_paid"], "properties": {
                "minted_principal": int(), "minted_bonus": int(), "vouchers_issued": int(), "circulating": int(), "redeemed": int(),
                "expired_returned": int(), "payments": int(), "payment_volume": int(), "refunded": int(), "settlements_paid": int() } },
            "Rules": { "type": "object", "required": ["regions", "categories", "wallet_balance_max", "monthly_charge_max", "bonus_bps", "require_verified"], "properties": {
                "regions": { "type": "array", "items": { "type": "string" } }, "categories": { "type": "array", "items": { "type": "string" } },
                "wallet_balance_max": int(), "monthly_charge_max": int(), "bonus_bps": int(), "require_verified": { "type": "boolean" } } },
            "Currency": { "type": "object", "required": ["id", "issuer", "bank", "rules", "expiry_secs", "bucket_ms", "created_height", "totals", "settlements", "expiry_queue", "height"], "properties": {
                "id": { "type": "string" }, "issuer": hex32, "bank": hex32, "rules": { "$ref": "#/components/schemas/Rules" },
                "expiry_secs": int(), "bucket_ms": int(), "created_height": int(), "totals": { "$ref": "#/components/schemas/Totals" },
                "settlements": int(), "expiry_queue": int(), "height": int() } },
            "Reconciliation": { "type": "object", "required": ["currency", "height", "minted", "minted_principal", "minted_bonus", "vouchers_issued", "circulating", "redeemed", "expired_returned", "balanced"], "properties": {
                "currency": { "type": "string" }, "height": int(), "minted": int(), "minted_principal": int(), "minted_bonus": int(),
                "vouchers_issued": int(), "circulating": int(), "redeemed": int(), "expired_returned": int(), "balanced": { "type": "boolean" } } },
            "Lot": { "type": "object", "required": ["expires_at_ms", "amount"], "properties": { "expires_at_ms": int(), "amount": int() } },
            "Wallet": { "type": "object", "required": ["currency", "wallet", "spendable", "expired", "verified", "month_charged", "lots", "height"], "properties": {
                "currency": { "type": "string" }, "wallet": hex32, "spendable": int(), "expired": int(), "verified": { "type": "boolean" },
                "month_charged": int(), "lots": { "type": "array", "items": { "$ref": "#/components/schemas/Lot" } }, "height": int() } },
            "Merchant": { "type": "object", "required": ["currency", "merchant", "region", "category", "settlement_account", "active", "balance", "received", "refunded", "redeemed", "height"], "properties": {
                "currency": { "type": "string" }, "merchant": hex32, "region": { "type": "string" }, "category": { "type": "string" },
                "settlement_account": { "type": "string" }, "active": { "type": "boolean" }, "balance": int(), "received": int(),
                "refunded": int(), "redeemed": int(), "height": int() } },
            "Settlement": { "type": "object", "required": ["seq", "currency", "merchant", "settlement_account", "amount", "height", "timestamp_ms", "paid"], "properties": {
                "seq": int(), "currency": { "type": "string" }, "merchant": hex32, "settlement_account": { "type": "string" }, "amount": int(),
                "height": int(), "timestamp_ms": int(), "paid": { "type": "boolean" } } },
            "Payment": { "type": "object", "required": ["id", "currency", "payer", "merchant", "amount", "refunded", "lots", "height", "timestamp_ms"], "properties": {
                "id": hex32, "currency": { "type": "string" }, "payer": hex32, "merchant": hex32, "amount": int(), "refunded": int(),
                "lots": { "type": "array", "items": { "$ref": "#/components/schemas/Lot" } }, "height": int(), "timestamp_ms": int() } },
            "Voucher": { "type": "object", "required": ["id", "currency", "holder", "face_value", "remaining", "expires_at_ms", "issued_height"], "properties": {
                "id": hex32, "currency": { "type": "string" }, "holder": hex32, "face_value": int(), "remaining": int(),
                "expires_at_ms": int(), "issued_height": int() } },
            "AnchorRecord": { "type": "object", "required": ["height", "block_id", "state_root", "epoch", "root_height"], "properties": {
                "height": int(), "block_id": hex32, "state_root": hex32, "epoch": int(), "root_height": int() } },
            "Chain": { "type": "object", "required": ["chain", "epochs", "last_anchor", "anchors", "flagged", "registered_height", "height"], "properties": {
                "chain": { "type": "object", "required": ["chain_id", "purpose", "genesis_block_id", "validators"], "properties": {
                    "chain_id": { "type": "string" }, "purpose": { "type": "string" }, "genesis_block_id": hex32,
                    "validators": { "type": "array" } } },
                "epochs": { "type": "array", "items": { "type": "object", "required": ["epoch", "validators", "since_root_height"] } },
                "last_anchor": { "oneOf": [{ "type": "null" }, { "$ref": "#/components/schemas/AnchorRecord" }] },
                "anchors": int(), "flagged": { "type": "boolean" }, "registered_height": int(), "height": int() } },
            "AnchorResponse": { "type": "object", "required": ["chain_id", "anchor", "proof"], "properties": {
                "chain_id": { "type": "string" }, "anchor": { "$ref": "#/components/schemas/AnchorRecord" },
                "proof": { "oneOf": [{ "type": "null" }, { "type": "object", "required": ["checkpoint", "value_hex", "state_proof_hex"], "properties": {
                    "checkpoint": { "$ref": "#/components/schemas/CertifiedCheckpoint" }, "value_hex": { "type": "string" },
                    "state_proof_hex": { "type": "string" },
                    "record_hex": { "type": ["string", "null"], "description": "The chain's registry record (flag, epochs) at the same checkpoint" },
                    "record_proof_hex": { "type": ["string", "null"] } } }] } } },
            "StateProof": { "type": "object", "required": ["height", "state_root", "key_hex", "value_hex", "state_proof_hex"], "properties": {
                "height": int(), "state_root": hex32, "key_hex": { "type": "string" },
                "value_hex": { "type": ["string", "null"] }, "state_proof_hex": { "type": "string" } } },
            "Status": { "type": "object", "required": ["chain_id", "height", "round", "validators"], "properties": {
                "chain_id": { "type": "string" }, "validator_index": { "type": "integer" }, "height": { "type": "integer" },
                "block_id": hex32, "state_root": hex32, "round": { "type": "integer" },
                "committed_txs_total": { "type": "integer" }, "last_block_time_ms": { "type": "integer" },
                "last_commit_time_ms": { "type": "integer" }, "last_commit_latency_ms": { "type": "integer" },
                "certified_height": { "type": "integer" }, "mempool_size": { "type": "integer" },
                "peers_connected": { "type": "integer" }, "validators": { "type": "array" } } }
        }}
    })
}
