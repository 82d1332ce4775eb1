//! One version's update of the state tree, all keys at once: a single walk down the previous
//! version's tree over the sorted updates, making each changed node once, bottom-up.
//!
//! The tree's shape depends on its keys only: a node at path `p` is internal when two or more
//! keys start with `p`, and a key's leaf sits at the shortest prefix no other key shares. So
//! the new version is that shape for the new keys, and a node is rewritten (at the new
//! version) when it lies on the path of a key whose value changed or was deleted, or when it
//! is a leaf that moved (pushed down by a new key beside it, or pulled up when its siblings
//! were deleted). Every other node keeps its version, so the new root shares them. The roots
//! are jmt's; for versions without deletions the nodes are byte for byte what jmt's batch
//! insertion writes (a unit test compares them).

use std::sync::Arc;

use super::node::{nibble, ChildRef, Internal, Leaf, Path, TreeNode};
use crate::StorageError;

/// One key's change: its new value's leaf, or `None` to delete it.
pub(super) struct Change {
    pub(super) key: [u8; 32],
    pub(super) leaf: Option<Leaf>,
}

/// What the update reads from the previous versions.
pub(super) trait Source {
    /// The node written at `version` under `path` (a missing node is an error).
    fn node(&self, version: u64, path: &Path) -> Result<Arc<TreeNode>, StorageError>;
    /// The leaf `key` is known to have in the tree of the previous version (`None`: not
    /// known, or absent).
    fn known_leaf(&self, key: &[u8; 32]) -> Option<Leaf>;
}

/// The nodes a version writes, each under its path (all at that version).
pub(super) type NewNodes = Vec<(Path, Arc<TreeNode>)>;

/// A subtree after the update, before its parent places it.
enum Sub {
    /// No key left below.
    Empty,
    /// Nothing changed below: the parent keeps its entry.
    Kept(ChildRef),
    /// A single key left below, whose leaf the parent places (it is written where it lands).
    Leaf(Leaf),
    /// A new internal node, already written.
    Internal(ChildRef),
}

struct Update<'a, S> {
    source: &'a S,
    version: u64,
    out: NewNodes,
}

/// Applies `changes` (sorted by key, each key once) to the tree of `prev` (`None`: the empty
/// tree before version 0) as `version`; returns the new root hash and the new nodes.
pub(super) fn apply<S: Source>(
    source: &S,
    prev: Option<u64>,
    version: u64,
    changes: &[Change],
) -> Result<([u8; 32], NewNodes), StorageError> {
    let mut up = Update {
        source,
        version,
        out: Vec::with_capacity(changes.len() * 3),
    };
    let old_root = match prev {
        Some(prev) => Some((prev, source.node(prev, &Path::ROOT)?)),
        None => None,
    };
    let sub = match &old_root {
        None => up.build(Path::ROOT, &leaves_of(changes)),
        Some((_, root)) => match &**root {
            TreeNode::Null => match leaves_of(changes) {
                leaves if leaves.is_empty() => Sub::Kept(unused_ref()),
                leaves => up.build(Path::ROOT, &leaves),
            },
            TreeNode::Leaf(leaf) => up.at_leaf(Path::ROOT, leaf, unused_ref(), changes),
            TreeNode::Internal(internal) => {
                up.at_internal(Path::ROOT, internal, unused_ref(), changes)?
            }
        },
    };
    let root = match sub {
        Sub::Empty => {
            up.out.push((Path::ROOT, Arc::new(TreeNode::Null)));
            super::node::PLACEHOLDER
        }
        Sub::Kept(_) => {
            // Nothing changed: the new version's root is a copy of the previous one.
            let Some((_, root)) = old_root else {
                return Err(StorageError::Tree(
                    "an unchanged tree without a root".into(),
                ));
            };
            let hash = root.hash();
            up.out.push((Path::ROOT, root));
            hash
        }
        Sub::Leaf(leaf) => {
            up.out.push((Path::ROOT, Arc::new(TreeNode::Leaf(leaf))));
            leaf.hash()
        }
        Sub::Internal(c) => c.hash,
    };
    Ok((root, up.out))
}

