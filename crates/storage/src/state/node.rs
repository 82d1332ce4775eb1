//! The state tree's nodes: our own types for the Jellyfish Merkle Tree's nodes, with the same
//! stored bytes (jmt's borsh encoding of `jmt::storage::Node`) and the same hashes, so the roots
//! and proofs are jmt's while updates and reads run without jmt's per-node allocations, hash
//! maps and panics on bad input.
//!
//! Hashing (jmt 0.12 with blake3): a leaf is `H("JMT::LeafNode" ++ key_hash ++ value_hash)`; an
//! internal node is the root of a binary Merkle tree over its 16 child slots, where a range
//! of slots with no child is the placeholder, a range whose only child is a leaf is that
//! leaf's hash, and otherwise `H("JMT::IntrnalNode" ++ left ++ right)`.

use crate::kv::Column;
use crate::StorageError;

/// Hash of an empty subtree (and of the empty tree's root).
pub(super) const PLACEHOLDER: [u8; 32] = *b"SPARSE_MERKLE_PLACEHOLDER_HASH__";
const LEAF_SEPARATOR: &[u8; 13] = b"JMT::LeafNode";
const INTERNAL_SEPARATOR: &[u8; 16] = b"JMT::IntrnalNode";

/// The nibble path from the root to a node: `len` nibbles, two per byte, high nibble first;
/// the nibbles past `len` are zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub(super) struct Path {
    len: u8,
    bytes: [u8; 32],
}

impl Path {
    /// The root's path.
    pub(super) const ROOT: Path = Path {
        len: 0,
        bytes: [0; 32],
    };

    /// Number of nibbles (the node's depth).
    pub(super) fn depth(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether `key` starts with this path.
    pub(super) fn is_prefix_of(&self, key: &[u8; 32]) -> bool {
        let full = self.depth() / 2;
        self.bytes[..full] == key[..full]
            && (self.len.is_multiple_of(2) || self.bytes[full] == key[full] & 0xf0)
    }

    /// The path of the child in slot `nibble` (`depth() < 64`).
    pub(super) fn child(&self, nibble: u8) -> Path {
        debug_assert!(self.len < 64 && nibble < 16);
        let mut out = *self;
        let i = usize::from(self.len / 2);
        if self.len.is_multiple_of(2) {
            out.bytes[i] = nibble << 4;
        } else {
            out.bytes[i] |= nibble;
        }
        out.len += 1;
        out
    }

    /// The store key of the node at this path written at `version`: `version_be ++
    /// borsh(NibblePath)` (a u64 nibble count, a u32 byte count, the bytes), as jmt's
    /// `NodeKey` encodes.
    pub(super) fn db_key(&self, version: u64) -> Vec<u8> {
        let n = self.depth().div_ceil(2);
        let mut out = Vec::with_capacity(8 + 8 + 4 + n);
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&u64::from(self.len).to_le_bytes());
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&self.bytes[..n]);
        out
    }
}

/// The `depth`-th nibble of a key hash.
pub(super) fn nibble(key: &[u8; 32], depth: usize) -> u8 {
    let byte = key[depth / 2];
    if depth.is_multiple_of(2) {
        byte >> 4
    } else {
        byte & 0x0f
    }
}

/// An internal node's entry for one child.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct ChildRef {
    pub(super) hash: [u8; 32],
    /// The version the child was written at (its store key is this and the child's path).
    pub(super) version: u64,
    /// `None`: the child is a leaf; otherwise the number of leaves below it.
    pub(super) leaves: Option<u64>,
}

impl ChildRef {
    pub(super) fn is_leaf(&self) -> bool {
        self.leaves.is_none()
    }

    fn leaf_count(&self) -> u64 {
        self.leaves.unwrap_or(1)
    }
}

/// A leaf: a key's hash and its value's hash.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Leaf {
    pub(super) key: [u8; 32],
    pub(super) value_hash: [u8; 32],
}

impl Leaf {
    pub(super) fn of(key: [u8; 32], value: &[u8]) -> Leaf {
        Leaf {
            key,
            value_hash: *blake3::hash(value).as_bytes(),
        }
    }

    pub(super) fn hash(&self) -> [u8; 32] {
        let mut buf = [0u8; 13 + 64];
        buf[..13].copy_from_slice(LEAF_SEPARATOR);
        buf[13..45].copy_from_slice(&self.key);
        buf[45..].copy_from_slice(&self.value_hash);
        *blake3::hash(&buf).as_bytes()
    }
}

pub(super) fn hash_pair(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut buf = [0u8; 16 + 64];
    buf[..16].copy_from_slice(INTERNAL_SEPARATOR);
    buf[16..48].copy_from_slice(left);
    buf[48..].copy_from_slice(right);
    *blake3::hash(&buf).as_bytes()
}

/// An internal node: up to 16 children, at least one, and not a lone leaf.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) struct Internal {
    pub(super) children: [Option<ChildRef>; 16],
}

impl Internal {
    /// Leaves below (saturating: decoded counts are checked, and no store holds 2^64 keys).
    pub(super) fn leaf_count(&self) -> u64 {
        self.children
            .iter()
            .flatten()
            .fold(0u64, |sum, c| sum.saturating_add(c.leaf_count()))
    }

