//! Versioned Merkle state: a Jellyfish Merkle Tree (jmt's roots, proofs and stored node
//! format, blake3 hashing) over a [`KvBackend`], updated by our own batched walk
//! ([`update`]) and read through our own node types ([`node`]).
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

mod node;
mod update;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jmt::proof::SparseMerkleProof;
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, RootHash, SimpleHasher, Version};

use self::node::{Leaf, Path, TreeNode};
use self::update::{Change, NewNodes};
use crate::error::hex;
use crate::kv::{Column, KvBackend, WriteBatch};
use crate::StorageError;

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
    node::PLACEHOLDER
}

fn key_hash(key: &[u8]) -> KeyHash {
    KeyHash::with::<Blake3Hasher>(key)
}

/// Tag before the value a leaf record carries.
const LEAF_VALUE_TAG: u8 = 1;

/// Splits a `JmtNodes` record into its node and, for a leaf, its value (`None`: a leaf written
/// before leaves carried values, whose value is in `JmtValues`).
fn decode_record(key: &[u8], bytes: &[u8]) -> Result<(TreeNode, Option<OwnedValue>), StorageError> {
    let corrupt = |reason: &str| StorageError::corrupt(Column::JmtNodes, key, reason);
    let (node, rest) = TreeNode::decode(key, bytes)?;
    let value = match (&node, rest.split_first()) {
        (_, None) => None,
        (TreeNode::Leaf(_), Some((&LEAF_VALUE_TAG, value))) => Some(value.to_vec()),
        (TreeNode::Leaf(_), Some(_)) => return Err(corrupt("bad leaf value tag")),
        (_, Some(_)) => return Err(corrupt("bytes after a node that carries no value")),
    };
    Ok((node, value))
}

/// The path of a jmt node key (for jmt's proof reads).
fn path_of(nk: &NodeKey) -> Result<Path, StorageError> {
    let np = nk.nibble_path();
    let mut path = Path::ROOT;
    for i in 0..np.num_nibbles() {
        if i >= 64 {
            return Err(StorageError::Tree("a node path longer than a key".into()));
        }
        path = path.child(u8::from(np.get_nibble(i)));
    }
    Ok(path)
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

/// A node's place in the store: the version it was written at and its path.
type NodeAt = (Version, Path);

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
    nodes: HashMap<NodeAt, Arc<TreeNode>>,
    order: VecDeque<NodeAt>,
    /// The nodes of the newest `apply` with its version and root.
    staged: Option<(Version, [u8; 32], NewNodes)>,
    /// A version applied more than once: other updates can reach the same root with other
    /// nodes (a key rewritten with its own value), so none of that version's are cached.
    applied_again: Option<Version>,
}

/// Nodes kept by one state tree's cache (~70 MB at most: internal nodes are ~1 kB in memory,
/// leaves ~100 B; a block of 2,000 transfers writes ~8,000 nodes).
const NODE_CACHE_ENTRIES: usize = 65_536;

impl NodeCache {
    fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(CacheInner {
                nodes: HashMap::default(),
                order: VecDeque::new(),
                staged: None,
                applied_again: None,
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
            self.insert(
                nodes
                    .into_iter()
                    .map(|(path, node)| ((version, path), node)),
            );
        }
        self.committed.fetch_max(version + 1, Ordering::AcqRel);
    }

    /// Keeps the nodes `apply` made for `version` (root `root`) until that is seen committed.
    fn stage(&self, version: Version, root: [u8; 32], nodes: NewNodes) {
        if let Ok(mut inner) = self.inner.lock() {
            let again = inner.applied_again == Some(version)
                || inner.staged.as_ref().is_some_and(|(v, _, _)| *v == version);
            if again {
                inner.staged = None;
                inner.applied_again = Some(version);
            } else {
                inner.staged = Some((version, root, nodes));
            }
        }
    }

    fn get(&self, at: &NodeAt) -> Option<Arc<TreeNode>> {
        self.inner.lock().ok()?.nodes.get(at).cloned()
    }

