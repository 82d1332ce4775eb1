//! Backend behaviour: memory vs fjall equivalence, persistence, range/last, faults.

use netchain_storage::{
    Column, FaultyBackend, FjallBackend, KvBackend, MemoryBackend, StorageError, WriteBatch,
};
use proptest::prelude::*;

const COLS: [Column; 3] = [Column::Meta, Column::Blocks, Column::JmtValues];

#[derive(Clone, Debug)]
enum Op {
    Put(usize, u8, u8),
    Del(usize, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..COLS.len(), 0u8..16, any::<u8>()).prop_map(|(c, k, v)| Op::Put(c, k, v)),
        (0..COLS.len(), 0u8..16).prop_map(|(c, k)| Op::Del(c, k)),
    ]
}

fn to_batch(ops: &[Op]) -> WriteBatch {
    let mut b = WriteBatch::new();
    for op in ops {
        match *op {
            // Two-byte keys so ranges cross key-length boundaries.
            Op::Put(c, k, v) => b.put(COLS[c], vec![k / 4, k], vec![v; (v % 5) as usize]),
            Op::Del(c, k) => b.delete(COLS[c], vec![k / 4, k]),
        }
    }
    b
}

fn snapshot(b: &dyn KvBackend) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    COLS.iter()
        .map(|c| b.range(*c, &[], &[0xff], usize::MAX).unwrap())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn memory_and_fjall_agree(
        batches in prop::collection::vec(prop::collection::vec(op(), 0..12), 1..8),
        lo in 0u8..6, hi in 0u8..6, limit in 0usize..10,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let fj = FjallBackend::open(dir.path()).unwrap();
        let mem = MemoryBackend::default();
        for (i, ops) in batches.iter().enumerate() {
            mem.write(to_batch(ops), i % 2 == 0).unwrap();
            fj.write(to_batch(ops), i % 2 == 0).unwrap();
        }
        prop_assert_eq!(snapshot(&mem), snapshot(&fj));
        for c in COLS {
            prop_assert_eq!(mem.last(c).unwrap(), fj.last(c).unwrap());
            prop_assert_eq!(
                mem.range(c, &[lo], &[hi, 3], limit).unwrap(),
                fj.range(c, &[lo], &[hi, 3], limit).unwrap()
            );
            for k in 0u8..16 {
                prop_assert_eq!(mem.get(c, &[k / 4, k]).unwrap(), fj.get(c, &[k / 4, k]).unwrap());
            }
        }
    }
}

#[test]
fn fjall_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let fj = FjallBackend::open(dir.path()).unwrap();
        let mut b = WriteBatch::new();
        b.put(Column::Safety, b"vote".to_vec(), b"r7".to_vec());
        b.put(Column::Heights, 5u64.to_be_bytes(), b"h5".to_vec());
        fj.write(b, true).unwrap();
        let mut b = WriteBatch::new();
        b.put(Column::Heights, 6u64.to_be_bytes(), b"h6".to_vec());
        b.delete(Column::Safety, b"vote".to_vec());
        b.put(Column::Safety, b"lock".to_vec(), b"r8".to_vec());
        fj.write(b, false).unwrap();
        assert!(fj.disk_size_bytes() > 0);
    }
    let fj = FjallBackend::open(dir.path()).unwrap();
    assert_eq!(fj.get(Column::Safety, b"vote").unwrap(), None);
    assert_eq!(
        fj.get(Column::Safety, b"lock").unwrap(),
        Some(b"r8".to_vec())
    );
    assert_eq!(
        fj.last(Column::Heights).unwrap(),
        Some((6u64.to_be_bytes().to_vec(), b"h6".to_vec()))
    );
    assert_eq!(
        fj.get(Column::Heights, &5u64.to_be_bytes()).unwrap(),
        Some(b"h5".to_vec())
    );
    // Columns are isolated.
    assert_eq!(fj.get(Column::Meta, b"lock").unwrap(), None);
}

