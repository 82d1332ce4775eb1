//! Versioned Merkle state (Jellyfish Merkle Tree over a [`KvBackend`]).
//!
//! Layout: `JmtNodes[version_be ++ borsh(nibble_path)] = borsh(Node)` for internal nodes, and
//! `borsh(Node::Leaf) ++ 0x01 ++ value` for leaves: a leaf is rewritten whenever its key's value
//! changes, so it carries that value, and a key's value at version v is found by walking the
//! tree of version v from its root to the key's leaf (mostly through the node cache). One store
//! item per changed key, not two.
//!
//! Older data folders also have `JmtValues[key_hash ++ (!version)_be] = 0x00 (deleted) |
//! 0x01 ++ value` (inverted versions sort the newest first, so "newest value at or below v" is
//! a one-entry range scan), and leaves without a value: those are still read, and nothing
//! writes them any more.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jmt::proof::SparseMerkleProof;
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, RootHash, SimpleHasher, ValueHash, Version};

use crate::error::hex;
use crate::kv::{Column, KvBackend, WriteBatch};
use crate::{MemoryBackend, StorageError};

/// blake3 as a jmt [`SimpleHasher`].
#[derive(Clone, Debug)]
pub struct Blake3Hasher(blake3::Hasher);

impl SimpleHasher for Blake3Hasher {
    fn new() -> Self {
        Blake3Hasher(blake3::Hasher::new())
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finalize(self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

type Jmt<'a, B> = JellyfishMerkleTree<'a, Reader<'a, B>, Blake3Hasher>;

/// Root hash of the empty state.
pub fn empty_root() -> [u8; 32] {
    Jmt::<MemoryBackend>::EMPTY_ROOT.0
}

fn key_hash(key: &[u8]) -> KeyHash {
    KeyHash::with::<Blake3Hasher>(key)
}

fn node_db_key(nk: &NodeKey) -> Result<Vec<u8>, StorageError> {
    let mut out = nk.version().to_be_bytes().to_vec();
    borsh::to_writer(&mut out, nk.nibble_path())
        .map_err(|e| StorageError::Tree(format!("encode node key: {e}")))?;
    Ok(out)
}

/// Tag before the value a leaf record carries.
const LEAF_VALUE_TAG: u8 = 1;

/// Splits a `JmtNodes` record into its node and, for a leaf, its value (`None`: a leaf written
/// before leaves carried values, whose value is in `JmtValues`).
fn decode_record(key: &[u8], bytes: &[u8]) -> Result<(Node, Option<OwnedValue>), StorageError> {
    use borsh::BorshDeserialize;
    let corrupt = |reason: String| StorageError::corrupt(Column::JmtNodes, key, reason);
    let mut rest = bytes;
    let node = Node::deserialize(&mut rest).map_err(|e| corrupt(e.to_string()))?;
    let value = match (&node, rest.split_first()) {
        (_, None) => None,
        (Node::Leaf(_), Some((&LEAF_VALUE_TAG, value))) => Some(value.to_vec()),
        (Node::Leaf(_), Some(_)) => return Err(corrupt("bad leaf value tag".into())),
        (_, Some(_)) => return Err(corrupt("bytes after a node that carries no value".into())),
    };
    Ok((node, value))
}

/// The `depth`-th nibble of a key hash (the child taken at that depth of the tree).
fn nibble(kh: &KeyHash, depth: usize) -> u8 {
    let byte = kh.0[depth / 2];
    if depth.is_multiple_of(2) {
        byte >> 4
    } else {
        byte & 0x0f
    }
}

/// The leaf a key with this value has.
fn leaf_of(kh: KeyHash, value: &[u8]) -> LeafNode {
    LeafNode::new(kh, ValueHash::with::<Blake3Hasher>(value))
}

/// The key of the root node of `version`.
fn root_key(version: Version) -> NodeKey {
    NodeKey::new(version, std::iter::empty::<u8>().map(Into::into).collect())
}

fn value_db_key(kh: &KeyHash, version: Version) -> Vec<u8> {
    let mut out = kh.0.to_vec();
    out.extend_from_slice(&(!version).to_be_bytes());
    out
}

/// Maps an error coming out of jmt back to the `StorageError` we put in, if any.
fn from_jmt(e: anyhow::Error) -> StorageError {
    match e.downcast::<StorageError>() {
        Ok(s) => s,
        Err(e) => StorageError::Tree(format!("{e:#}")),
    }
}

/// Decoded tree nodes of committed versions, newest writes first to stay: every block rewrites
/// the nodes along its keys' paths, and the next block (and every account read) walks those same
/// paths, so most node reads are answered here instead of by the store.
///
/// Only nodes of versions known to be committed are served (`committed`: the newest version whose
/// root the store holds, as seen by `apply` and `root`). Nodes are written under keys that include
/// their version and never change once that version is committed, so a cached node is never
/// stale. The nodes an `apply` makes enter only when its version is seen committed with the
/// root it computed (staged until then); another tree writing that version over the same
/// store, from other updates, or a batch never written leaves them out.
struct NodeCache {
    inner: Mutex<CacheInner>,
    /// Newest committed version + 1 (0: none known yet).
    committed: AtomicU64,
    capacity: usize,
}

struct CacheInner {
    nodes: HashMap<NodeKey, Node>,
    order: VecDeque<NodeKey>,
    /// The nodes of the newest `apply` with its version and root.
    staged: Option<(Version, [u8; 32], StagedNodes)>,
}

type StagedNodes = Vec<(NodeKey, Node)>;

/// Nodes kept by one state tree's cache (~30 MB at most: leaves are ~100 B, internal nodes up
/// to ~1 kB; a block of 2,000 transfers writes ~20,000 nodes).
const NODE_CACHE_ENTRIES: usize = 65_536;

impl NodeCache {
    fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(CacheInner {
                nodes: HashMap::default(),
                order: VecDeque::new(),
                staged: None,
            }),
            committed: AtomicU64::new(0),
            capacity,
        }
    }

    fn serves(&self, version: Version) -> bool {
        version < self.committed.load(Ordering::Acquire)
    }

    /// `version`'s root, `root`, is in the store: the nodes staged for exactly that enter.
    fn committed(&self, version: Version, root: [u8; 32]) {
        let staged = self
            .inner
            .lock()
            .ok()
            .and_then(|mut inner| match inner.staged.take() {
                Some((v, r, nodes)) if v == version && r == root => Some(nodes),
                other => {
                    inner.staged = other.filter(|(v, _, _)| *v > version);
                    None
                }
            });
        if let Some(nodes) = staged {
            self.insert(nodes);
        }
        self.committed.fetch_max(version + 1, Ordering::AcqRel);
    }

    /// Keeps the nodes `apply` made for `version` (root `root`) until that is seen committed.
    fn stage(&self, version: Version, root: [u8; 32], nodes: StagedNodes) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.staged = Some((version, root, nodes));
        }
    }

    fn get(&self, nk: &NodeKey) -> Option<Node> {
        self.inner.lock().ok()?.nodes.get(nk).cloned()
    }

    fn insert(&self, entries: impl IntoIterator<Item = (NodeKey, Node)>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        for (nk, node) in entries {
            if inner.nodes.insert(nk.clone(), node).is_none() {
                inner.order.push_back(nk);
            }
        }
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.nodes.remove(&old);
            }
        }
    }
}

