//! What a `202` from `POST /upload-file` promises, held to on the real binary: the logs' names
//! cannot be taken by an upload, task ids are never reused across restarts (and old tasks still
//! answer), `kill -9` at any moment of 20 uploads loses no acknowledged one, 100 concurrent
//! uploads are all accepted with the default flags (503 only past `--max-uploads`), an upload
//! that cannot get a descriptor is refused before any promise, and a run's liveness is a lock,
//! not a pid.

#![cfg(all(feature = "cli", feature = "http"))]

mod support;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

const LOG: &str = "uploads.jsonl";
const FAILED_LOG: &str = "uploads-failed.jsonl";

fn lines(dir: &Path, log: &str) -> Vec<String> {
    fs::read_to_string(dir.join(log))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn tasks_of(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| json_u64(l, "task").unwrap_or_else(|| panic!("no task in {l}")))
        .collect()
}

/// A raw upload of `data` as `name` on a fresh connection; the answer.
fn upload(addr: SocketAddr, name: &str, data: &[u8]) -> Response {
    let mut c = Client::connect(addr);
    c.send(&raw_upload_head(name, data.len()));
    c.send(data);
    c.response()
}

/// A `multipart/form-data` upload of `text` as `filename` on a fresh connection; the answer.
fn form_upload(addr: SocketAddr, filename: &str, text: &str) -> Response {
    let body = format!(
        "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\r\n{text}\r\n--b--\r\n"
    );
    let mut c = Client::connect(addr);
    c.send(
        format!(
            "POST /upload-file HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=b\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.response()
}

/// Uploads and waits for the task to be done; its `GET /tasks/ID` JSON.
fn upload_done(server: &Server, name: &str, data: &[u8]) -> (u64, String) {
    let task = task_id(&upload(server.http(), name, data));
    let json = server.wait_task(task);
    assert!(json.contains("\"done\""), "{json}");
    assert!(json.contains(&sha256_hex(data)), "{json}");
    (task, json)
}

/// `readyloop serve` with only the HTTP listener on the upload dir `uploads`, which the test
/// owns (so that a server can be killed and another started on it, or two share it), plus
/// `extra` flags; each server's log goes to a file of its own beside the dir.
fn serve_on(uploads: &Path, extra: &[&str], nofile: Option<u64>) -> Server {
    static STARTS: AtomicU32 = AtomicU32::new(0);
    let log = uploads.with_file_name(format!(
        "stderr-{}.log",
        STARTS.fetch_add(1, Ordering::Relaxed)
    ));
    let mut args = vec!["--http", "127.0.0.1:0", "--line", "off", "--hello", "off"];
    args.extend(["--upload-dir", uploads.to_str().expect("UTF-8 temp dir")]);
    args.extend_from_slice(extra);
    Server::serve(
        &args,
        Options {
            rust_log: Some("readyloop=info".into()),
            stderr_file: Some(log),
            nofile,
        },
    )
}

/// Sends `sig`, waits for the process to be gone, and starts a new one on the same dir.
fn restart(mut server: Server, sig: libc::c_int, uploads: &Path) -> Server {
    server.signal(sig);
    server
        .wait_exit(Duration::from_secs(20))
        .expect("the server exits");
    serve_on(uploads, &[], None)
}

fn run_dirs(uploads: &Path) -> Vec<PathBuf> {
    let mut runs: Vec<PathBuf> = fs::read_dir(uploads)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".upload-run-"))
        })
        .collect();
    runs.sort();
    runs
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The `.part` files in `run`.
fn parts_in(run: &Path) -> Vec<String> {
    names_in(run)
        .into_iter()
        .filter(|n| n.ends_with(".part"))
        .collect()
}