    fn insert(&self, entries: impl IntoIterator<Item = (NodeAt, Arc<TreeNode>)>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        for (at, node) in entries {
            if inner.nodes.insert(at, node).is_none() {
                inner.order.push_back(at);
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

/// Reads nodes and values from a backend, through the node cache when there is one.
struct Reader<'a, B> {
    backend: &'a B,
    cache: Option<&'a NodeCache>,
}

/// A node and, when it is a leaf read from the store, the value it carries (`Some(None)`: an
/// older leaf without one; `None`: not read from the store, so not known here).
type Fetched = (Arc<TreeNode>, Option<Option<OwnedValue>>);

impl<B: KvBackend> Reader<'_, B> {
    /// The node written at `version` under `path` and, when it is a leaf read from the store,
    /// the value it carries (`Some(None)`: an old leaf without one). A node served by the cache
    /// comes without.
    fn fetch(&self, version: Version, path: &Path) -> Result<Option<Fetched>, StorageError> {
        let cache = self.cache.filter(|c| c.serves(version));
        if let Some(node) = cache.and_then(|c| c.get(&(version, *path))) {
            return Ok(Some((node, None)));
        }
        let key = path.db_key(version);
        let Some(bytes) = self.backend.get(Column::JmtNodes, &key)? else {
            return Ok(None);
        };
        let (node, value) = decode_record(&key, &bytes)?;
        let node = Arc::new(node);
        if let Some(c) = cache {
            c.insert([((version, *path), node.clone())]);
        }
        Ok(Some((node, Some(value))))
    }

    /// Like `fetch`, for a node its parent names (or a version's root): missing is an error.
    fn fetch_named(&self, version: Version, path: &Path) -> Result<Fetched, StorageError> {
        match self.fetch(version, path)? {
            Some(fetched) => Ok(fetched),
            None if path.depth() == 0 => Err(StorageError::UnknownVersion(version)),
            None => Err(StorageError::Tree(format!(
                "missing node at version {version} depth {}",
                path.depth()
            ))),
        }
    }

    /// The value a leaf carries, read from the store (older leaves: from `JmtValues`).
    fn leaf_value(
        &self,
        version: Version,
        path: &Path,
        leaf: &Leaf,
        carried: Option<Option<OwnedValue>>,
    ) -> Result<Option<OwnedValue>, StorageError> {
        let key = path.db_key(version);
        let carried = match carried {
            Some(carried) => carried,
            None => {
                let bytes = self
                    .backend
                    .get(Column::JmtNodes, &key)?
                    .ok_or_else(|| StorageError::Tree(format!("leaf {} is gone", hex(&key))))?;
                decode_record(&key, &bytes)?.1
            }
        };
        let value = match carried {
            Some(value) => Some(value),
            None => self.legacy_value(version, KeyHash(leaf.key))?,
        };
        // The leaf commits to its value's hash: a value that does not match it is damaged.
        match value {
            Some(v) if Leaf::of(leaf.key, &v) == *leaf => Ok(Some(v)),
            _ => Err(StorageError::corrupt(
                Column::JmtNodes,
                &key,
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
        let mut at = (version, Path::ROOT);
        // A key hash has 64 nibbles: a leaf is at most that deep.
        loop {
            let (v, path) = at;
            let (node, carried) = self.fetch_named(v, &path)?;

            match &*node {
                // Only an empty tree's root is null.
                TreeNode::Null if path.depth() == 0 => return Ok(None),
                TreeNode::Null => {
                    return Err(StorageError::corrupt(
                        Column::JmtNodes,
                        &path.db_key(v),
                        "a null node below the root",
                    ))
                }
                TreeNode::Leaf(leaf) if leaf.key == kh.0 => {
                    return self.leaf_value(v, &path, leaf, carried)
                }
                TreeNode::Leaf(_) => return Ok(None),
                TreeNode::Internal(_) if path.depth() == 64 => {
                    return Err(StorageError::Tree(format!(
                        "no leaf within 64 levels at version {version}"
                    )))
                }
                TreeNode::Internal(internal) => {
                    let n = node::nibble(&kh.0, path.depth());
                    match internal.children[usize::from(n)] {
                        Some(c) => at = (c.version, path.child(n)),
                        None => return Ok(None),
                    }
                }
            }
        }
    }
}

impl<B: KvBackend> TreeReader for Reader<'_, B> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        use borsh::BorshDeserialize;
        let path = path_of(node_key)?;
        let Some((node, _)) = self.fetch(node_key.version(), &path)? else {
            return Ok(None);
        };
        if matches!(*node, TreeNode::Null) && path.depth() > 0 {
            // jmt's proof code does not expect one there (it would panic).
            Err(StorageError::corrupt(
                Column::JmtNodes,
                &path.db_key(node_key.version()),
                "a null node below the root",
            ))?;
        }
        // jmt reads its own node type: the same bytes decode to it.
        let mut bytes = Vec::new();
        node.encode(&mut bytes);
        let node = Node::deserialize(&mut bytes.as_slice()).map_err(|e| {
            StorageError::corrupt(
                Column::JmtNodes,
                &path.db_key(node_key.version()),
                e.to_string(),
            )
        })?;
        Ok(Some(node))
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

/// What an update reads: the previous versions' nodes through the node cache, and which keys
/// the value cache knows are present.
struct UpdateSource<'a, B: KvBackend> {
    tree: &'a StateTree<B>,
    reader: Reader<'a, B>,
    prev: Option<Version>,
}

impl<B: KvBackend> update::Source for UpdateSource<'_, B> {
    fn node(&self, version: u64, path: &Path) -> Result<Arc<TreeNode>, StorageError> {
        Ok(self.reader.fetch_named(version, path)?.0)
    }

    fn known_leaf(&self, key: &[u8; 32]) -> Option<Leaf> {
        let value = self.tree.values.get(&KeyHash(*key), self.prev?)??;
        Some(Leaf::of(*key, &value))
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
        let changes: Vec<Change> = deduped
            .iter()
            .map(|(kh, v)| Change {
                key: kh.0,
                leaf: v.as_ref().map(|v| Leaf::of(kh.0, v)),
            })
            .collect();
        let prev = version.checked_sub(1);
        let source = UpdateSource {
            tree: self,
            reader: self.reader(),
            prev,
        };
        let (root, nodes) = update::apply(&source, prev, version, &changes)?;
        drop(changes);

        // Each new leaf carries its key's value: the one written now, or (a leaf moved down or
        // up by another key's insertion or deletion) the value it had at the previous version.
        let mut batch = WriteBatch::new();
        for (path, node) in &nodes {
            let mut bytes = Vec::with_capacity(80);
            node.encode(&mut bytes);
            if let TreeNode::Leaf(leaf) = &**node {
                let kh = KeyHash(leaf.key);
                let moved;
                let value = match deduped.get(&kh) {
                    Some(Some(v)) => v,
                    _ => {
                        moved = match prev {
                            Some(prev) => self.value_by_hash(kh, prev)?,
                            None => None,
                        }
                        .filter(|v| Leaf::of(kh.0, v) == *leaf)
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
            batch.put(Column::JmtNodes, path.db_key(version), bytes);
        }
        self.values
            .stage(version, root, deduped.into_iter().collect());
        // Cached once this version is seen in the store with this root (see `NodeCache`).
        self.cache.stage(version, root, nodes);
        tracing::trace!(version, root = %hex(&root), nodes = batch.len(), "state applied");
        Ok((root, batch))
    }

    /// Root hash at `version`, or `None` if that version was never committed.
    pub fn root(&self, version: u64) -> Result<Option<[u8; 32]>, StorageError> {
        let key = Path::ROOT.db_key(version);
        let Some(bytes) = self.backend.get(Column::JmtNodes, &key)? else {
            return Ok(None);
        };
        let root = decode_record(&key, &bytes)?.0.hash();
        self.cache.committed(version, root);
        self.values.committed(version, root);
        Ok(Some(root))
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
    use crate::MemoryBackend;

    type Updates = Vec<(Vec<u8>, Option<Vec<u8>>)>;

    /// jmt's own update of `tree` (the reference ours is tested against): its batch insertion
    /// when `updates` has no deletion, else one key at a time; the records written as ours
    /// writes them (leaves with their values).
    fn jmt_apply(
        tree: &StateTree<MemoryBackend>,
        version: u64,
        updates: Updates,
    ) -> ([u8; 32], WriteBatch, bool) {
        let deduped: BTreeMap<KeyHash, Option<Vec<u8>>> = updates
            .into_iter()
            .map(|(k, v)| (key_hash(&k), v))
            .collect();
        let reader = Reader {
            backend: &**tree.backend(),
            cache: None,
        };
        let jmt = Jmt::new(&reader);
        let batched = !deduped.is_empty() && deduped.values().all(Option::is_some);
        let (root, update) = if batched {
            let set = deduped
                .iter()
                .map(|(kh, v)| (*kh, v.clone().unwrap()))
                .collect();
            let (roots, update) = jmt.batch_put_value_sets(vec![set], None, version).unwrap();
            (roots[0], update)
        } else {
            jmt.put_value_set(deduped.clone(), version).unwrap()
        };
        let mut batch = WriteBatch::new();
        for (nk, node) in update.node_batch.nodes() {
            let mut bytes = borsh::to_vec(node).unwrap();
            if let Node::Leaf(leaf) = node {
                let kh = leaf.key_hash();
                let value = match deduped.get(&kh) {
                    Some(Some(v)) => v.clone(),
                    _ => tree.value_by_hash(kh, version - 1).unwrap().unwrap(),
                };
                bytes.push(LEAF_VALUE_TAG);
                bytes.extend_from_slice(&value);
            }
            batch.put(
                Column::JmtNodes,
                path_of(nk).unwrap().db_key(version),
                bytes,
            );
        }
        (root.0, batch, batched)
    }

    /// Two trees fed the same versions, one updated by ours and one by jmt.
    struct Both {
        ours: StateTree<MemoryBackend>,
        jmt: StateTree<MemoryBackend>,
    }

    impl Both {
        fn new() -> Self {
            Self {
                ours: StateTree::new(Arc::new(MemoryBackend::default())),
                jmt: StateTree::new(Arc::new(MemoryBackend::default())),
            }
        }

        /// Applies `updates` as `version` to both, checks they made the same root (and, for
        /// versions without deletions, the same records), commits, returns the root.
        fn step(&self, version: u64, updates: Updates) -> [u8; 32] {
            let (root_o, batch_o) = self.ours.apply(version, updates.clone()).unwrap();
            let (root_j, batch_j, batched) = jmt_apply(&self.jmt, version, updates);
            assert_eq!(hex(&root_o), hex(&root_j), "version {version}");
            if batched {
                assert!(batch_o == batch_j, "version {version}: different records");
                self.jmt.backend().write(batch_j, false).unwrap();
            } else {
                // With deletions jmt goes a key at a time, and a leaf pulled up by one deletion
                // and pushed back down by an insertion beside it is rewritten there, where ours
                // keeps it: the same tree, other versions in a few entries. The reference takes
                // our records so the next version starts from the same store.
                self.jmt.backend().write(batch_o.clone(), false).unwrap();
            }
            self.ours.backend().write(batch_o, false).unwrap();
            assert_eq!(self.ours.root(version).unwrap(), Some(root_o));
            assert_eq!(self.jmt.root(version).unwrap(), Some(root_o));
            root_o
        }
    }

    fn puts(keys: impl IntoIterator<Item = u32>, salt: u8) -> Updates {
        keys.into_iter()
            .map(|k| (format!("k{k}").into_bytes(), Some(vec![salt, k as u8])))
            .collect()
    }

    /// Our update makes jmt's tree: the same root version after version, over new keys,
    /// changed keys, deleted keys (present and absent) and a tree that starts empty, and
    /// byte-for-byte the records jmt's batch insertion writes for versions without deletions;
    /// every key reads as a model says at every tenth version from a tree with empty caches,
    /// and proofs verify.
    #[test]
    fn our_update_makes_jmts_tree() {
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
        let mut snapshots = Vec::new();
        for version in 0..80u64 {
            let n = match version % 5 {
                0 => 1,
                1 => 2 + next() % 10,
                _ => 50 + next() % 400,
            };
            let deletes = version % 3 == 2;
            let updates: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..n)
                .map(|i| {
                    let key = format!("k{}", next() % 3_000).into_bytes();
                    let value = if deletes && i % 2 == 0 {
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
                let (got, proof) = both.ours.get_with_proof(key, version).unwrap();
                let last = updates.iter().rev().find(|(k, _)| k == key).unwrap();
                assert_eq!(&got, &last.1, "version {version}");
                proof.verify(root_b, key, got.as_deref()).unwrap();
            }
            if version % 10 == 9 {
                snapshots.push((version, root_b, contents.clone()));
            }
        }
        assert!(batched_versions >= 45, "{batched_versions}");
        let reader = StateTree::new(both.ours.backend().clone());
        for (version, root, snapshot) in &snapshots {
            for k in 0..3_000 {
                let key = format!("k{k}").into_bytes();
                let want = snapshot.get(&key);
                assert_eq!(
                    reader.get(&key, *version).unwrap().as_ref(),
                    want,
                    "v{version} k{k}"
                );
                if k % 100 == 0 {
                    let (got, proof) = reader.get_with_proof(&key, *version).unwrap();
                    assert_eq!(got.as_ref(), want);
                    proof.verify(*root, &key, want.map(Vec::as_slice)).unwrap();
                }
            }
        }
        // The same contents put in at once into an empty tree give the same root (the tree's
        // shape depends on its keys only).
        let fresh = Both::new();
        let all: Updates = contents.into_iter().map(|(k, v)| (k, Some(v))).collect();
        assert_eq!(fresh.step(0, all), both.ours.root(79).unwrap().unwrap());
    }

    /// The shapes the random versions may miss: a large first version, a tree emptied by
    /// deletions and filled again at once, an empty version, a single-leaf root updated with
    /// its own key and with keys beside it, the same value written again.
    #[test]
    fn update_edge_cases() {
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
        assert_eq!(both.ours.root(2).unwrap(), Some(empty_root()));
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
            if let TreeNode::Leaf(_) = node {
                assert!(carried.is_some(), "every new leaf carries its value");
            }
            let mut bare = Vec::new();
            node.encode(&mut bare);
            out.put(col, key, bare);
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

    /// A version applied twice, from different updates that reach the same root (keys
    /// rewritten with their own values), and then written from the first: the second's nodes,
    /// which name records never written, must not enter the node cache.
    #[test]
    fn a_version_applied_twice_caches_neither() {
        let backend = Arc::new(MemoryBackend::default());
        let tree = StateTree::new(backend.clone());
        let (root0, batch) = tree.apply(0, puts(0..200, 1)).unwrap();
        backend.write(batch, false).unwrap();
        let (root_a, batch_a) = tree.apply(1, puts(0..5, 1)).unwrap();
        let (root_b, _) = tree.apply(1, puts(100..105, 1)).unwrap();
        assert_eq!((root_a, root_b), (root0, root0));
        backend.write(batch_a, false).unwrap();
        assert_eq!(tree.root(1).unwrap(), Some(root0));
        for (key, value) in puts(0..200, 1) {
            let (got, proof) = tree.get_with_proof(&key, 1).unwrap();
            assert_eq!(got, value);
            proof.verify(root0, &key, value.as_deref()).unwrap();
        }
        let (_, batch) = tree.apply(2, puts(95..110, 2)).unwrap();
        backend.write(batch, false).unwrap();
        let fresh = StateTree::new(backend.clone());
        for (key, value) in puts(0..95, 1).into_iter().chain(puts(95..110, 2)) {
            assert_eq!(fresh.get(&key, 2).unwrap(), value);
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
            if let (TreeNode::Leaf(_), Some(_)) = decode_record(&k, &v).unwrap() {
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