/// The newest values of recently read or written keys, so that reading an account does not
/// walk the tree to its leaf.
///
/// `complete_through` is a committed version V such that every entry `(since, value)` is the
/// key's value at every version from `since` through V. Writes enter only when their version
/// is seen committed directly after V with the root `apply` computed for them (`apply` stages
/// them with that root; `committed` publishes them); any other committed version (written by
/// another tree over the same store, from other updates, or one this cache skipped) empties it
/// first. Reads add what they read only at V itself. So a hit never differs from the tree's
/// answer when the value was read or written; values damaged on disk later are not noticed by
/// a hit.
struct ValueCache {
    inner: Mutex<ValueInner>,
    capacity: usize,
}

struct ValueInner {
    complete_through: Option<Version>,
    values: HashMap<KeyHash, (Version, Option<OwnedValue>)>,
    /// Keys in insertion order, oldest first evicted.
    order: VecDeque<KeyHash>,
    /// The writes of the newest `apply` with its root, until its version is seen committed.
    staged: Option<(Version, [u8; 32], Writes)>,
}

/// One version's writes (`None`: deleted).
type Writes = Vec<(KeyHash, Option<OwnedValue>)>;

/// Values kept by one state tree's value cache (accounts are ~50 B: ~20 MB at most).
const VALUE_CACHE_ENTRIES: usize = 131_072;

