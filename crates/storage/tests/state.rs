//! StateTree and StateProof behaviour.

use std::collections::BTreeMap;
use std::sync::Arc;

use netchain_storage::{
    empty_root, Column, FaultyBackend, FjallBackend, KvBackend, MemoryBackend, StateProof,
    StateTree, StorageError, WriteBatch,
};

type Updates = Vec<(Vec<u8>, Option<Vec<u8>>)>;
/// A proof with the key and value it should prove.
type ProofCase<'a> = (&'a StateProof, &'a [u8], Option<&'a [u8]>);

/// Deterministic splitmix64 so tests are reproducible without extra deps.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_updates(rng: &mut Rng, n_keys: u64) -> Updates {
    let n = rng.below(8); // sometimes zero updates
    (0..n)
        .map(|_| {
            let key = format!("key-{}", rng.below(n_keys)).into_bytes();
            let val = if rng.below(3) == 0 {
                None
            } else {
                Some(rng.next().to_le_bytes()[..(1 + rng.below(8) as usize)].to_vec())
            };
            (key, val)
        })
        .collect()
}

fn commit<B: KvBackend>(tree: &StateTree<B>, version: u64, updates: Updates) -> [u8; 32] {
    let (root, batch) = tree.apply(version, updates).unwrap();
    tree.backend().write(batch, false).unwrap();
    assert_eq!(tree.root(version).unwrap(), Some(root));
    root
}

#[test]
fn differential_against_btreemap_model() {
    for seed in 0..4u64 {
        let mut rng = Rng(seed);
        let tree = StateTree::new(Arc::new(MemoryBackend::default()));
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut history = Vec::new();
        for version in 0..40u64 {
            let updates = random_updates(&mut rng, 12);
            for (k, v) in &updates {
                match v {
                    Some(v) => model.insert(k.clone(), v.clone()),
                    None => model.remove(k),
                };
            }
            let root = commit(&tree, version, updates);
            history.push((root, model.clone()));
        }
        // Leaves carry their values: no value rows are written.
        let rows = tree.backend().range(Column::JmtValues, &[], &[0xff; 64], 1);
        assert!(rows.unwrap().is_empty());
        // The writing tree (its caches warm) and a fresh one (every read a walk through the
        // store) give the same answers.
        let fresh = StateTree::new(tree.backend().clone());
        for (version, (root, snap)) in history.iter().enumerate() {
            let version = version as u64;
            for i in 0..14 {
                let key = format!("key-{i}").into_bytes();
                let expect = snap.get(&key).cloned();
                for t in [&tree, &fresh] {
                    assert_eq!(
                        t.get(&key, version).unwrap(),
                        expect,
                        "seed {seed} v{version}"
                    );
                    let (val, proof) = t.get_with_proof(&key, version).unwrap();
                    assert_eq!(val, expect);
                    proof.verify(*root, &key, expect.as_deref()).unwrap();
                }
            }
        }
    }
}

#[test]
fn memory_and_fjall_roots_match() {
    let dir = tempfile::tempdir().unwrap();
    let mem = StateTree::new(Arc::new(MemoryBackend::default()));
    let fj = StateTree::new(Arc::new(FjallBackend::open(dir.path()).unwrap()));
    let mut rng = Rng(42);
    for version in 0..20 {
        let updates = random_updates(&mut rng, 30);
        let a = commit(&mem, version, updates.clone());
        let b = commit(&fj, version, updates);
        assert_eq!(a, b, "version {version}");
    }
    // Roots and values survive reopening the fjall store.
    let last_root = fj.root(19).unwrap();
    drop(fj);
    let fj = StateTree::new(Arc::new(FjallBackend::open(dir.path()).unwrap()));
    assert_eq!(fj.root(19).unwrap(), last_root);
    for i in 0..30 {
        let key = format!("key-{i}").into_bytes();
        assert_eq!(fj.get(&key, 19).unwrap(), mem.get(&key, 19).unwrap());
    }
}