    pub(super) fn hash(&self) -> [u8; 32] {
        let mut exists = 0u16;
        let mut leaves = 0u16;
        for (i, c) in self.children.iter().enumerate() {
            if let Some(c) = c {
                exists |= 1 << i;
                if c.is_leaf() {
                    leaves |= 1 << i;
                }
            }
        }
        self.merkle(0, 16, exists, leaves)
    }

    /// The hash of slots `start..start + width` (see the module's doc).
    fn merkle(&self, start: usize, width: usize, exists: u16, leaves: u16) -> [u8; 32] {
        let mask = (((1u32 << width) - 1) << start) as u16;
        let here = exists & mask;
        if here == 0 {
            return PLACEHOLDER;
        }
        if width == 1 || (here.count_ones() == 1 && leaves & mask != 0) {
            let only = here.trailing_zeros() as usize;
            return self.children[only].map(|c| c.hash).unwrap_or(PLACEHOLDER);
        }
        let half = width / 2;
        let left = self.merkle(start, half, exists, leaves);
        let right = self.merkle(start + half, half, exists, leaves);
        hash_pair(&left, &right)
    }

    /// This node as its parent's entry for it, written at `version`.
    pub(super) fn as_child(&self, version: u64) -> ChildRef {
        ChildRef {
            hash: self.hash(),
            version,
            leaves: Some(self.leaf_count()),
        }
    }
}

/// A node of the tree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) enum TreeNode {
    /// The root of the empty tree (nowhere else).
    Null,
    Internal(Box<Internal>),
    Leaf(Leaf),
}

impl TreeNode {
    pub(super) fn hash(&self) -> [u8; 32] {
        match self {
            TreeNode::Null => PLACEHOLDER,
            TreeNode::Internal(i) => i.hash(),
            TreeNode::Leaf(l) => l.hash(),
        }
    }

    /// Appends jmt's borsh encoding of this node.
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            TreeNode::Null => out.push(0),
            TreeNode::Internal(internal) => {
                out.reserve(1 + 16 * 50 + 16);
                out.push(1);
                let mut count = 0u64;
                for child in &internal.children {
                    match child {
                        None => out.push(0),
                        Some(c) => {
                            count += 1;
                            out.push(1);
                            out.extend_from_slice(&c.hash);
                            out.extend_from_slice(&c.version.to_le_bytes());
                            match c.leaves {
                                None => out.push(0),
                                Some(n) => {
                                    out.push(1);
                                    out.extend_from_slice(&n.to_le_bytes());
                                }
                            }
                        }
                    }
                }
                out.extend_from_slice(&count.to_le_bytes());
                out.extend_from_slice(&internal.leaf_count().to_le_bytes());
            }
            TreeNode::Leaf(leaf) => {
                out.push(2);
                out.extend_from_slice(&leaf.key);
                out.extend_from_slice(&leaf.value_hash);
            }
        }
    }

    /// Decodes a node from the front of `bytes` (the store key `key` names it in errors);
    /// returns it and the bytes after it. Anything jmt would not have written is `Corrupt`.
    pub(super) fn decode<'a>(
        key: &[u8],
        bytes: &'a [u8],
    ) -> Result<(TreeNode, &'a [u8]), StorageError> {
        let mut r = Bytes { key, rest: bytes };
        let node = match r.u8()? {
            0 => TreeNode::Null,
            1 => {
                let mut children = [None; 16];
                let mut count = 0u64;
                let mut leaves = 0u64;
                for slot in children.iter_mut() {
                    match r.u8()? {
                        0 => {}
                        1 => {
                            let hash = r.array()?;
                            let version = r.u64()?;
                            let n = match r.u8()? {
                                0 => None,
                                // An internal node has two leaves below it at least.
                                1 => match r.u64()? {
                                    n @ 2.. => Some(n),
                                    n => {
                                        return Err(
                                            r.corrupt(format!("an internal child with {n} leaves"))
                                        )
                                    }
                                },
                                t => return Err(r.corrupt(format!("bad child type tag {t}"))),
                            };
                            count += 1;
                            leaves = leaves
                                .checked_add(n.unwrap_or(1))
                                .ok_or_else(|| r.corrupt("leaf count overflows".into()))?;
                            *slot = Some(ChildRef {
                                hash,
                                version,
                                leaves: n,
                            });
                        }
                        t => return Err(r.corrupt(format!("bad child tag {t}"))),
                    }
                }
                if r.u64()? != count {
                    return Err(r.corrupt("child count does not match the children".into()));
                }
                if r.u64()? != leaves {
                    return Err(r.corrupt("leaf count does not match the children".into()));
                }
                let lone_leaf = count == 1 && children.iter().flatten().all(ChildRef::is_leaf);
                if count == 0 || lone_leaf {
                    return Err(r.corrupt("an internal node with no child or a lone leaf".into()));
                }
                TreeNode::Internal(Box::new(Internal { children }))
            }
            2 => TreeNode::Leaf(Leaf {
                key: r.array()?,
                value_hash: r.array()?,
            }),
            t => return Err(r.corrupt(format!("bad node tag {t}"))),
        };
        Ok((node, r.rest))
    }
}