impl ValueCache {
    fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(ValueInner {
                complete_through: None,
                values: HashMap::default(),
                order: VecDeque::new(),
                staged: None,
            }),
            capacity,
        }
    }

    /// The value of `kh` at `version`, when the cache knows it.
    fn get(&self, kh: &KeyHash, version: Version) -> Option<Option<OwnedValue>> {
        let inner = self.inner.lock().ok()?;
        if inner.complete_through.is_none_or(|c| version > c) {
            return None;
        }
        match inner.values.get(kh) {
            Some((since, value)) if *since <= version => Some(value.clone()),
            _ => None,
        }
    }

    /// Records a value read from the tree at `version` (kept only when that is the newest
    /// version the cache is complete through).
    fn read(&self, kh: KeyHash, version: Version, value: &Option<OwnedValue>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.complete_through == Some(version) && !inner.values.contains_key(&kh) {
            inner.values.insert(kh, (version, value.clone()));
            inner.order.push_back(kh);
            self.evict(&mut inner);
        }
    }

    /// Stages the writes of `version`, whose root they make `root` (replacing any earlier
    /// staging).
    fn stage(&self, version: Version, root: [u8; 32], writes: Writes) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.staged = Some((version, root, writes));
        }
    }

    /// `version`'s root, `root`, is in the store.
    fn committed(&self, version: Version, root: [u8; 32]) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.complete_through.is_some_and(|c| version <= c) {
            return;
        }
        let staged = match inner.staged.take() {
            Some((v, r, writes)) if v == version && r == root => Some(writes),
            other => {
                inner.staged = other.filter(|(v, _, _)| *v > version);
                None
            }
        };
        let follows = version == 0 || inner.complete_through == Some(version - 1);
        if !follows || staged.is_none() {
            // Versions this cache did not see written: nothing it holds is known current.
            inner.values.clear();
            inner.order.clear();
        }
        for (kh, value) in staged.into_iter().flatten() {
            if inner.values.insert(kh, (version, value)).is_none() {
                inner.order.push_back(kh);
            }
        }
        inner.complete_through = Some(version);
        self.evict(&mut inner);
    }

    fn evict(&self, inner: &mut ValueInner) {
        while inner.values.len() > self.capacity {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.values.remove(&old);
                }
                None => break,
            }
        }
    }
}

/// jmt's read interface over a backend, through the node cache when there is one.
struct Reader<'a, B> {
    backend: &'a B,
    cache: Option<&'a NodeCache>,
}

/// A node and, when it is a leaf read from the store, the value it carries (`Some(None)`: an
/// older leaf without one; `None`: not read from the store, so not known here).
type Fetched = (Node, Option<Option<OwnedValue>>);

