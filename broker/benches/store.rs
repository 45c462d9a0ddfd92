//! Store micro-benchmarks: record encode and decode, index dispatch, and commit-log appends
//! through the write queue (ASYNC flush, in-memory index: the log write path alone).
//!
//! `cargo bench -p apogee-broker --bench store`; figures and how they compare: docs/PERFORMANCE.md.

use std::fmt::Write;
use std::sync::Arc;

use apogee_broker::store::{
    index, record, FlushMode, KvBatch, KvStore, MemKv, MessageStore, NewMessage, RocksKv,
    StoreConfig,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn message(n: usize, body: usize) -> NewMessage {
    NewMessage {
        topic: "bench".into(),
        queue_id: (n % 8) as u32,
        message_id: format!("01ABCDEF{n:024}"),
        tag: Some("tag-a".into()),
        keys: vec![format!("order-{n}")],
        message_group: None,
        message_type: 1,
        born_timestamp_ms: 1_700_000_000_000,
        born_host: "10.0.0.1:50000".into(),
        delivery_timestamp_ms: None,
        reconsume_times: 0,
        properties: vec![("trace".into(), "on".into())],
        internal: vec![],
        body: vec![0x5a; body].into(),
    }
}

fn codec(c: &mut Criterion) {
    let m = message(1, 1024);
    let size = record::encoded_len(&m).unwrap();
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Bytes(size as u64));
    g.bench_function("encode_1KiB", |b| {
        let mut buf = Vec::with_capacity(size);
        b.iter(|| {
            buf.clear();
            record::encode_into(&mut buf, &m, 42, 1_700_000_000_123, usize::MAX).unwrap()
        })
    });
    let mut buf = Vec::new();
    record::encode_into(&mut buf, &m, 42, 1_700_000_000_123, usize::MAX).unwrap();
    g.bench_function("decode_1KiB", |b| {
        b.iter(|| record::decode(&buf, 4096).unwrap())
    });
    g.finish();
}

/// The index batch of 32 records, queue offsets from `base` (log offsets follow them).
fn dispatch_batch(msgs: &[NewMessage], base: u64) -> KvBatch {
    let mut batch = KvBatch::new();
    for (i, m) in msgs.iter().enumerate() {
        let at = base + i as u64;
        index::dispatch(&mut batch, m, at, 4096 * at, 1200, 1_700_000_000_000);
    }
    batch
}

fn dispatch(c: &mut Criterion) {
    let msgs: Vec<NewMessage> = (0..32).map(|n| message(n, 16)).collect();
    let mut g = c.benchmark_group("index");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.bench_function("dispatch_32_records", |b| {
        b.iter(|| dispatch_batch(&msgs, 0))
    });
    // The same batch built and written to RocksDB (its WAL unsynced, as the writer does), at
    // growing offsets: what a group of 32 costs the index.
    let dir = tempfile::tempdir().unwrap();
    let kv = RocksKv::open(dir.path()).unwrap();
    let mut next = 0u64;
    g.bench_function("dispatch_and_write_32_records_rocksdb", |b| {
        b.iter(|| {
            kv.write(dispatch_batch(&msgs, next)).unwrap();
            next += msgs.len() as u64;
        })
    });
    g.finish();
}

/// Groups of 16 records (a group at T1's 4 x 16 in flight), each record on a queue picked by
/// a fixed pseudo-random walk over 8 or 10,000 queues (1,250 topics x 8, as in T5), written to
/// RocksDB with per-queue growing offsets: what spreading the load costs the index.
fn spread(c: &mut Criterion) {
    const GROUP: usize = 16;
    let mut g = c.benchmark_group("index_spread");
    g.throughput(Throughput::Elements(GROUP as u64));
    for queues in [8usize, 10_000] {
        let mut templates: Vec<NewMessage> = (0..queues)
            .map(|q| NewMessage {
                topic: if queues == 8 {
                    "bench".into()
                } else {
                    format!("many-{}", q / 8)
                },
                queue_id: (q % 8) as u32,
                tag: None,
                keys: vec![],
                properties: vec![],
                ..message(q, 16)
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let kv = RocksKv::open(dir.path()).unwrap();
        let mut offsets = vec![0u64; queues];
        let (mut seed, mut log) = (0x9e37_79b9_7f4a_7c15u64, 0u64);
        g.bench_function(format!("write_{GROUP}_records_over_{queues}_queues"), |b| {
            b.iter(|| {
                let mut batch = KvBatch::new();
                for _ in 0..GROUP {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let q = (seed % queues as u64) as usize;
                    // Ids grow with time, as a client's do, whatever the queue.
                    let m = &mut templates[q];
                    m.message_id.clear();
                    write!(m.message_id, "01ABCDEF{log:024}").unwrap();
                    index::dispatch(&mut batch, m, offsets[q], log, 1200, 0);
                    offsets[q] += 1;
                    log += 1200;
                }
                kv.write(batch).unwrap();
            })
        });
    }
    g.finish();
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        flush_mode: FlushMode::Async,
        segment_size: 64 << 20,
        ..StoreConfig::new(dir.path())
    };
    let store = MessageStore::open_with_kv(config, Arc::new(MemKv::new())).unwrap();
    let mut g = c.benchmark_group("commit_log");
    for batch in [1usize, 32] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("append_{batch}x1KiB"), |b| {
            b.iter_batched(
                || (0..batch).map(|n| message(n, 1024)).collect::<Vec<_>>(),
                |msgs| rt.block_on(store.append(msgs)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
    store.shutdown();
}

criterion_group!(benches, codec, dispatch, spread, append);
criterion_main!(benches);