/// A reader over a stored node's bytes.
struct Bytes<'k, 'a> {
    key: &'k [u8],
    rest: &'a [u8],
}

impl Bytes<'_, '_> {
    fn corrupt(&self, reason: String) -> StorageError {
        StorageError::corrupt(Column::JmtNodes, self.key, reason)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], StorageError> {
        match self.rest.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.rest = rest;
                Ok(*head)
            }
            None => Err(self.corrupt("node record is cut short".into())),
        }
    }

    fn u8(&mut self) -> Result<u8, StorageError> {
        Ok(self.take::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, StorageError> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    fn array(&mut self) -> Result<[u8; 32], StorageError> {
        self.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use borsh::BorshDeserialize;

    fn child(b: u8, leaves: Option<u64>) -> Option<ChildRef> {
        Some(ChildRef {
            hash: [b; 32],
            version: u64::from(b),
            leaves,
        })
    }

    fn sample() -> TreeNode {
        let mut children = [None; 16];
        children[0] = child(1, None);
        children[5] = child(2, Some(7));
        children[15] = child(3, None);
        TreeNode::Internal(Box::new(Internal { children }))
    }

    fn encoded(node: &TreeNode) -> Vec<u8> {
        let mut out = Vec::new();
        node.encode(&mut out);
        out
    }

    /// Our bytes are jmt's: jmt decodes them to a node that encodes to the same bytes and has
    /// the same hash, and ours decode back to the same node.
    #[test]
    fn nodes_round_trip_through_jmts_encoding() {
        let leaf = TreeNode::Leaf(Leaf::of([9; 32], b"value"));
        for node in [sample(), leaf, TreeNode::Null] {
            let bytes = encoded(&node);
            let theirs = jmt::storage::Node::deserialize(&mut bytes.as_slice()).unwrap();
            assert_eq!(borsh::to_vec(&theirs).unwrap(), bytes);
            let their_hash = match &theirs {
                jmt::storage::Node::Null => PLACEHOLDER,
                jmt::storage::Node::Internal(i) => i.hash::<super::super::Blake3Hasher>(),
                jmt::storage::Node::Leaf(l) => l.hash::<super::super::Blake3Hasher>(),
            };
            assert_eq!(their_hash, node.hash());
            let (ours, rest) = TreeNode::decode(b"k", &bytes).unwrap();
            assert_eq!(ours, node);
            assert!(rest.is_empty());
        }
    }

    fn rejects(bytes: &[u8]) -> bool {
        matches!(
            TreeNode::decode(b"k", bytes),
            Err(StorageError::Corrupt { .. })
        )
    }

    /// Stored bytes jmt would not have written are `Corrupt` errors, never a panic or a node.
    #[test]
    fn malformed_nodes_are_corrupt_errors() {
        let good = encoded(&sample());
        for len in 0..good.len() {
            assert!(rejects(&good[..len]), "cut at {len}");
        }
        assert!(rejects(&[3]), "node tag");
        let mut bad_child_tag = good.clone();
        bad_child_tag[1] = 2;
        assert!(rejects(&bad_child_tag));
        let tail = good.len() - 16;
        let mut count = good.clone();
        count[tail] = 4;
        assert!(rejects(&count), "child count");
        let mut leaves = good.clone();
        leaves[tail + 8] = 10;
        assert!(rejects(&leaves), "leaf count");
        // A lone leaf, no child, an internal child with one leaf, leaf counts that overflow.
        let mut lone = [None; 16];
        lone[3] = child(1, None);
        let lone = encoded(&TreeNode::Internal(Box::new(Internal { children: lone })));
        assert!(rejects(&lone));
        let mut none = vec![1];
        none.extend([0u8; 16]);
        none.extend([0u8; 16]);
        assert!(rejects(&none));
        let mut one = [None; 16];
        one[0] = child(1, Some(1));
        one[1] = child(2, None);
        assert!(rejects(&encoded(&TreeNode::Internal(Box::new(Internal {
            children: one
        })))));
        let mut huge = [None; 16];
        huge[0] = child(1, Some(u64::MAX));
        huge[1] = child(2, None);
        let mut bytes = encoded(&TreeNode::Internal(Box::new(Internal { children: huge })));
        let n = bytes.len();
        bytes[n - 8..].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(rejects(&bytes), "overflowing leaf count");
    }

    #[test]
    fn paths_are_prefixes_of_their_keys() {
        let key = [0xab; 32];
        let mut path = Path::ROOT;
        for depth in 0..64 {
            assert!(path.is_prefix_of(&key), "depth {depth}");
            let mut other = key;
            if depth > 0 {
                other[(depth - 1) / 2] ^= if (depth - 1) % 2 == 0 { 0x10 } else { 0x01 };
                assert!(!path.is_prefix_of(&other), "depth {depth}");
            }
            path = path.child(nibble(&key, depth));
        }
        assert!(path.is_prefix_of(&key));
    }
}