impl<B: KvBackend> Reader<'_, B> {
    /// The node at `nk` and, when it is a leaf read from the store, the value it carries
    /// (`Some(None)`: an old leaf without one). A node served by the cache comes without.
    fn fetch(&self, nk: &NodeKey) -> Result<Option<Fetched>, StorageError> {
        let cache = self.cache.filter(|c| c.serves(nk.version()));
        if let Some(node) = cache.and_then(|c| c.get(nk)) {
            return Ok(Some((node, None)));
        }
        let key = node_db_key(nk)?;
        let Some(bytes) = self.backend.get(Column::JmtNodes, &key)? else {
            return Ok(None);
        };
        let (node, value) = decode_record(&key, &bytes)?;
        if let Some(c) = cache {
            c.insert([(nk.clone(), node.clone())]);
        }
        Ok(Some((node, Some(value))))
    }

    /// The value a leaf carries, read from the store (older leaves: from `JmtValues`).
    fn leaf_value(
        &self,
        nk: &NodeKey,
        leaf: &LeafNode,
        carried: Option<Option<OwnedValue>>,
    ) -> Result<Option<OwnedValue>, StorageError> {
        let kh = leaf.key_hash();
        let carried = match carried {
            Some(carried) => carried,
            None => {
                let key = node_db_key(nk)?;
                let bytes = self
                    .backend
                    .get(Column::JmtNodes, &key)?
                    .ok_or_else(|| StorageError::Tree(format!("leaf {} is gone", hex(&key))))?;
                decode_record(&key, &bytes)?.1
            }
        };
        let value = match carried {
            Some(value) => Some(value),
            None => self.legacy_value(nk.version(), kh)?,
        };
        // The leaf commits to its value's hash: a value that does not match it is damaged.
        match value {
            Some(v) if leaf_of(kh, &v) == *leaf => Ok(Some(v)),
            _ => Err(StorageError::corrupt(
                Column::JmtNodes,
                &node_db_key(nk)?,
                "the leaf's value does not match its hash",
            )),
        }
    }

    /// The newest value at or below `max_version` in `JmtValues` (data written before leaves
    /// carried their values).
    fn legacy_value(
        &self,
        max_version: Version,
        kh: KeyHash,
    ) -> Result<Option<OwnedValue>, StorageError> {
        let start = value_db_key(&kh, max_version);
        let mut end = value_db_key(&kh, 0);
        end.push(0); // just past the oldest possible entry for this key hash
        let rows = self.backend.range(Column::JmtValues, &start, &end, 1)?;
        let Some((k, v)) = rows.into_iter().next() else {
            return Ok(None);
        };
        match v.split_first() {
            Some((0, [])) => Ok(None),
            Some((1, rest)) => Ok(Some(rest.to_vec())),
            _ => Err(StorageError::corrupt(
                Column::JmtValues,
                &k,
                "bad value tag",
            )),
        }
    }

    /// The value of `kh` in the tree of `version`: the walk from that version's root to the
    /// key's leaf, if it has one.
    fn value_at(&self, version: Version, kh: KeyHash) -> Result<Option<OwnedValue>, StorageError> {
        let mut nk = root_key(version);
        // A key hash has 64 nibbles: a leaf is at most that deep.
        for depth in 0..=64 {
            let (node, carried) = self.fetch(&nk)?.ok_or_else(|| {
                if depth == 0 {
                    StorageError::UnknownVersion(version)
                } else {
                    StorageError::Tree(format!(
                        "missing node at version {} depth {depth}",
                        nk.version()
                    ))
                }
            })?;
            match node {
                // Only an empty tree's root is null.
                Node::Null if depth == 0 => return Ok(None),
                Node::Null => {
                    return Err(StorageError::corrupt(
                        Column::JmtNodes,
                        &node_db_key(&nk)?,
                        "a null node below the root",
                    ))
                }
                Node::Leaf(leaf) if leaf.key_hash() == kh => {
                    return self.leaf_value(&nk, &leaf, carried)
                }
                Node::Leaf(_) => return Ok(None),
                Node::Internal(internal) => {
                    if depth == 64 {
                        break;
                    }
                    match internal.get_only_child_without_siblings(&nk, nibble(&kh, depth).into()) {
                        Some(child) => nk = child,
                        None => return Ok(None),
                    }
                }
            }
        }
        Err(StorageError::Tree(format!(
            "no leaf within 64 levels at version {version}"
        )))
    }
}

impl<B: KvBackend> TreeReader for Reader<'_, B> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.fetch(node_key)?.map(|(node, _)| node))
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self.value_at(max_version, key_hash)?)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only used by jmt's state-sync restore, which we do not use.
        anyhow::bail!("get_rightmost_leaf is not supported by netchain storage")
    }
}

/// Versioned authenticated key-value state stored in a [`KvBackend`].
pub struct StateTree<B: KvBackend> {
    backend: Arc<B>,
    cache: NodeCache,
    values: ValueCache,
}

impl<B: KvBackend> StateTree<B> {
    /// A state tree reading nodes from `backend`.
    pub fn new(backend: Arc<B>) -> Self {
        Self {
            backend,
            cache: NodeCache::new(NODE_CACHE_ENTRIES),
            values: ValueCache::new(VALUE_CACHE_ENTRIES),
        }
    }