/// The root's entry stands for nothing: the root has no parent to keep one.
fn unused_ref() -> ChildRef {
    ChildRef {
        hash: [0; 32],
        version: 0,
        leaves: None,
    }
}

/// The leaves the values among `changes` make (deletions of absent keys change nothing).
fn leaves_of(changes: &[Change]) -> Vec<Leaf> {
    changes.iter().filter_map(|c| c.leaf).collect()
}

/// Splits `items` (sorted by key) into runs with the same nibble at `depth`.
fn runs<T>(items: &[T], depth: usize, key: impl Fn(&T) -> &[u8; 32]) -> Vec<(u8, &[T])> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let n = nibble(key(&items[start]), depth);
        let mut end = start + 1;
        while end < items.len() && nibble(key(&items[end]), depth) == n {
            end += 1;
        }
        out.push((n, &items[start..end]));
        start = end;
    }
    out
}

impl<S: Source> Update<'_, S> {
    /// The subtree at `path` for `leaves` alone (sorted by key, all starting with `path`).
    fn build(&mut self, path: Path, leaves: &[Leaf]) -> Sub {
        match leaves {
            [] => Sub::Empty,
            [leaf] => Sub::Leaf(*leaf),
            _ => {
                let mut children = [None; 16];
                for (n, run) in runs(leaves, path.depth(), |l| &l.key) {
                    let child = path.child(n);
                    let sub = self.build(child, run);
                    children[usize::from(n)] = self.place(child, sub);
                }
                self.write_internal(path, Internal { children })
            }
        }
    }

    /// Writes a new internal node at `path`.
    fn write_internal(&mut self, path: Path, internal: Internal) -> Sub {
        let entry = internal.as_child(self.version);
        self.out
            .push((path, Arc::new(TreeNode::Internal(Box::new(internal)))));
        Sub::Internal(entry)
    }

    /// The parent's entry for `sub` at `path`, writing a leaf that lands there.
    fn place(&mut self, path: Path, sub: Sub) -> Option<ChildRef> {
        match sub {
            Sub::Empty => None,
            Sub::Kept(c) | Sub::Internal(c) => Some(c),
            Sub::Leaf(leaf) => {
                let entry = ChildRef {
                    hash: leaf.hash(),
                    version: self.version,
                    leaves: None,
                };
                self.out.push((path, Arc::new(TreeNode::Leaf(leaf))));
                Some(entry)
            }
        }
    }

    /// The subtree at `path`, whose previous node the parent's entry `entry` names, after
    /// `changes` (all starting with `path`, at least one).
    fn at_child(
        &mut self,
        path: Path,
        entry: ChildRef,
        changes: &[Change],
    ) -> Result<Sub, StorageError> {
        // A key known to be in the tree whose path ends at a leaf with the hash the key's known
        // leaf has: that leaf is the key's own, so its new value replaces it without reading it.
        if let ([change], true) = (changes, entry.is_leaf()) {
            if let Some(leaf) = change.leaf {
                let known = self.source.known_leaf(&change.key);
                if known.is_some_and(|k| k.hash() == entry.hash) {
                    return Ok(Sub::Leaf(leaf));
                }
            }
        }
        let node = self.source.node(entry.version, &path)?;
        match &*node {
            TreeNode::Leaf(leaf) if entry.is_leaf() && path.is_prefix_of(&leaf.key) => {
                Ok(self.at_leaf(path, leaf, entry, changes))
            }
            // A key hash has 64 nibbles: no internal node is that deep.
            TreeNode::Internal(internal) if !entry.is_leaf() && path.depth() < 64 => {
                self.at_internal(path, internal, entry, changes)
            }
            _ => Err(StorageError::Tree(format!(
                "the node at version {} depth {} is not what its parent says",
                entry.version,
                path.depth()
            ))),
        }
    }

    /// The subtree at `path`, previously the single leaf `old`, after `changes`.
    fn at_leaf(&mut self, path: Path, old: &Leaf, entry: ChildRef, changes: &[Change]) -> Sub {
        let mut leaves = Vec::with_capacity(changes.len() + 1);
        let mut changed = false;
        let mut old_stays = true;
        for c in changes {
            if c.key == old.key {
                old_stays = false;
                changed = true;
            } else if c.leaf.is_some() {
                changed = true;
            }
            if old_stays && c.key > old.key && leaves.last().is_none_or(|l: &Leaf| l.key < old.key)
            {
                leaves.push(*old);
            }
            leaves.extend(c.leaf);
        }
        if !changed {
            return Sub::Kept(entry);
        }
        if old_stays && leaves.last().is_none_or(|l| l.key < old.key) {
            leaves.push(*old);
        }
        self.build(path, &leaves)
    }

    /// The subtree at `path`, previously the internal node `old`, after `changes`.
    fn at_internal(
        &mut self,
        path: Path,
        old: &Internal,
        entry: ChildRef,
        changes: &[Change],
    ) -> Result<Sub, StorageError> {
        let mut subs: [Option<Sub>; 16] = Default::default();
        let mut changed = false;
        for (n, run) in runs(changes, path.depth(), |c| &c.key) {
            let child = path.child(n);
            let sub = match old.children[usize::from(n)] {
                Some(c) => self.at_child(child, c, run)?,
                None => self.build(child, &leaves_of(run)),
            };
            changed |= !matches!(sub, Sub::Kept(_) | Sub::Empty)
                || (matches!(sub, Sub::Empty) && old.children[usize::from(n)].is_some());
            subs[usize::from(n)] = Some(sub);
        }
        if !changed {
            return Ok(Sub::Kept(entry));
        }
        // What is left below, slot by slot: a new subtree, or the old entry.
        let mut left = 0;
        let mut lone = None;
        for (i, sub) in subs.iter().enumerate() {
            let leaf_here = match sub {
                Some(Sub::Empty) => continue,
                None if old.children[i].is_none() => continue,
                Some(Sub::Leaf(_)) => true,
                Some(Sub::Kept(c) | Sub::Internal(c)) => c.is_leaf(),
                None => old.children[i].is_some_and(|c| c.is_leaf()),
            };
            left += 1;
            lone = leaf_here.then_some(i);
        }
        if left == 0 {
            return Ok(Sub::Empty);
        }
        if let (1, Some(i)) = (left, lone) {
            // A lone leaf moves up to where this node was.
            return match subs[i].take() {
                Some(Sub::Leaf(leaf)) => Ok(Sub::Leaf(leaf)),
                _ => {
                    let c = old.children[i]
                        .ok_or_else(|| StorageError::Tree("a lone leaf without an entry".into()))?;
                    let child = path.child(i as u8);
                    match &*self.source.node(c.version, &child)? {
                        TreeNode::Leaf(leaf) if child.is_prefix_of(&leaf.key) => {
                            Ok(Sub::Leaf(*leaf))
                        }
                        _ => Err(StorageError::Tree(format!(
                            "the node at version {} depth {} is not the leaf its parent says",
                            c.version,
                            child.depth()
                        ))),
                    }
                }
            };
        }
        let mut children = old.children;
        for (i, sub) in subs.into_iter().enumerate() {
            if let Some(sub) = sub {
                children[i] = self.place(path.child(i as u8), sub);
            }
        }
        Ok(self.write_internal(path, Internal { children }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::super::node::{hash_pair, PLACEHOLDER};
    use super::*;

    /// Nodes in memory, and the leaves of the newest version (what a value cache would know).
    #[derive(Default)]
    struct Memory {
        nodes: HashMap<(u64, Path), Arc<TreeNode>>,
        known: HashMap<[u8; 32], Leaf>,
    }

    impl Source for Memory {
        fn node(&self, version: u64, path: &Path) -> Result<Arc<TreeNode>, StorageError> {
            self.nodes
                .get(&(version, *path))
                .cloned()
                .ok_or_else(|| StorageError::Tree(format!("no node at v{version} {path:?}")))
        }

        fn known_leaf(&self, key: &[u8; 32]) -> Option<Leaf> {
            self.known.get(key).copied()
        }
    }

    fn bit(key: &[u8; 32], i: usize) -> bool {
        key[i / 8] & (0x80 >> (i % 8)) != 0
    }

    /// The sparse Merkle root of `leaves` (sorted) by its definition, one bit at a time.
    fn smt_root(leaves: &[Leaf], depth: usize) -> [u8; 32] {
        match leaves {
            [] => PLACEHOLDER,
            [leaf] => leaf.hash(),
            _ => {
                let split = leaves.partition_point(|l| !bit(&l.key, depth));
                hash_pair(
                    &smt_root(&leaves[..split], depth + 1),
                    &smt_root(&leaves[split..], depth + 1),
                )
            }
        }
    }

    /// The leaf of `key` in the tree of `version`, by walking it.
    fn find(memory: &Memory, version: u64, key: &[u8; 32]) -> Option<Leaf> {
        let (mut v, mut path) = (version, Path::ROOT);
        loop {
            match &*memory.node(v, &path).unwrap() {
                TreeNode::Null => return None,
                TreeNode::Leaf(leaf) => {
                    assert!(path.is_prefix_of(&leaf.key));
                    return (leaf.key == *key).then_some(*leaf);
                }
                TreeNode::Internal(internal) => {
                    let n = nibble(key, path.depth());
                    let c = internal.children[usize::from(n)]?;
                    (v, path) = (c.version, path.child(n));
                }
            }
        }
    }

    /// Keys that share long prefixes (down to the last bit, so leaves at depth 64 and long
    /// chains of internal nodes with one internal child), inserted and deleted at random:
    /// every version's root is the sparse Merkle root of its keys by definition, and every
    /// key walks to its leaf (or to none) in every version.
    #[test]
    fn deep_shared_prefixes_keep_the_definition() {
        let mut seed = 0x5EED_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let base = *blake3::hash(b"base").as_bytes();
        let mut keys = vec![base];
        for b in [
            255, 254, 253, 252, 251, 248, 240, 200, 129, 128, 64, 9, 4, 3, 0,
        ] {
            let mut k = base;
            k[b / 8] ^= 0x80 >> (b % 8);
            keys.push(k);
            let mut k2 = k;
            k2[31] ^= 1;
            keys.push(k2);
        }
        keys.sort();
        keys.dedup();
        let mut memory = Memory::default();
        let mut model: BTreeMap<[u8; 32], Leaf> = BTreeMap::new();
        let mut history = Vec::new();
        for version in 0..300u64 {
            let mut changes: BTreeMap<[u8; 32], Option<Leaf>> = BTreeMap::new();
            for _ in 0..1 + next() % 6 {
                let key = keys[(next() % keys.len() as u64) as usize];
                let leaf = (next() % 3 != 0).then(|| Leaf::of(key, &next().to_le_bytes()));
                changes.insert(key, leaf);
            }
            let changes: Vec<Change> = changes
                .into_iter()
                .map(|(key, leaf)| Change { key, leaf })
                .collect();
            let (root, nodes) = apply(&memory, version.checked_sub(1), version, &changes).unwrap();
            for c in &changes {
                match c.leaf {
                    Some(leaf) => model.insert(c.key, leaf),
                    None => model.remove(&c.key),
                };
            }
            let leaves: Vec<Leaf> = model.values().copied().collect();
            assert_eq!(root, smt_root(&leaves, 0), "version {version}");
            for (path, node) in nodes {
                assert!(memory.nodes.insert((version, path), node).is_none());
            }
            memory.known = model.clone().into_iter().collect();
            history.push(model.clone());
        }
        for (version, snapshot) in history.iter().enumerate() {
            for key in &keys {
                assert_eq!(
                    find(&memory, version as u64, key),
                    snapshot.get(key).copied(),
                    "version {version}"
                );
            }
        }
    }
}