#[test]
fn root_is_order_independent_and_last_update_wins() {
    let updates: Updates = (0..20u8).map(|i| (vec![i], Some(vec![i, i]))).collect();
    let mut reversed = updates.clone();
    reversed.reverse();
    let a = StateTree::new(Arc::new(MemoryBackend::default()));
    let b = StateTree::new(Arc::new(MemoryBackend::default()));
    assert_eq!(
        a.apply(0, updates.clone()).unwrap().0,
        b.apply(0, reversed).unwrap().0
    );

    // Duplicate key within one version: the later update wins.
    let mut dup = updates.clone();
    dup.insert(0, (vec![3], Some(b"old".to_vec())));
    let c = StateTree::new(Arc::new(MemoryBackend::default()));
    assert_eq!(c.apply(0, dup).unwrap().0, a.apply(0, updates).unwrap().0);
    // Different content, different root.
    let d = StateTree::new(Arc::new(MemoryBackend::default()));
    let other = d.apply(0, vec![(vec![1], Some(vec![9]))]).unwrap().0;
    assert_ne!(
        other,
        c.apply(0, vec![(vec![1], Some(vec![1, 1]))]).unwrap().0
    );
}

#[test]
fn empty_versions_keep_root_and_prove() {
    let tree = StateTree::new(Arc::new(MemoryBackend::default()));
    let r0 = commit(&tree, 0, vec![]);
    assert_eq!(r0, empty_root());
    let (v, p) = tree.get_with_proof(b"a", 0).unwrap();
    assert_eq!(v, None);
    p.verify(r0, b"a", None).unwrap();

    let r1 = commit(&tree, 1, vec![(b"a".to_vec(), Some(b"1".to_vec()))]);
    assert_ne!(r1, r0);
    let r2 = commit(&tree, 2, vec![]);
    let r3 = commit(&tree, 3, vec![(b"zz".to_vec(), None)]); // delete of absent key
    assert_eq!((r2, r3), (r1, r1));
    for version in 1..=3 {
        let (v, p) = tree.get_with_proof(b"a", version).unwrap();
        assert_eq!(v.as_deref(), Some(&b"1"[..]));
        p.verify(r1, b"a", Some(b"1")).unwrap();
    }
    // Deleting everything returns to the empty root.
    let r4 = commit(&tree, 4, vec![(b"a".to_vec(), None)]);
    assert_eq!(r4, empty_root());
    assert_eq!(tree.get(b"a", 4).unwrap(), None);
    assert_eq!(tree.get(b"a", 3).unwrap(), Some(b"1".to_vec()));
}

#[test]
fn emptying_and_refilling_within_one_version() {
    let mem = StateTree::new(Arc::new(MemoryBackend::default()));
    let fresh = StateTree::new(Arc::new(MemoryBackend::default()));
    commit(&mem, 0, vec![(b"only".to_vec(), Some(b"1".to_vec()))]);
    // Same version deletes the only key and inserts others.
    let updates: Updates = vec![
        (b"only".to_vec(), None),
        (b"x".to_vec(), Some(b"2".to_vec())),
        (b"y".to_vec(), Some(b"3".to_vec())),
    ];
    let r1 = commit(&mem, 1, updates);
    let expect = commit(
        &fresh,
        0,
        vec![
            (b"x".to_vec(), Some(b"2".to_vec())),
            (b"y".to_vec(), Some(b"3".to_vec())),
        ],
    );
    assert_eq!(r1, expect);
    assert_eq!(mem.get(b"only", 1).unwrap(), None);
    assert_eq!(mem.get(b"only", 0).unwrap(), Some(b"1".to_vec()));
    let (_, proof) = mem.get_with_proof(b"only", 1).unwrap();
    proof.verify(r1, b"only", None).unwrap();
}