    /// The backend the tree reads from.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    fn reader(&self) -> Reader<'_, B> {
        Reader {
            backend: &self.backend,
            cache: Some(&self.cache),
        }
    }

    /// A reader of the store alone: for roots, which tell whether a version is committed.
    fn store_reader(&self) -> Reader<'_, B> {
        Reader {
            backend: &self.backend,
            cache: None,
        }
    }

    /// Computes the root of `version` = previous state + `updates` (`None`
    /// deletes; the last update of a key wins) and returns it with the batch
    /// of new tree nodes. Nothing is written: the caller must commit the batch
    /// before the next `apply`. `version` must be 0 for an empty tree and
    /// otherwise exactly one above the latest committed version. An empty
    /// `updates` keeps the previous root.
    pub fn apply(
        &self,
        version: u64,
        updates: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<([u8; 32], WriteBatch), StorageError> {
        self.apply_with(version, updates, Insertion::Batched)
    }

    fn apply_with(
        &self,
        version: u64,
        updates: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        insertion: Insertion,
    ) -> Result<([u8; 32], WriteBatch), StorageError> {
        let invalid = |reason: &str| StorageError::InvalidVersion {
            version,
            reason: reason.to_string(),
        };
        if self.root(version)?.is_some() {
            return Err(invalid("version already committed"));
        }
        if version > 0 && self.root(version - 1)?.is_none() {
            return Err(invalid("previous version has no root"));
        }
        let deduped: BTreeMap<KeyHash, Option<Vec<u8>>> = updates
            .into_iter()
            .map(|(k, v)| (key_hash(&k), v))
            .collect();
        let writes: Writes = deduped.iter().map(|(kh, v)| (*kh, v.clone())).collect();
        let reader = self.reader();
        let jmt = Jmt::new(&reader);
        // jmt's batch insertion walks the tree once for all keys, making and hashing each
        // changed node once; one key at a time re-walks from the root and re-hashes the nodes
        // along the path for every key. It takes no deletions and no empty set: those go one
        // at a time. Both make the same tree (a unit test compares roots and nodes).
        let batched = insertion == Insertion::Batched
            && !deduped.is_empty()
            && deduped.values().all(Option::is_some);
        let (root, update) = if batched {
            let set = deduped
                .into_iter()
                .filter_map(|(kh, v)| Some((kh, v?)))
                .collect();
            let (roots, update) = jmt
                .batch_put_value_sets(vec![set], None, version)
                .map_err(from_jmt)?;
            let root = roots
                .first()
                .copied()
                .ok_or_else(|| StorageError::Tree("batch insertion returned no root".into()))?;
            (root, update)
        } else {
            jmt.put_value_set(deduped, version).map_err(from_jmt)?
        };
        self.values.stage(version, root.0, writes);

        // Each new leaf carries its key's value: the one written now, or (a leaf moved down or
        // up by another key's insertion or deletion) the value it had at the previous version.
        let written: HashMap<KeyHash, &OwnedValue> = update
            .node_batch
            .values()
            .iter()
            .filter_map(|((_, kh), v)| Some((*kh, v.as_ref()?)))
            .collect();
        let mut batch = WriteBatch::new();
        for (nk, node) in update.node_batch.nodes() {
            let mut bytes =
                borsh::to_vec(node).map_err(|e| StorageError::Tree(format!("encode node: {e}")))?;
            if let Node::Leaf(leaf) = node {
                let kh = leaf.key_hash();
                let moved;
                let value = match written.get(&kh) {
                    Some(v) => *v,
                    None => {
                        moved = match version.checked_sub(1) {
                            Some(prev) => self.value_by_hash(kh, prev)?,
                            None => None,
                        }
                        .filter(|v| leaf_of(kh, v) == *leaf)
                        .ok_or_else(|| {
                            StorageError::Tree(format!(
                                "moved leaf of key hash {} has no matching value before version \
                                 {version}",
                                hex(&kh.0)
                            ))
                        })?;
                        &moved
                    }
                };
                bytes.reserve(1 + value.len());
                bytes.push(LEAF_VALUE_TAG);
                bytes.extend_from_slice(value);
            }
            batch.put(Column::JmtNodes, node_db_key(nk)?, bytes);
        }
        // Cached once this version is seen in the store with this root (see `NodeCache`).
        self.cache.stage(
            version,
            root.0,
            update
                .node_batch
                .nodes()
                .iter()
                .map(|(nk, node)| (nk.clone(), node.clone()))
                .collect(),
        );
        tracing::trace!(version, root = %hex(&root.0), nodes = batch.len(), "state applied");
        Ok((root.0, batch))
    }

    /// Root hash at `version`, or `None` if that version was never committed.
    pub fn root(&self, version: u64) -> Result<Option<[u8; 32]>, StorageError> {
        let reader = self.store_reader();
        let root = Jmt::new(&reader)
            .get_root_hash_option(version)
            .map_err(from_jmt)?;
        if let Some(r) = root {
            self.cache.committed(version, r.0);
            self.values.committed(version, r.0);
        }
        Ok(root.map(|r| r.0))
    }

    fn require_root(&self, version: u64) -> Result<(), StorageError> {
        match self.root(version)? {
            Some(_) => Ok(()),
            None => Err(StorageError::UnknownVersion(version)),
        }
    }

    /// Value of `key` as of `version`.
    pub fn get(&self, key: &[u8], version: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let kh = key_hash(key);
        // A hit is at a version the cache saw committed.
        if let Some(value) = self.values.get(&kh, version) {
            return Ok(value);
        }
        self.require_root(version)?;
        self.value_by_hash(kh, version)
    }

    /// Value of the key with hash `kh` as of `version` (which must have a root).
    fn value_by_hash(&self, kh: KeyHash, version: u64) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(value) = self.values.get(&kh, version) {
            return Ok(value);
        }
        let value = self.reader().value_at(version, kh)?;
        self.values.read(kh, version, &value);
        Ok(value)
    }

    /// Value of `key` as of `version` with a proof against that version's root.
    pub fn get_with_proof(
        &self,
        key: &[u8],
        version: u64,
    ) -> Result<(Option<Vec<u8>>, StateProof), StorageError> {
        self.require_root(version)?;
        let reader = self.reader();
        let (value, proof) = Jmt::new(&reader)
            .get_with_proof(key_hash(key), version)
            .map_err(from_jmt)?;
        let bytes =
            borsh::to_vec(&proof).map_err(|e| StorageError::Tree(format!("encode proof: {e}")))?;
        Ok((value, StateProof(bytes)))
    }
}