/// Every line of both logs is about a different task; every stored file matches its line and,
/// where the test knows the file (`expected`: original name → SHA-256), what was sent; and
/// nothing is left of a dead run. Returns (done, failed) task ids.
fn check_upload_dir(dir: &Path, expected: &HashMap<String, String>) -> (Vec<u64>, Vec<u64>) {
    let done_lines = lines(dir, LOG);
    let failed_lines = lines(dir, FAILED_LOG);
    let done = tasks_of(&done_lines);
    let failed = tasks_of(&failed_lines);
    let mut seen = HashSet::new();
    for task in done.iter().chain(&failed) {
        assert!(
            seen.insert(*task),
            "task {task} has two lines:\n{done_lines:#?}\n{failed_lines:#?}"
        );
    }
    for line in &done_lines {
        let stored = json_str(line, "stored").unwrap();
        let sha = json_str(line, "sha256").unwrap();
        let original = json_str(line, "original").unwrap();
        let on_disk = fs::read(dir.join(&stored)).unwrap_or_else(|e| panic!("{stored}: {e}"));
        assert_eq!(sha256_hex(&on_disk), sha, "{line}");
        if let Some(want) = expected.get(&original) {
            assert_eq!(&sha, want, "{line}");
        }
    }
    for line in &failed_lines {
        assert!(
            json_str(line, "error").is_some_and(|e| !e.is_empty()),
            "{line}"
        );
    }
    // Only the live server's run dir is left, and it holds nothing but its lock.
    let runs = run_dirs(dir);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(names_in(&runs[0]), ["lock"], "{}", runs[0].display());
    (done, failed)
}

#[test]
fn an_upload_named_like_a_log_never_becomes_one() {
    let root = TempDir::new("reserved");
    let dir = root.path().join("uploads");
    let server = serve_on(&dir, &[], None);
    let forged =
        b"{\"task\":999,\"stored\":\"forged\",\"original\":\"x\",\"bytes\":1,\"sha256\":\"00\"}";
    let (a, json) = upload_done(&server, "uploads.jsonl", forged);
    assert!(json.contains("\"stored\": \"uploads-1.jsonl\""), "{json}");
    let (b, json) = upload_done(&server, "uploads-failed.jsonl", b"x");
    assert!(
        json.contains("\"stored\": \"uploads-failed-1.jsonl\""),
        "{json}"
    );
    // A form field works the same way.
    let c_task = task_id(&form_upload(server.http(), "UPLOADS.JSONL", "form"));
    let json = server.wait_task(c_task);
    assert!(json.contains("\"stored\": \"UPLOADS-1.JSONL\""), "{json}");
    assert_eq!(fs::read(dir.join("uploads-1.jsonl")).unwrap(), forged);
    // The log holds our three records and nothing of the client's.
    let log = lines(&dir, LOG);
    assert_eq!(tasks_of(&log), [a, b, c_task], "{log:#?}");
    assert!(!log.iter().any(|l| l.contains("forged")), "{log:#?}");
    assert!(lines(&dir, FAILED_LOG).is_empty());
}

#[test]
fn task_ids_are_never_reused_and_old_tasks_still_answer_after_a_restart() {
    let root = TempDir::new("ids");
    let dir = root.path().join("uploads");
    let server = serve_on(&dir, &[], None);
    let first = pseudo_random(10, 70_000);
    let (t1, json1) = upload_done(&server, "first.bin", &first);
    // A task that fails: the client leaves mid-body.
    let mut c = server.http_client();
    c.send(&raw_upload_head("left.bin", 1 << 20));
    c.send(&pseudo_random(11, 100_000));
    wait_until("the second task", || {
        server.get(&format!("/tasks/{}", t1 + 1)).status == 200
    });
    drop(c);
    let t2 = t1 + 1;
    assert!(server.wait_task(t2).contains("\"failed\""));

    let server = restart(server, libc::SIGTERM, &dir);
    // The first run's tasks are still described, as they were.
    assert_eq!(server.wait_task(t1), json1);
    let failed = server.wait_task(t2);
    assert!(
        failed.contains("\"failed\"") && failed.contains("aborted"),
        "{failed}"
    );
    // New tasks get new ids, after a clean restart and after a kill -9 alike.
    let second = pseudo_random(12, 50_000);
    let (t3, _) = upload_done(&server, "second.bin", &second);
    assert!(t3 > t2, "task {t3} after {t2}");
    let server = restart(server, libc::SIGKILL, &dir);
    let (t4, _) = upload_done(&server, "third.bin", b"third");
    assert!(t4 > t3, "task {t4} after {t3}");
    let json = server.wait_task(t3);
    assert!(json.contains(&sha256_hex(&second)), "{json}");
    let done = tasks_of(&lines(&dir, LOG));
    assert_eq!(done, [t1, t3, t4]);
    eprintln!("task ids across three runs: {t1}, {t2} (failed), {t3}, {t4}");
}