#[test]
fn proofs_reject_wrong_value_root_or_bytes() {
    let tree = StateTree::new(Arc::new(MemoryBackend::default()));
    let updates = (0..50u32)
        .map(|i| (i.to_be_bytes().to_vec(), Some(vec![i as u8; 3])))
        .collect();
    let root = commit(&tree, 0, updates);
    let present = 7u32.to_be_bytes();
    let absent = 999u32.to_be_bytes();

    let (v, p) = tree.get_with_proof(&present, 0).unwrap();
    assert_eq!(v, Some(vec![7; 3]));
    p.verify(root, &present, Some(&[7, 7, 7])).unwrap();
    assert!(p.verify(root, &present, Some(&[7, 7, 8])).is_err());
    assert!(p.verify(root, &present, None).is_err());
    assert!(p.verify(empty_root(), &present, Some(&[7, 7, 7])).is_err());
    assert!(p.verify(root, &absent, None).is_err());

    let (v, q) = tree.get_with_proof(&absent, 0).unwrap();
    assert_eq!(v, None);
    q.verify(root, &absent, None).unwrap();
    assert!(q.verify(root, &absent, Some(&[1])).is_err());
    let mut wrong_root = root;
    wrong_root[0] ^= 1;
    assert!(q.verify(wrong_root, &absent, None).is_err());

    // Every single-byte corruption is rejected (decode or verify), never panics.
    let cases: [ProofCase; 2] = [(&p, &present, Some(&[7, 7, 7])), (&q, &absent, None)];
    for (proof, key, value) in cases {
        for i in 0..proof.0.len() {
            let mut bad = proof.clone();
            bad.0[i] ^= 0x01;
            assert!(bad.verify(root, key, value).is_err(), "byte {i}");
        }
        let mut truncated = proof.clone();
        truncated.0.pop();
        assert!(matches!(
            truncated.verify(root, key, value),
            Err(StorageError::InvalidProof(_))
        ));
        let mut extended = proof.clone();
        extended.0.push(0);
        assert!(extended.verify(root, key, value).is_err());
    }
    for garbage in [vec![], vec![0xff; 7], vec![1; 200]] {
        assert!(matches!(
            StateProof(garbage).verify(root, &present, None),
            Err(StorageError::InvalidProof(_))
        ));
    }
}

#[test]
fn apply_rejects_bad_versions_and_unknown_versions_error() {
    let tree = StateTree::new(Arc::new(MemoryBackend::default()));
    assert!(matches!(
        tree.apply(1, vec![]),
        Err(StorageError::InvalidVersion { version: 1, .. })
    ));
    commit(&tree, 0, vec![(b"k".to_vec(), Some(b"v".to_vec()))]);
    assert!(matches!(
        tree.apply(0, vec![]),
        Err(StorageError::InvalidVersion { .. })
    ));
    assert!(matches!(
        tree.apply(2, vec![]),
        Err(StorageError::InvalidVersion { .. })
    ));
    assert_eq!(tree.root(1).unwrap(), None);
    assert!(matches!(
        tree.get(b"k", 1),
        Err(StorageError::UnknownVersion(1))
    ));
    assert!(matches!(
        tree.get_with_proof(b"k", 5),
        Err(StorageError::UnknownVersion(5))
    ));
}

#[test]
fn failed_commit_leaves_version_retryable() {
    let backend = Arc::new(FaultyBackend::new(MemoryBackend::default()));
    let tree = StateTree::new(backend.clone());
    commit(&tree, 0, vec![(b"a".to_vec(), Some(b"1".to_vec()))]);
    backend.fail_writes_after(0);
    let (root, batch) = tree
        .apply(1, vec![(b"b".to_vec(), Some(b"2".to_vec()))])
        .unwrap();
    assert!(matches!(
        backend.write(batch, true),
        Err(StorageError::InjectedFault)
    ));
    assert_eq!(tree.root(1).unwrap(), None);
    backend.heal();
    let (again, batch) = tree
        .apply(1, vec![(b"b".to_vec(), Some(b"2".to_vec()))])
        .unwrap();
    assert_eq!(again, root);
    backend.write(batch, true).unwrap();
    assert_eq!(tree.get(b"b", 1).unwrap(), Some(b"2".to_vec()));
}