/// How `apply` puts a version's updates into the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Insertion {
    /// All at once when they are all values (no deletion), else one at a time.
    Batched,
    /// One key at a time (the reference the batched insertion is tested against).
    #[cfg_attr(not(test), allow(dead_code))]
    OneByOne,
}

/// Borsh-encoded jmt `SparseMerkleProof<Blake3Hasher>`; verifiable without storage.
#[derive(Clone, Debug, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct StateProof(pub Vec<u8>);

impl StateProof {
    /// Checks that under `root`, `key` maps to `value` (`None`: key absent).
    pub fn verify(
        &self,
        root: [u8; 32],
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        let proof: SparseMerkleProof<Blake3Hasher> = borsh::from_slice(&self.0)
            .map_err(|e| StorageError::InvalidProof(format!("decode: {e}")))?;
        proof
            .verify(RootHash(root), key_hash(key), value)
            .map_err(|e| StorageError::InvalidProof(format!("{e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Updates = Vec<(Vec<u8>, Option<Vec<u8>>)>;

    /// Two trees fed the same versions, one with batched insertion and one a key at a time.
    struct Both {
        batched: StateTree<MemoryBackend>,
        single: StateTree<MemoryBackend>,
    }

    impl Both {
        fn new() -> Self {
            Self {
                batched: StateTree::new(Arc::new(MemoryBackend::default())),
                single: StateTree::new(Arc::new(MemoryBackend::default())),
            }
        }

        /// Applies `updates` as `version` to both, checks they made the same root and the same
        /// nodes and values, commits both, returns the root.
        fn step(&self, version: u64, updates: Updates) -> [u8; 32] {
            let (root_b, batch_b) = self
                .batched
                .apply_with(version, updates.clone(), Insertion::Batched)
                .unwrap();
            let (root_s, batch_s) = self
                .single
                .apply_with(version, updates, Insertion::OneByOne)
                .unwrap();
            assert_eq!(root_b, root_s, "version {version}");
            assert!(batch_b == batch_s, "version {version}: different nodes");
            self.batched.backend().write(batch_b, false).unwrap();
            self.single.backend().write(batch_s, false).unwrap();
            root_b
        }
    }

    fn puts(keys: impl IntoIterator<Item = u32>, salt: u8) -> Updates {
        keys.into_iter()
            .map(|k| (format!("k{k}").into_bytes(), Some(vec![salt, k as u8])))
            .collect()
    }

    /// Batched insertion makes exactly the tree one-key-at-a-time insertion makes: the same
    /// root and the same nodes and values written, version after version, over new keys,
    /// changed keys, versions with deletions (which go one at a time in both) and a tree that
    /// starts empty; and proofs from the batched tree verify.
    #[test]
    fn batched_insertion_makes_the_same_tree() {
        let mut seed = 0xBA7C_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let both = Both::new();
        let mut contents = BTreeMap::new();
        let mut batched_versions = 0;
        for version in 0..40u64 {
            let n = match version % 5 {
                0 => 1,
                1 => 2 + next() % 10,
                _ => 50 + next() % 400,
            };
            let deletes = version % 7 == 6;
            let updates: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..n)
                .map(|i| {
                    let key = format!("k{}", next() % 3_000).into_bytes();
                    let value = if deletes && i % 3 == 0 {
                        None
                    } else {
                        Some(next().to_le_bytes()[..1 + (next() % 8) as usize].to_vec())
                    };
                    (key, value)
                })
                .collect();
            if updates.iter().all(|(_, v)| v.is_some()) {
                batched_versions += 1;
            }
            for (k, v) in &updates {
                match v {
                    Some(v) => contents.insert(k.clone(), v.clone()),
                    None => contents.remove(k),
                };
            }
            let root_b = both.step(version, updates.clone());
            for (key, _) in updates.iter().rev().take(5) {
                let (got, proof) = both.batched.get_with_proof(key, version).unwrap();
                let last = updates.iter().rev().find(|(k, _)| k == key).unwrap();
                assert_eq!(&got, &last.1, "version {version}");
                proof.verify(root_b, key, got.as_deref()).unwrap();
            }
        }
        assert!(batched_versions >= 30, "{batched_versions}");
        // The same contents put in at once into an empty tree give the same root (the tree's
        // shape depends on its keys only).
        let fresh = Both::new();
        let all: Updates = contents.into_iter().map(|(k, v)| (k, Some(v))).collect();
        assert_eq!(fresh.step(0, all), both.batched.root(39).unwrap().unwrap());
    }

    /// The shapes the random versions may miss: a large first version, a tree emptied by
    /// deletions and filled again at once, an empty version, a single-leaf root updated with
    /// its own key and with keys beside it, the same value written again.
    #[test]
    fn batched_insertion_edge_cases() {
        let both = Both::new();
        both.step(0, puts(0..500, 1));
        both.step(1, puts(0..500, 1)); // the same values again
        both.step(
            2,
            puts(0..500, 2)
                .into_iter()
                .map(|(k, _)| (k, None))
                .collect(),
        );
        assert_eq!(both.batched.root(2).unwrap(), Some(empty_root()));
        both.step(3, puts(0..300, 3));
        both.step(4, Vec::new());
        both.step(5, puts([7], 5));
        let leaf = Both::new();
        leaf.step(0, puts([1], 0));
        leaf.step(1, puts([1], 1)); // the leaf's own key
        leaf.step(2, puts([1, 2, 3], 2)); // its key and others beside it
        leaf.step(3, puts(4..40, 3));
        leaf.step(4, vec![(b"absent".to_vec(), None)]);
        leaf.step(5, puts(0..60, 5));
    }

    /// The root of a fixed history, written down: a change in jmt (pinned in Cargo.toml) or in
    /// how keys and values enter the tree would change every validator's roots at once, and a
    /// network of mixed versions would fork.
    #[test]
    fn a_fixed_history_has_the_root_written_down() {
        let both = Both::new();
        both.step(0, puts(0..200, 0));
        both.step(1, puts((0..200).step_by(3), 1));
        let mut mixed = puts(200..260, 2);
        mixed.extend(puts(0..50, 2).into_iter().map(|(k, _)| (k, None)));
        let root = both.step(2, mixed);
        assert_eq!(
            hex(&root),
            "33c962c1e6c5101b78cb4a4a0601f2313c0009f6985b16ecd35951f3b774327e"
        );
    }

    /// Rewrites a version's batch in the layout of data folders written before leaves carried
    /// their values: leaves without values, and a `JmtValues` row for each key `updates` set
    /// (none for a leaf that only moved).
    fn older_layout(batch: WriteBatch, version: u64, updates: &Updates) -> WriteBatch {
        let set: HashMap<KeyHash, Option<Vec<u8>>> = updates
            .iter()
            .map(|(k, v)| (key_hash(k), v.clone()))
            .collect();
        let mut out = WriteBatch::new();
        for (col, key, value) in batch.into_ops() {
            assert_eq!(col, Column::JmtNodes);
            let bytes = value.unwrap();
            let (node, carried) = decode_record(&key, &bytes).unwrap();
            if let Node::Leaf(_) = node {
                assert!(carried.is_some(), "every new leaf carries its value");
            }
            out.put(col, key, borsh::to_vec(&node).unwrap());
        }
        for (kh, value) in set {
            let row = match value {
                None => vec![0],
                Some(v) => [vec![1], v].concat(),
            };
            out.put(Column::JmtValues, value_db_key(&kh, version), row);
        }
        out
    }

    /// A data folder written in the older layout (values in `JmtValues`) still reads, and new
    /// versions written on top of it (leaves that carry values, and older leaves moved by new
    /// keys, whose values come from `JmtValues`) read as a model says, at every version, from
    /// a tree with empty caches; proofs verify.
    #[test]
    fn older_layout_still_reads_and_grows() {
        let backend = Arc::new(MemoryBackend::default());
        let mut tree = StateTree::new(backend.clone());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut history = Vec::new();
        for version in 0..60u64 {
            let updates: Updates = (0..1 + next() % 40)
                .map(|_| {
                    let key = format!("k{}", next() % 300).into_bytes();
                    let value = (next() % 5 != 0).then(|| next().to_le_bytes().to_vec());
                    (key, value)
                })
                .collect();
            for (k, v) in &updates {
                match v {
                    Some(v) => model.insert(k.clone(), v.clone()),
                    None => model.remove(k),
                };
            }
            // From version 30 on, a tree with empty caches each version, as after a restart
            // on an older folder: the values of moved older leaves come from `JmtValues`.
            if version >= 30 {
                tree = StateTree::new(backend.clone());
            }
            let (root, batch) = tree.apply(version, updates.clone()).unwrap();
            let batch = if version < 30 {
                older_layout(batch, version, &updates)
            } else {
                assert!(
                    batch.iter().all(|(col, _, _)| col == Column::JmtNodes),
                    "no value rows"
                );
                batch
            };
            backend.write(batch, false).unwrap();
            assert_eq!(tree.root(version).unwrap(), Some(root));
            history.push((root, model.clone()));
        }
        let fresh = StateTree::new(backend.clone());
        for (version, (root, snap)) in history.iter().enumerate() {
            for k in 0..300 {
                let key = format!("k{k}").into_bytes();
                let want = snap.get(&key).cloned();
                assert_eq!(
                    fresh.get(&key, version as u64).unwrap(),
                    want,
                    "v{version} k{k}"
                );
                if k % 10 == 0 {
                    let (got, proof) = fresh.get_with_proof(&key, version as u64).unwrap();
                    assert_eq!(got, want);
                    proof.verify(*root, &key, want.as_deref()).unwrap();
                }
            }
        }
    }

    /// A value damaged on disk (the leaf's record intact but its value changed) is an error,
    /// not an answer: the leaf commits to the value's hash.
    #[test]
    fn a_damaged_leaf_value_is_an_error() {
        let backend = Arc::new(MemoryBackend::default());
        let tree = StateTree::new(backend.clone());
        let (_, batch) = tree.apply(0, puts(0..50, 1)).unwrap();
        backend.write(batch, false).unwrap();
        let mut damage = WriteBatch::new();
        for (k, v) in backend
            .range(Column::JmtNodes, &[], &[0xff; 64], usize::MAX)
            .unwrap()
        {
            if let (Node::Leaf(_), Some(_)) = decode_record(&k, &v).unwrap() {
                let mut v = v;
                *v.last_mut().unwrap() ^= 1;
                damage.put(Column::JmtNodes, k, v);
            }
        }
        assert_eq!(damage.len(), 50);
        backend.write(damage, false).unwrap();
        let fresh = StateTree::new(backend.clone());
        for (key, _) in puts(0..50, 1) {
            assert!(matches!(
                fresh.get(&key, 0),
                Err(StorageError::Corrupt { .. })
            ));
        }
    }
}