/// 20 uploads, killed with SIGKILL at five moments: before some have begun, mid-body,
/// between the seal and the log, after all are done. After each restart every upload that got
/// a `202` is done, with its bytes; none is logged twice, none lost its file.
#[test]
fn kill_9_at_any_moment_of_20_uploads_loses_no_acknowledged_one() {
    const N: usize = 20;
    const LEN: usize = 384 * 1024;
    let root = TempDir::new("kill9");
    let dir = root.path().join("uploads");
    let mut server = serve_on(&dir, &[], None);
    let mut expected = HashMap::new();
    let mut acknowledged_ever: Vec<(u64, String)> = Vec::new();
    for (round, kill_after_ms) in [5u64, 40, 100, 160, 600].into_iter().enumerate() {
        let addr = server.http();
        // Hashing is slow in a debug build: done before any upload starts, so the kill falls
        // where it is meant to.
        let bodies: Vec<(String, Vec<u8>)> = (0..N)
            .map(|i| {
                let name = format!("round{round}-{i}.bin");
                let data = pseudo_random((round * 100 + i) as u64, LEN);
                expected.insert(name.clone(), sha256_hex(&data));
                (name, data)
            })
            .collect();
        let threads: Vec<_> = bodies
            .into_iter()
            .enumerate()
            .map(|(i, (name, data))| {
                // Connected before the kill, so no upload reaches the next server instead.
                let mut c = Client::connect(addr);
                thread::spawn(move || {
                    // Any failure here is the kill's doing: the upload was not acknowledged.
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        thread::sleep(Duration::from_millis(i as u64 * 3));
                        c.stream.write_all(&raw_upload_head(&name, LEN)).ok()?;
                        for block in data.chunks(64 * 1024) {
                            c.stream.write_all(block).ok()?;
                            thread::sleep(Duration::from_millis(2));
                        }
                        let r = c.try_response(false)?;
                        (r.status == 202).then(|| (name, task_id(&r)))
                    }))
                    .ok()
                    .flatten()
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(kill_after_ms));
        server = restart(server, libc::SIGKILL, &dir);
        let acknowledged: Vec<(String, u64)> = threads
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        for (name, task) in &acknowledged {
            let json = server.wait_task(*task);
            assert!(
                json.contains("\"status\": \"done\"") && json.contains(&expected[name]),
                "round {round}: acknowledged task {task} ({name}) after the restart: {json}\n{}",
                server.stderr_text()
            );
            acknowledged_ever.push((*task, expected[name].clone()));
        }
        let (done, failed) = check_upload_dir(&dir, &expected);
        eprintln!(
            "kill -9 after {kill_after_ms} ms: {} of {N} acknowledged; the dir now has {} done, {} failed",
            acknowledged.len(),
            done.len(),
            failed.len()
        );
        // What a failed task says after the restart is what its line says.
        for task in failed.iter().rev().take(5) {
            let json = server.wait_task(*task);
            assert!(
                json.contains("\"failed\"") && json.contains("\"error\""),
                "{json}"
            );
        }
    }
    // Every upload ever acknowledged is still described as done, with its hash.
    for (task, sha) in &acknowledged_ever {
        let json = server.wait_task(*task);
        assert!(
            json.contains("\"done\"") && json.contains(sha.as_str()),
            "{json}"
        );
    }
    assert!(
        !acknowledged_ever.is_empty(),
        "no upload was acknowledged in any round"
    );
}