#[test]
fn corrupt_nodes_and_values_are_errors_not_panics() {
    let backend = Arc::new(MemoryBackend::default());
    let tree = StateTree::new(backend.clone());
    commit(&tree, 0, vec![(b"a".to_vec(), Some(b"1".to_vec()))]);
    // Garble every stored node and value.
    let mut garble = WriteBatch::new();
    for col in [Column::JmtNodes, Column::JmtValues] {
        for (k, _) in backend.range(col, &[], &[0xff; 64], usize::MAX).unwrap() {
            garble.put(col, k, vec![0xee, 0x01]);
        }
    }
    backend.write(garble, false).unwrap();
    // A fresh tree: this one's value cache still knows what it wrote.
    let tree = StateTree::new(backend.clone());
    assert!(matches!(
        tree.root(0),
        Err(StorageError::Corrupt {
            col: Column::JmtNodes,
            ..
        })
    ));
    assert!(matches!(
        tree.get(b"a", 0),
        Err(StorageError::Corrupt { .. })
    ));
    assert!(tree.apply(1, vec![]).is_err());
}

/// The tree's node cache changes no answer: a tree that computed a version whose batch was never
/// written, then that version again with other updates, gives the same roots, values and proofs
/// as a fresh tree (empty cache) over the same store, and as a tree that never saw the lost batch.
#[test]
fn node_cache_serves_only_committed_nodes() {
    for seed in 0..4u64 {
        let mut rng = Rng(100 + seed);
        let backend = Arc::new(MemoryBackend::default());
        let cached = StateTree::new(backend.clone());
        let clean = StateTree::new(Arc::new(MemoryBackend::default()));
        for version in 0..30u64 {
            let updates = random_updates(&mut rng, 40);
            if version % 7 == 3 {
                // Computed, cached, never written: a different block for the same height.
                let lost = random_updates(&mut rng, 40);
                let _ = cached.apply(version, lost).unwrap();
            }
            let root = commit(&cached, version, updates.clone());
            assert_eq!(
                root,
                commit(&clean, version, updates),
                "seed {seed} v{version}"
            );
        }
        let fresh = StateTree::new(backend);
        for version in 0..30u64 {
            assert_eq!(cached.root(version).unwrap(), fresh.root(version).unwrap());
            for k in 0..40 {
                let key = format!("key-{k}").into_bytes();
                let (a, pa) = cached.get_with_proof(&key, version).unwrap();
                let (b, pb) = fresh.get_with_proof(&key, version).unwrap();
                assert_eq!((a, pa), (b, pb), "seed {seed} v{version} key-{k}");
            }
        }
    }
}

/// The value cache changes no answer: reads interleaved with commits, versions computed and
/// never written, and versions another writer commits over the same store (also ones this
/// tree computed from other updates) read the same values as a fresh tree, at the newest
/// version and older ones.
#[test]
fn value_cache_answers_as_the_tree() {
    for seed in 0..6u64 {
        let mut rng = Rng(200 + seed);
        let backend = Arc::new(MemoryBackend::default());
        let cached = StateTree::new(backend.clone());
        let other = StateTree::new(backend.clone());
        let key = |k: u64| format!("key-{k}").into_bytes();
        for version in 0..60u64 {
            let updates = random_updates(&mut rng, 16);
            match rng.below(7) {
                0 => {
                    // Another writer commits this version; this tree learns of it only when
                    // it next looks at a root.
                    commit(&other, version, updates);
                }
                6 => {
                    // This tree computes the version, then another writer commits it from
                    // other updates.
                    let _ = cached.apply(version, random_updates(&mut rng, 16)).unwrap();
                    commit(&other, version, updates);
                }
                1 => {
                    let lost = random_updates(&mut rng, 16);
                    let _ = cached.apply(version, lost).unwrap();
                    commit(&cached, version, updates);
                }
                _ => {
                    commit(&cached, version, updates);
                }
            }
            let fresh = StateTree::new(backend.clone());
            for _ in 0..12 {
                let k = rng.below(18);
                let at = version.saturating_sub(rng.below(4));
                assert_eq!(
                    cached.get(&key(k), at).unwrap(),
                    fresh.get(&key(k), at).unwrap(),
                    "seed {seed} v{version} read at {at} key-{k}"
                );
            }
        }
    }
}
