//! Durability: what a broker keeps across SIGKILL under sync and async flush (its
//! index, written without RocksDB's WAL, completed from the log as a rebuild would),
//! how it recovers a commit log whose last segment was cut at an arbitrary byte, and
//! that it refuses to start on damage that is not a torn tail.

use apogee_client::{Message, Producer};
use apogee_proto::v2::{self, Code};
use apogee_tests::commitlog::{self, RecordInfo};
use apogee_tests::{bins, rpc, BrokerSpec, Cluster};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_flush_broker_killed_keeps_every_acknowledged_message() {
    killed_under_load_keeps_every_acknowledged_message("sync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_flush_broker_killed_keeps_every_acknowledged_message() {
    killed_under_load_keeps_every_acknowledged_message("async").await;
}

/// Every queue's (message id, queue offset, body), in order.
async fn contents(addr: &str, topic: &str, queues: i32) -> Vec<Vec<(String, i64, Vec<u8>)>> {
    futures::future::join_all((0..queues).map(|q| rpc::queue_contents(addr, topic, q))).await
}

/// A broker with `flush` (sync or async) under sends from six producers, SIGKILLed
/// mid-flight and started again: every acknowledged message is served where its send was
/// told, once; the index entries the kill dropped (they skip RocksDB's WAL) were
/// re-dispatched from the log, and the queues and id lookups serve what a rebuild of the
/// whole index serves; new sends go on at each queue's end.
async fn killed_under_load_keeps_every_acknowledged_message(flush: &str) {
    // The override really selects the flush mode (a SIGKILL keeps the page cache,
    // so the crash alone cannot tell sync from async flushing).
    let checked = std::process::Command::new(bins::bin(bins::BROKER))
        .arg("--check-config")
        .env("APOGEE_BROKER_STORE__FLUSH", flush)
        .output()
        .expect("apogee-broker --check-config");
    let printed = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success() && printed.contains(&format!("flush = \"{flush}\"")),
        "--check-config: {printed}"
    );

    let mut cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a").env("STORE__FLUSH", flush))
        .start()
        .await;
    let topic = "durable";
    let queues = 4;
    cluster.create_topic(topic, queues).await;
    // One attempt per send: a retried send could legitimately store twice.
    let config = cluster
        .client_config()
        .with_max_attempts(1)
        .with_request_timeout(Duration::from_secs(3));
    let producer = Producer::connect(config).await.expect("producer");

    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..6 {
        let (producer, acked, stop) = (producer.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut seq, mut failures) = (0u64, 0u64);
            while !stop.load(Ordering::SeqCst) {
                let body = format!("p{t}-{seq}");
                seq += 1;
                match producer.send(Message::new(topic, body.clone())).await {
                    Ok(r) => acked.lock().unwrap().push((r, body)),
                    Err(_) => {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            failures
        }));
    }
    // Let a good number of sends complete, then pull the plug mid-flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 600 {
        assert!(
            Instant::now() < deadline,
            "only {} sends acknowledged in 60 s",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill_broker("broker-a");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut failures = 0;
    for t in tasks {
        failures += t.await.expect("producer task panicked");
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    cluster.restart_broker("broker-a").await;
    // The index entries written since the last flush of the index (all of them here: far
    // less than its flush bound) went with the kill, and the restart dispatched them again.
    let log = cluster.broker_log("broker-a");
    let redispatched: usize = log
        .lines()
        .filter(|l| l.contains("re-dispatched the log tail into the index"))
        .filter_map(|l| {
            l.split("records=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert!(
        redispatched >= acked.len(),
        "{} sends acknowledged, {redispatched} records re-dispatched at the restart: {log}",
        acked.len()
    );

    let addr = cluster.broker("broker-a").addr.clone();
    let served = contents(&addr, topic, queues).await;
    let mut stored: HashMap<String, (i32, i64, Vec<u8>)> = HashMap::new();
    let mut ends = Vec::new();
    for (q, messages) in (0..queues).zip(&served) {
        for (i, (id, offset, body)) in messages.iter().enumerate() {
            assert_eq!(
                *offset, i as i64,
                "queue {q}: offsets must run 0, 1, 2, ... in order; got {offset} at position {i}"
            );
            let previous = stored.insert(id.clone(), (q, *offset, body.clone()));
            assert!(
                previous.is_none(),
                "message {id} is stored twice: {previous:?} and queue {q} offset {offset}"
            );
        }
        ends.push(messages.len() as i64);
    }
    for (receipt, body) in &acked {
        let found = stored.get(&receipt.message_id);
        let (q, offset, stored_body) = found.unwrap_or_else(|| {
            panic!(
                "acknowledged message {} ({body}) at queue {} offset {} was lost",
                receipt.message_id, receipt.queue_id, receipt.offset
            )
        });
        assert_eq!(
            (*q, *offset),
            (receipt.queue_id, receipt.offset),
            "message {} moved",
            receipt.message_id
        );
        assert_eq!(
            stored_body,
            body.as_bytes(),
            "message {} has another body",
            receipt.message_id
        );
    }
    println!(
        "{flush} flush: {} sends acknowledged, {failures} failed, {} stored after the restart ({} stored but never acknowledged)",
        acked.len(),
        stored.len(),
        stored.len() - acked.len()
    );

    // The index the restart completed is the one a rebuild of all of it from the log makes.
    let by_id = |cluster: &Cluster, id: &str| {
        cluster
            .cli(&["message", "get", id, "-o", "json"])
            .success()
            .json()
    };
    let (first, last) = (&acked[0].0.message_id, &acked[acked.len() - 1].0.message_id);
    let found = [by_id(&cluster, first), by_id(&cluster, last)];
    cluster.terminate_broker("broker-a");
    let broker = cluster.broker_mut("broker-a");
    broker.process().args_mut().push("--rebuild-index".into());
    cluster.restart_broker("broker-a").await;
    cluster.broker_mut("broker-a").process().args_mut().pop();
    assert!(
        contents(&addr, topic, queues).await == served,
        "a rebuild of the index serves other queues than the restart after the kill"
    );
    assert_eq!(
        [by_id(&cluster, first), by_id(&cluster, last)],
        found,
        "a rebuild of the index finds other records by id"
    );

    // The broker keeps working where each queue ended.
    let producer = Producer::connect(cluster.client_config())
        .await
        .expect("producer");
    let r = producer
        .send(Message::new(topic, "after restart"))
        .await
        .expect("send after restart");
    assert_eq!(
        r.offset, ends[r.queue_id as usize],
        "a new send must land at the end of queue {}",
        r.queue_id
    );
}

/// A message body of `len` bytes, printable.
fn body(rng: &mut impl Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.gen_range(b'a'..=b'z')).collect()
}

/// One truncation case: copy the data dir, cut the last segment at `cut`,
/// start a broker on the copy and check what it serves.
struct TornCase<'a> {
    src: &'a std::path::Path,
    last_path_rel: std::path::PathBuf,
    sealed: &'a [RecordInfo],
    last: &'a [RecordInfo],
    /// The last segment's file before any cut.
    last_bytes: &'a [u8],
    topic: &'a str,
    queues: i32,
}

impl TornCase<'_> {
    async fn run(&self, cluster: &mut Cluster, case: usize, cut: u64) {
        let dir = cluster.dir().join(format!("case-{case}"));
        commitlog::copy_dir(self.src, &dir);
        let seg = dir.join(&self.last_path_rel);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let whole: Vec<&RecordInfo> = self.last.iter().filter(|r| r.end() <= cut).collect();
        let boundary = whole.last().map(|r| r.end()).unwrap_or(0);

        let name = "torn";
        let spec = BrokerSpec::new(name)
            .env("STORE__SEGMENT_BYTES", "65536")
            .data_dir(&dir);
        let addr = cluster.add_broker(spec).await.addr.clone();
        let len = std::fs::metadata(&seg).unwrap().len();
        // Zeros after the last whole record are the preallocation (or a torn record's first
        // bytes that happen to be zero): kept. Anything else is cut off.
        let zeros = self.last_bytes[boundary as usize..cut as usize]
            .iter()
            .all(|&b| b == 0);
        let expected_len = if zeros { cut } else { boundary };
        assert_eq!(
            len, expected_len,
            "case {case}: cut at {cut}, the segment should end at the last whole record \
             ({boundary}) or in zeros after it"
        );

        let mut expected: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
        for r in self.sealed.iter().chain(whole.iter().copied()) {
            expected
                .entry(r.queue_id as i32)
                .or_default()
                .push(&r.message_id);
        }
        // Read the queues concurrently (the broker is a debug build; this halves the wait).
        let reads = (0..self.queues).map(|q| rpc::queue_contents(&addr, self.topic, q));
        for (q, got) in futures::future::join_all(reads)
            .await
            .into_iter()
            .enumerate()
        {
            let q = q as i32;
            let got: Vec<String> = got.into_iter().map(|(id, _, _)| id).collect();
            let want = expected.get(&q).cloned().unwrap_or_default();
            assert_eq!(got, want, "case {case}: cut at {cut} (boundary {boundary}): queue {q} serves the wrong messages");
        }
        let mut client = rpc::messaging(&addr);
        let m = rpc::message(self.topic, 0, format!("after cut {cut}"));
        let id = rpc::id_of(&m);
        let resp = rpc::send(&mut client, vec![m]).await;
        assert_eq!(
            rpc::code(resp.status.as_ref()),
            Code::Ok as i32,
            "case {case}: send after recovery: {resp:?}"
        );
        let next = expected.get(&0).map_or(0, Vec::len) as i64;
        assert_eq!(
            resp.entries[0].offset, next,
            "case {case}: the new message must get the next offset of queue 0"
        );
        let q0 = rpc::queue_contents(&addr, self.topic, 0).await;
        assert_eq!(
            q0.last().map(|(i, o, _)| (i.as_str(), *o)),
            Some((id.as_str(), next)),
            "case {case}: the new message is not readable"
        );
        cluster.remove_broker(name);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_recovers_to_last_whole_record() {
    let seed: u64 = std::env::var("APOGEE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!(
        "torn_tail_recovers_to_last_whole_record: seed {seed} (set APOGEE_TEST_SEED to replay)"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::builder()
        .broker(BrokerSpec::new("torn-src").env("STORE__SEGMENT_BYTES", "65536"))
        .start()
        .await;
    let (topic, queues) = ("torn", 2);
    cluster.create_topic(topic, queues).await;
    let src = cluster.broker("torn-src").data_dir.clone();
    let addr = cluster.broker("torn-src").addr.clone();

    // Fill until there are a few sealed segments and a well-filled last one.
    let mut client = rpc::messaging(&addr);
    let mut sent = 0;
    loop {
        let batch: Vec<v2::Message> = (0..8)
            .map(|i| {
                let len = rng.gen_range(20..1500);
                rpc::message(topic, (sent / 8 + i) % queues, body(&mut rng, len))
            })
            .collect();
        let resp = rpc::send(&mut client, batch).await;
        assert_eq!(
            rpc::code(resp.status.as_ref()),
            Code::Ok as i32,
            "fill send: {resp:?}"
        );
        sent += 8;
        let segs = commitlog::segments(&src);
        let last_len = commitlog::records_len(&std::fs::read(&segs.last().unwrap().1).unwrap());
        if (sent >= 300 && segs.len() >= 3 && last_len >= 40_000) || sent >= 4_000 {
            break;
        }
    }
    cluster.kill_broker("torn-src");

    let segs = commitlog::segments(&src);
    assert!(segs.len() >= 2, "64 KiB segments should roll: {segs:?}");
    let mut sealed = Vec::new();
    for (_, path) in &segs[..segs.len() - 1] {
        sealed.extend(commitlog::parse_segment(&std::fs::read(path).unwrap()));
    }
    let (_, last_path) = segs.last().unwrap();
    let last_bytes = std::fs::read(last_path).unwrap();
    let last = commitlog::parse_segment(&last_bytes);
    let total = sealed.len() + last.len();
    assert_eq!(
        total, sent as usize,
        "the log should hold every message sent"
    );
    assert!(
        sealed.iter().chain(&last).all(|r| r.topic == topic),
        "only test messages are expected in the log"
    );
    println!(
        "{sent} messages in {} segments; the last has {} records, {} bytes",
        segs.len(),
        last.len(),
        last_bytes.len()
    );

    let len = last_bytes.len() as u64;
    let mid = &last[last.len() / 2];
    let end = last.last().unwrap().end();
    let mut cuts = vec![
        0,
        5,
        mid.pos,
        mid.pos + 1,
        mid.end() - 1,
        end - 1,
        end,
        len - 1,
        len,
    ];
    while cuts.len() < 57 {
        cuts.push(rng.gen_range(0..=len));
    }
    let case = TornCase {
        src: &src,
        last_path_rel: last_path.strip_prefix(&src).unwrap().to_path_buf(),
        sealed: &sealed,
        last: &last,
        last_bytes: &last_bytes,
        topic,
        queues,
    };
    // A fresh port per case: re-binding one port dozens of times could race
    // with an outgoing connection that picked it as its ephemeral port.
    let started = Instant::now();
    for (i, cut) in cuts.iter().enumerate() {
        case.run(&mut cluster, i, *cut).await;
    }
    println!("{} truncation cases in {:?}", cuts.len(), started.elapsed());
}

#[tokio::test]
async fn damage_before_the_flushed_end_stops_the_broker_with_a_clear_error() {
    let spec = || {
        BrokerSpec::new("damaged")
            .env("STORE__FLUSH", "sync")
            .env("STORE__SEGMENT_BYTES", "65536")
    };
    let mut cluster = Cluster::builder().broker(spec()).start().await;
    let topic = "damaged";
    cluster.create_topic(topic, 1).await;
    let addr = cluster.broker("damaged").addr.clone();
    let mut client = rpc::messaging(&addr);
    let mut sent = Vec::new();
    // Two segments, the last with a few records.
    for i in 0..130 {
        let m = rpc::message(topic, 0, vec![b'a' + (i % 26) as u8; 600]);
        sent.push(rpc::id_of(&m));
        let resp = rpc::send(&mut client, vec![m]).await;
        assert_eq!(rpc::code(resp.status.as_ref()), Code::Ok as i32, "{resp:?}");
    }
    cluster.kill_broker("damaged");
    let data_dir = cluster.broker("damaged").data_dir.clone();
    let segs = commitlog::segments(&data_dir);
    let (base, last_path) = segs.last().unwrap().clone();
    let original = std::fs::read(&last_path).unwrap();
    let records = commitlog::parse_segment(&original);
    assert!(
        segs.len() >= 2 && records.len() >= 3,
        "{} segments, {} records in the last",
        segs.len(),
        records.len()
    );

    // Flip one body byte of the second record of the last segment: acknowledged
    // (fsynced) records follow it, so this is damage, not a torn write.
    let mut damaged = original.clone();
    let at = (records[1].end() - 10) as usize;
    damaged[at] ^= 0x55;
    std::fs::write(&last_path, &damaged).unwrap();
    let (status, log) = cluster
        .broker_start_failure(spec().data_dir(&data_dir))
        .await;
    assert!(
        !status.success(),
        "the broker must fail on a damaged log:\n{log}"
    );
    let offset = (base + records[1].pos).to_string();
    assert!(
        log.contains("corrupt") && log.contains(&offset),
        "the error must say the log is corrupt at log offset {offset}:\n{log}"
    );
    assert_eq!(
        std::fs::read(&last_path).unwrap(),
        damaged,
        "refusing to start must leave the log untouched"
    );

    // Repaired, the broker starts and serves everything.
    std::fs::write(&last_path, &original).unwrap();
    cluster.restart_broker("damaged").await;
    let served: Vec<String> = rpc::queue_contents(&addr, topic, 0)
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(
        served, sent,
        "after the repair every message must be served in order"
    );
}