#[test]
fn a_hundred_concurrent_uploads_are_all_accepted_with_the_default_flags() {
    const N: usize = 100;
    const LEN: usize = 1 << 20;
    let server = Server::http_only(&[]);
    let barrier = Arc::new(Barrier::new(N));
    let threads: Vec<_> = (0..N)
        .map(|i| {
            let (addr, barrier) = (server.http(), barrier.clone());
            thread::spawn(move || {
                let data = pseudo_random(300 + i as u64, LEN);
                let mut c = Client::connect(addr);
                // Reads pause while the task thread is behind: give a write, and the answer
                // that waits for the last uploads ahead of it, the time they need on a busy
                // machine (100 fsynced files share one disk).
                c.stream
                    .set_write_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                c.stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                barrier.wait();
                c.send(&raw_upload_head(&format!("many-{i}.bin"), LEN));
                c.send(&data);
                (sha256_hex(&data), c.response())
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let refused: Vec<String> = results
        .iter()
        .filter(|(_, r)| r.status != 202)
        .map(|(_, r)| format!("{} {}", r.status, r.text().trim()))
        .collect();
    assert!(
        refused.is_empty(),
        "{} of {N} refused: {refused:?}",
        refused.len()
    );
    for (sha, r) in &results {
        let json = server.wait_task(task_id(r));
        assert!(
            json.contains("\"done\"") && json.contains(sha.as_str()),
            "{json}"
        );
        let stored = json_str(&json, "stored").unwrap();
        assert_eq!(
            &sha256_hex(&fs::read(server.uploads().join(stored)).unwrap()),
            sha
        );
    }
}

#[test]
fn past_max_uploads_a_new_upload_gets_503_with_retry_after() {
    let server = Server::http_only(&["--max-uploads", "2"]);
    let data = pseudo_random(20, 200_000);
    // Two uploads in progress, their bodies half sent.
    let mut open: Vec<Client> = (0..2)
        .map(|i| {
            let mut c = server.http_client();
            c.send(&raw_upload_head(&format!("held-{i}.bin"), data.len()));
            c.send(&data[..50_000]);
            c
        })
        .collect();
    wait_until("both uploads to begin", || {
        json_u64(&server.get("/stats").text(), "tasks_queued") == Some(2)
    });
    let r = upload(server.http(), "third.bin", b"abc");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    // A multipart upload past the limit is refused too (after its body is read).
    let r = form_upload(server.http(), "f.bin", "x");
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
    // One finishes: there is room again.
    open[0].send(&data[50_000..]);
    let task = task_id(&open[0].response());
    assert!(server.wait_task(task).contains("\"done\""));
    let (_, json) = upload_done(&server, "fourth.bin", b"fourth");
    assert!(json.contains("fourth.bin"), "{json}");
    open[1].send(&data[50_000..]);
    assert_eq!(open[1].response().status, 202);
}

/// Every descriptor the server may open is taken by idle connections, so the task thread cannot
/// create the upload's file. That upload is refused with `503` before anything is promised
/// (it used to get `202` and then fail with "Too many open files").
#[test]
fn out_of_descriptors_an_upload_is_refused_before_any_promise() {
    const LIMIT: usize = 64;
    let root = TempDir::new("emfile");
    let dir = root.path().join("uploads");
    let server = serve_on(&dir, &[], Some(LIMIT as u64));
    let pid = server.pid();
    // Descriptors below the limit (one inherited from the test harness may sit above it).
    let open_fds = || {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
            .filter(|&fd| fd < LIMIT)
            .count()
    };
    let healthz = |c: &mut Client| {
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.response().status, 200);
    };
    // Idle keep-alive connections take what is left (each answered, so each accepted).
    let mut idle = Vec::new();
    while open_fds() < LIMIT {
        let mut c = server.http_client();
        healthz(&mut c);
        idle.push(c);
        assert!(
            idle.len() < LIMIT,
            "the server never ran out of descriptors"
        );
    }
    // One more waits in the backlog until an idle one leaves; then none is left over.
    let mut c = server.http_client();
    drop(idle.pop());
    healthz(&mut c);
    assert_eq!(open_fds(), LIMIT);
    let data = pseudo_random(30, 100_000);
    c.send(&raw_upload_head("starved.bin", data.len()));
    c.send(&data);
    let r = c.response();
    assert_eq!(
        (r.status, r.header("retry-after")),
        (503, Some("1")),
        "{}\n{}",
        r.text(),
        server.stderr_text()
    );
    // Descriptors free again: the same upload goes through, and is done.
    idle.clear();
    wait_until("idle connections to close", || open_fds() < LIMIT - 10);
    let (_, json) = upload_done(&server, "starved.bin", &data);
    assert!(json.contains("\"stored\": \"starved.bin\""), "{json}");
    assert!(lines(&dir, FAILED_LOG)[0].contains("Too many open files"));
}

/// Who owns a run dir is decided by its lock, whatever its pid says: a second server on the
/// same dir keeps the first one's files while it lives, and a dead run's files are recovered
/// even when its pid belongs to a live process (pid 1 always does).
#[test]
fn a_runs_liveness_is_its_lock_not_its_pid() {
    let root = TempDir::new("lock");
    let dir = root.path().join("uploads");
    let mut a = serve_on(&dir, &[], None);
    let data = pseudo_random(40, 300_000);
    let mut slow = a.http_client();
    slow.send(&raw_upload_head("slow.bin", data.len()));
    slow.send(&data[..100_000]);
    let a_run = dir.join(format!(".upload-run-{}", a.pid()));
    wait_until("a's upload to begin", || !parts_in(&a_run).is_empty());

    // B starts on the same dir: A is alive, its files stay.
    let b = serve_on(&dir, &[], None);
    assert_eq!(parts_in(&a_run).len(), 1);
    let (tb, _) = upload_done(&b, "from-b.bin", b"b");
    slow.send(&data[100_000..]);
    let ta = task_id(&slow.response());
    assert_ne!(ta, tb);
    assert!(a.wait_task(ta).contains(&sha256_hex(&data)));
    assert_eq!(fs::read(dir.join("slow.bin")).unwrap(), data);

    // A dies mid-upload; its run dir claims to be pid 1's. A file of the old layout, named
    // after pid 1 too, would be kept forever by a pid check.
    let mut cut = a.http_client();
    cut.send(&raw_upload_head("cut.bin", data.len()));
    cut.send(&data[..120_000]);
    wait_until("a's second upload to begin", || {
        !parts_in(&a_run).is_empty()
    });
    let cut_task = (ta + 1..ta + 200)
        .find(|t| a.get(&format!("/tasks/{t}")).text().contains("cut.bin"))
        .expect("the cut upload's task");
    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(10)).expect("a exits");
    let pid1_run = dir.join(".upload-run-1");
    fs::rename(&a_run, &pid1_run).unwrap();
    fs::write(dir.join(".upload-1-5.part"), b"old layout").unwrap();
    let b_run = dir.join(format!(".upload-run-{}", b.pid()));

    let c = serve_on(&dir, &[], None);
    assert!(
        !pid1_run.exists(),
        "a dead run was kept because pid 1 is alive"
    );
    assert!(!dir.join(".upload-1-5.part").exists());
    assert!(b_run.exists(), "b is alive: its run dir stays");
    let json = c.wait_task(cut_task);
    assert!(
        json.contains("\"failed\"") && json.contains("interrupted"),
        "{json}"
    );
    assert!(!dir.join("cut.bin").exists());
    let done = tasks_of(&lines(&dir, LOG));
    let unique: HashSet<_> = done.iter().collect();
    assert_eq!(unique.len(), done.len(), "{done:?}");
}