fn check_range_last(b: &dyn KvBackend) {
    assert_eq!(b.last(Column::Txs).unwrap(), None);
    assert!(b.range(Column::Txs, &[], &[0xff], 10).unwrap().is_empty());
    let mut wb = WriteBatch::new();
    for k in [1u8, 3, 5, 7] {
        wb.put(Column::Txs, vec![k], vec![k * 10]);
    }
    wb.put(Column::Receipts, vec![9u8], vec![1u8]);
    b.write(wb, false).unwrap();
    let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| k[0]).collect::<Vec<_>>();
    assert_eq!(
        keys(b.range(Column::Txs, &[3], &[7], 10).unwrap()),
        vec![3, 5]
    );
    assert_eq!(
        keys(b.range(Column::Txs, &[0], &[0xff], 2).unwrap()),
        vec![1, 3]
    );
    assert_eq!(
        keys(b.range(Column::Txs, &[2], &[8], 10).unwrap()),
        vec![3, 5, 7]
    );
    assert!(b.range(Column::Txs, &[5], &[5], 10).unwrap().is_empty());
    assert!(b.range(Column::Txs, &[7], &[3], 10).unwrap().is_empty());
    assert!(b.range(Column::Txs, &[0], &[0xff], 0).unwrap().is_empty());
    assert_eq!(b.last(Column::Txs).unwrap(), Some((vec![7], vec![70])));
    let mut wb = WriteBatch::new();
    wb.delete(Column::Txs, vec![7u8]);
    b.write(wb, true).unwrap();
    assert_eq!(b.last(Column::Txs).unwrap(), Some((vec![5], vec![50])));
    assert_eq!(b.last(Column::Receipts).unwrap(), Some((vec![9], vec![1])));
}

#[test]
fn range_and_last_semantics() {
    check_range_last(&MemoryBackend::default());
    let dir = tempfile::tempdir().unwrap();
    check_range_last(&FjallBackend::open(dir.path()).unwrap());
}

#[test]
fn write_batch_last_op_wins() {
    let mut a = WriteBatch::new();
    assert!(a.is_empty());
    a.put(Column::Meta, b"k".to_vec(), b"1".to_vec());
    a.delete(Column::Meta, b"k".to_vec());
    a.put(Column::Blocks, b"k".to_vec(), b"b".to_vec());
    assert_eq!(a.len(), 2);
    let mut b = WriteBatch::new();
    b.put(Column::Meta, b"k".to_vec(), b"2".to_vec());
    a.extend(b);
    assert_eq!(a.len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let fj = FjallBackend::open(dir.path()).unwrap();
    let mem = MemoryBackend::default();
    fj.write(a.clone(), false).unwrap();
    mem.write(a, false).unwrap();
    for be in [&fj as &dyn KvBackend, &mem] {
        assert_eq!(be.get(Column::Meta, b"k").unwrap(), Some(b"2".to_vec()));
        assert_eq!(be.get(Column::Blocks, b"k").unwrap(), Some(b"b".to_vec()));
    }
    assert_eq!(mem.disk_size_bytes(), 0);
}

#[test]
fn column_names_unique() {
    let names: std::collections::HashSet<_> = Column::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(names.len(), Column::ALL.len());
    for (i, c) in Column::ALL.iter().enumerate() {
        assert_eq!(c.index(), i);
    }
}

#[test]
fn faulty_backend_fails_after_n_writes() {
    let fb = FaultyBackend::new(MemoryBackend::default());
    let batch = |v: u8| {
        let mut b = WriteBatch::new();
        b.put(Column::Meta, b"k".to_vec(), vec![v]);
        b
    };
    fb.write(batch(0), true).unwrap();
    fb.fail_writes_after(1);
    fb.write(batch(1), true).unwrap();
    assert!(matches!(
        fb.write(batch(2), true),
        Err(StorageError::InjectedFault)
    ));
    assert!(matches!(
        fb.write(batch(3), false),
        Err(StorageError::InjectedFault)
    ));
    // Failed writes applied nothing; reads still work.
    assert_eq!(fb.get(Column::Meta, b"k").unwrap(), Some(vec![1]));
    fb.heal();
    fb.write(batch(4), true).unwrap();
    assert_eq!(fb.inner().get(Column::Meta, b"k").unwrap(), Some(vec![4]));
}

/// Child half of `synced_write_survives_abort`: writes with sync, then aborts
/// without running destructors (like kill -9).
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("NETCHAIN_STORAGE_CRASH_DIR") else {
        return;
    };
    let fj = FjallBackend::open(std::path::Path::new(&dir)).unwrap();
    let mut b = WriteBatch::new();
    b.put(Column::Safety, b"vote".to_vec(), b"round-9".to_vec());
    b.put(Column::Meta, b"height".to_vec(), 9u64.to_be_bytes());
    fj.write(b, true).unwrap();
    std::process::abort();
}

#[test]
fn synced_write_survives_abort() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("NETCHAIN_STORAGE_CRASH_DIR", dir.path())
        .status()
        .unwrap();
    assert!(!status.success(), "child should have aborted");
    let fj = FjallBackend::open(dir.path()).unwrap();
    assert_eq!(
        fj.get(Column::Safety, b"vote").unwrap(),
        Some(b"round-9".to_vec())
    );
    assert_eq!(
        fj.get(Column::Meta, b"height").unwrap(),
        Some(9u64.to_be_bytes().to_vec())
    );
}
