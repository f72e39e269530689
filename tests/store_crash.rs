//! Crash safety of the SQLite store: `kill -9` under a concurrent write load
//! must not lose a write that was acknowledged.
//!
//! The test re-executes its own binary in "writer mode" (selected by an
//! environment variable). The child writes through the `Store` with many
//! concurrent tasks and prints one `ACK` line per acknowledged write; the
//! parent SIGKILLs it mid-load, reopens the database and checks every
//! acknowledged write is there. Two rounds, so the second one also runs on a
//! database recovered from a crash.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rk3s::store::Store;
use rk3s::store::sqlite::{SqliteOptions, SqliteStore};

const WRITER_ENV: &str = "RK3S_STORE_CRASH_WRITER";
const ROUND_ENV: &str = "RK3S_STORE_CRASH_ROUND";
const TEST_NAME: &str = "kill_9_loses_no_acknowledged_write";
const TASKS: usize = 32;

/// A 1 KiB value that says which key and which generation it is.
fn value_for(key: &str, generation: u32) -> Bytes {
    let mut v = format!("{key}|{generation}|").into_bytes();
    v.resize(1024, b'.');
    Bytes::from(v)
}

fn generation_of(value: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(value).ok()?;
    text.split('|').nth(1)?.parse().ok()
}

/// Child: create then update keys from many tasks until killed.
fn writer_mode(db: &Path, round: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = SqliteStore::open(db, SqliteOptions::default()).expect("open store");
        let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let store = store.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let key = format!("/crash/r{round}/t{t}/k{i}");
                    let kv = store
                        .create(&key, value_for(&key, 0))
                        .await
                        .expect("create");
                    let line = format!("ACK {key} {} 0\n", kv.mod_revision);
                    out.lock()
                        .expect("stdout")
                        .write_all(line.as_bytes())
                        .expect("write");
                    let kv = store
                        .update(&key, kv.mod_revision, value_for(&key, 1))
                        .await
                        .expect("update");
                    let line = format!("ACK {key} {} 1\n", kv.mod_revision);
                    out.lock()
                        .expect("stdout")
                        .write_all(line.as_bytes())
                        .expect("write");
                    i += 1;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

struct Ack {
    revision: i64,
    generation: u32,
}

/// Runs one writer child, kills it after `min_acks` acknowledgements, and
/// returns every acknowledgement it printed.
fn run_and_kill(db: &Path, round: u32, min_acks: usize) -> HashMap<String, Ack> {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(WRITER_ENV, db)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("ACK ") && tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines.len() < min_acks && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(line);
        }
    }
    assert!(
        lines.len() >= min_acks,
        "writer produced only {} acks",
        lines.len()
    );
    // Let the load run on a little so the kill lands mid-batch.
    std::thread::sleep(Duration::from_millis(37));
    child.kill().expect("SIGKILL writer");
    let status = child.wait().expect("wait writer");
    assert!(!status.success(), "writer was killed, not finished");
    reader.join().expect("reader thread");
    lines.extend(rx.try_iter());

    let mut acks = HashMap::new();
    for line in lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [_, key, rev, generation] = parts[..] else {
            panic!("bad ack line {line:?}");
        };
        let ack = Ack {
            revision: rev.parse().expect("revision"),
            generation: generation.parse().expect("generation"),
        };
        let keep = acks
            .get(key)
            .is_none_or(|old: &Ack| old.generation < ack.generation);
        if keep {
            acks.insert(key.to_string(), ack);
        }
    }
    acks
}

/// Every acknowledged write is in the reopened store, with its value (or a
/// newer one of the same key), and the revision counter did not go back.
async fn verify(db: &Path, acks: &HashMap<String, Ack>) {
    let store = SqliteStore::open(db, SqliteOptions::default()).expect("reopen");
    let max_acked = acks.values().map(|a| a.revision).max().unwrap_or(0);
    assert!(store.current_revision() >= max_acked);
    for (key, ack) in acks {
        let kv = store
            .get(key, None)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged key {key} lost"));
        assert!(
            kv.mod_revision >= ack.revision,
            "{key}: {} < {}",
            kv.mod_revision,
            ack.revision
        );
        let generation = generation_of(&kv.value).expect("value format");
        assert!(
            generation >= ack.generation,
            "{key}: generation {generation} < {}",
            ack.generation
        );
        assert_eq!(kv.value, value_for(key, generation), "{key}: value intact");
        if kv.mod_revision == ack.revision {
            assert_eq!(generation, ack.generation);
        }
    }
    store.close().await;
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rk3s-store-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    if let Some(db) = std::env::var_os(WRITER_ENV) {
        let round = std::env::var(ROUND_ENV)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        writer_mode(Path::new(&db), round);
        return;
    }
    let dir = scratch_dir();
    let db = dir.join("state.db");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut all = HashMap::new();
    for round in 0..2 {
        let acks = run_and_kill(&db, round, 1500);
        all.extend(acks);
        rt.block_on(verify(&db, &all));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
