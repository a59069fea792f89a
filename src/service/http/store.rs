//! Background storage of uploaded files. The event loop must never block, so it never touches
//! the disk: it hands each upload's body, chunk by chunk as the chunks arrive, to one of a few
//! task threads, and learns how the upload ended through a `notify` callback (which the loop
//! turns into a channel message plus a `mio::Waker` wake-up). A task thread writes the chunks to a
//! temporary file `.upload-PID-TASK.part` in the upload dir while hashing them (SHA-256); when
//! the body is complete it fsyncs the file, gives it its final name without ever replacing an
//! existing file (`link(2)` to `name.ext`, `name-1.ext`, `name-2.ext`... then `unlink` of the
//! temporary name, then an fsync of the dir), and only then appends one JSON line to
//! `uploads.jsonl` and fsyncs that. So a line in `uploads.jsonl` always names a file that is
//! fully on disk; any error fails the task with its text, and leaves neither file nor line.
//!
//! Life of one upload, as the loop sees it:
//! 1. [`UploadStore::begin`] → a [`TaskId`] (status `Queued`, which the loop records itself).
//!    The task is pinned to task thread `task % threads`, so its messages stay in order.
//! 2. [`UploadStore::write`] for each chunk of the body, as it arrives.
//! 3. [`UploadStore::finish`] when the body is complete (the HTTP layer answers `202` now), or
//!    [`UploadStore::abort`] when the client went away first.
//! 4. `notify` reports `Running` once the task thread has started on the task (its temporary file
//!    exists), then `Done` or `Failed`.
//!
//! Every call is non-blocking: `begin`, `write` and `finish` use `try_send` on the task thread's
//! bounded queue and hand the message back in [`QueueFull`] when it is full, so the loop can
//! stop reading that connection (TCP back-pressure reaches the client) and retry on a later
//! iteration. `abort` cannot be refused, since a refused abort would leak a temporary file, so
//! it bypasses the queue; see [`UploadStore::abort`] for how it still stays in order.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Log target, so `RUST_LOG=readyloop::upload=trace` shows just this module.
const LOG_TARGET: &str = "readyloop::upload";

/// The log of stored files, one JSON object per line, in the upload dir.
pub const LOG_FILE: &str = "uploads.jsonl";

/// Temporary files are `.upload-PID-TASK.part`; `start` removes leftovers of this shape.
const TMP_PREFIX: &str = ".upload-";
const TMP_SUFFIX: &str = ".part";

/// How many `name-N.ext` candidates are tried before the task fails (bounds the probing when a
/// directory is full of same-named uploads).
const MAX_NAME_SUFFIX: u32 = 10_000;

/// Task ids start at 1 and grow by one per accepted `begin`; unique within a process.
pub type TaskId = u64;

/// Where a task is. `Queued` is never sent through `notify`: `begin` returning `Ok` means it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    /// Accepted by `begin`, not yet picked up by its task thread.
    Queued,
    /// The task thread has started on it: the body is being written to the temporary file.
    Running,
    /// Stored as `stored` (a file name in the upload dir) and logged in `uploads.jsonl`.
    Done {
        /// The file name in the upload dir.
        stored: String,
        /// Bytes stored.
        bytes: u64,
        /// SHA-256 of the content, lower-case hex.
        sha256: String,
    },
    /// Nothing stored and nothing logged; the text says why.
    Failed(String),
}

impl TaskStatus {
    /// The `status` word of `GET /tasks/ID`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Done { .. } => "done",
            TaskStatus::Failed(_) => "failed",
        }
    }
}

/// One status change, passed to `notify` on the task thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskUpdate {
    /// The task that changed.
    pub task: TaskId,
    /// Its new status.
    pub status: TaskStatus,
}

/// The chosen task thread's queue is full; the value refused is handed back for a later retry.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull<T = ()>(pub T);

impl<T> fmt::Display for QueueFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the task thread's queue is full")
    }
}

impl<T: fmt::Debug> std::error::Error for QueueFull<T> {}

/// A message on a task thread's bounded queue.
enum Job {
    Begin {
        task: TaskId,
        /// The sanitized name to store under (a `-N` suffix may be added).
        name: String,
        /// What the client called the file, for the log only.
        original: String,
    },
    Chunk {
        task: TaskId,
        data: Vec<u8>,
    },
    Finish {
        task: TaskId,
    },
    /// Wakes an idle task thread so it looks at its abort list.
    Nudge,
}

/// `(task, messages sent to the task thread before the abort)`: the abort takes effect once the
/// task thread has received that many messages, i.e. exactly where it would sit in the queue.
type AbortList = Arc<Mutex<Vec<(TaskId, u64)>>>;

/// The loop's side of the task thread pool. Deliberately not `Sync` (the `Cell`s): it belongs to the
/// loop thread, and the abort ordering relies on a single sender.
pub struct UploadStore {
    threads: Vec<ThreadHandle>,
    next_id: Cell<TaskId>,
    #[cfg(test)]
    shared: Arc<Shared>,
}

struct ThreadHandle {
    jobs: SyncSender<Job>,
    /// Messages accepted by `jobs` so far (the task thread counts the ones it received).
    sent: Cell<u64>,
    aborts: AbortList,
    thread: JoinHandle<()>,
}

/// What all task threads share.
struct Shared {
    dir: PathBuf,
    pid: u32,
    notify: Box<dyn Fn(TaskUpdate) + Send + Sync>,
    /// Serializes appends to `uploads.jsonl`, so a failed append can be truncated away.
    log_lock: Mutex<()>,
    /// Test hook: a write that would take an upload past this many bytes fails with ENOSPC.
    #[cfg(test)]
    fail_writes_after: std::sync::atomic::AtomicU64,
}

impl UploadStore {
    /// Creates `dir` if needed, removes temporary files left by a crashed run, and starts
    /// `threads` threads, each with a queue of `queue_depth` messages (see
    /// `config::DEFAULT_TASK_QUEUE`). `notify` runs on a task thread after each status change; it
    /// must be quick and must not block for long (the loop's closure sends on a channel and
    /// wakes its `Waker`).
    pub fn start(
        dir: PathBuf,
        threads: usize,
        queue_depth: usize,
        notify: impl Fn(TaskUpdate) + Send + Sync + 'static,
    ) -> io::Result<Self> {
        if threads == 0 || queue_depth == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "upload store needs at least one thread and a queue depth of at least 1",
            ));
        }
        fs::create_dir_all(&dir)?;
        let pid = std::process::id();
        let removed = remove_leftovers(&dir, pid)?;
        if removed > 0 {
            log::info!(target: LOG_TARGET, "removed {removed} leftover temporary file(s) in {}", dir.display());
        }
        let shared = Arc::new(Shared {
            dir,
            pid,
            notify: Box::new(notify),
            log_lock: Mutex::new(()),
            #[cfg(test)]
            fail_writes_after: std::sync::atomic::AtomicU64::new(u64::MAX),
        });
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let (jobs, rx) = mpsc::sync_channel(queue_depth);
            let aborts = AbortList::default();
            let task_thread = TaskThread {
                index,
                shared: Arc::clone(&shared),
                aborts: Arc::clone(&aborts),
                active: HashMap::new(),
                received: 0,
            };
            // If this fails, dropping `handles` closes the earlier queues and those threads end.
            let thread = thread::Builder::new()
                .name(format!("task-{index}"))
                .spawn(move || task_thread.run(rx))?;
            handles.push(ThreadHandle {
                jobs,
                sent: Cell::new(0),
                aborts,
                thread,
            });
        }
        Ok(UploadStore {
            threads: handles,
            next_id: Cell::new(1),
            #[cfg(test)]
            shared,
        })
    }

    /// Begins an upload that will be stored under `name` (already sanitized by the caller; a
    /// `-N` suffix is added before the extension if the name is taken). On `Err(QueueFull)` no
    /// id was used: answer `503` or retry later.
    pub fn begin(&self, name: &str) -> Result<TaskId, QueueFull> {
        self.begin_named(name, name)
    }

    /// Like `begin`, recording in `uploads.jsonl` the name the client gave (`original`, peer
    /// input kept only as a JSON-escaped string) next to the one stored.
    pub fn begin_named(&self, name: &str, original: &str) -> Result<TaskId, QueueFull> {
        let task = self.next_id.get();
        let job = Job::Begin {
            task,
            name: name.to_owned(),
            original: original.to_owned(),
        };
        self.send(task, job).map_err(|_| QueueFull(()))?;
        self.next_id.set(task + 1);
        Ok(task)
    }

    /// Queues the next chunk of `task`'s body. On `Err` the chunk comes back unwritten: stop
    /// reading that connection and offer the same chunk again on a later iteration. Chunks for a
    /// task that already failed are dropped by the task thread.
    pub fn write(&self, task: TaskId, chunk: Vec<u8>) -> Result<(), QueueFull<Vec<u8>>> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.send(task, Job::Chunk { task, data: chunk })
            .map_err(|job| match job {
                Job::Chunk { data, .. } => QueueFull(data),
                _ => QueueFull(Vec::new()),
            })
    }

    /// Marks the body complete: the task thread will fsync, name, and log the file.
    pub fn finish(&self, task: TaskId) -> Result<(), QueueFull> {
        self.send(task, Job::Finish { task })
            .map_err(|_| QueueFull(()))
    }

    /// The client went away before the body ended: the temporary file is removed and the task
    /// fails. Never refused and never blocks. The abort goes on a side list (a mutex held only
    /// for a push) tagged with the number of messages already queued for that task thread, and the
    /// task thread applies it right after receiving that many: exactly where it would have sat in
    /// the queue. So an abort after an accepted `finish` is a no-op (the upload completes), and
    /// an abort racing the task thread's `begin` cannot leak the file. A `Nudge` wakes an idle
    /// task thread; when the queue is full there is no need, as the queued messages will wake it.
    pub fn abort(&self, task: TaskId) {
        let w = self.thread_of(task);
        lock(&w.aborts).push((task, w.sent.get()));
        let _ = self.send(task, Job::Nudge);
    }

    /// Graceful shutdown: closes every queue, lets the threads finish everything already
    /// queued, and joins them. Uploads begun but neither finished nor aborted then fail (their
    /// temporary files are removed). Blocks: call it after the loop has stopped, or on a
    /// helper thread when the wait must be bounded.
    pub fn shutdown(self) {
        let threads: Vec<_> = self
            .threads
            .into_iter()
            .map(|w| {
                drop(w.jobs);
                w.thread
            })
            .collect();
        for thread in threads {
            if thread.join().is_err() {
                log::error!(target: LOG_TARGET, "a task thread panicked");
            }
        }
    }

    fn thread_of(&self, task: TaskId) -> &ThreadHandle {
        &self.threads[(task % self.threads.len() as u64) as usize]
    }

    fn send(&self, task: TaskId, job: Job) -> Result<(), Job> {
        let w = self.thread_of(task);
        match w.jobs.try_send(job) {
            Ok(()) => {
                w.sent.set(w.sent.get() + 1);
                Ok(())
            }
            Err(TrySendError::Full(job)) => Err(job),
            Err(TrySendError::Disconnected(job)) => {
                // Only after a panic in the task thread (e.g. in `notify`); retries will not help.
                log::error!(target: LOG_TARGET, "task {task}: its task thread is gone");
                Err(job)
            }
        }
    }
}

/// An upload whose body is being written.
struct Writing {
    name: String,
    original: String,
    tmp: PathBuf,
    file: File,
    hasher: Sha256,
    bytes: u64,
}

/// One task thread's state; every upload on it lives in `active` until it ends.
struct TaskThread {
    index: usize,
    shared: Arc<Shared>,
    aborts: AbortList,
    active: HashMap<TaskId, Writing>,
    /// Messages received so far; compared with an abort's position.
    received: u64,
}

impl TaskThread {
    fn run(mut self, jobs: Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            self.received += 1;
            match job {
                Job::Begin {
                    task,
                    name,
                    original,
                } => self.on_begin(task, name, original),
                Job::Chunk { task, data } => self.on_chunk(task, &data),
                Job::Finish { task } => self.on_finish(task),
                Job::Nudge => {}
            }
            self.apply_aborts();
        }
        // Every sender is gone, so every message was received and every abort is due.
        self.apply_aborts();
        let left: Vec<_> = self.active.drain().collect();
        for (task, upload) in left {
            self.fail(
                task,
                upload,
                "server shut down before the upload was complete".into(),
            );
        }
        log::debug!(target: LOG_TARGET, "task thread {} stopped", self.index);
    }

    /// Creates the temporary file; `Running` is reported once it exists (a failure to create
    /// it goes straight from `Queued` to `Failed`).
    fn on_begin(&mut self, task: TaskId, name: String, original: String) {
        let tmp = self.shared.dir.join(format!(
            "{TMP_PREFIX}{}-{task}{TMP_SUFFIX}",
            self.shared.pid
        ));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => {
                log::debug!(target: LOG_TARGET, "task {task} running on task thread {}: {}", self.index, tmp.display());
                let upload = Writing {
                    name,
                    original,
                    tmp,
                    file,
                    hasher: Sha256::new(),
                    bytes: 0,
                };
                self.active.insert(task, upload);
                self.notify(task, TaskStatus::Running);
            }
            Err(e) => {
                let reason = format!("create temporary file: {e}");
                log::warn!(target: LOG_TARGET, "task {task} failed: {reason}");
                self.notify(task, TaskStatus::Failed(reason));
            }
        }
    }

    fn on_chunk(&mut self, task: TaskId, data: &[u8]) {
        let Some(upload) = self.active.get_mut(&task) else {
            log::trace!(target: LOG_TARGET, "task {task}: dropped {} bytes (task not running)", data.len());
            return;
        };
        let written = self
            .shared
            .check_fault(upload.bytes + data.len() as u64)
            .and_then(|()| upload.file.write_all(data));
        match written {
            Ok(()) => {
                upload.hasher.update(data);
                upload.bytes += data.len() as u64;
                log::trace!(target: LOG_TARGET, "task {task} wrote {} bytes (total {})", data.len(), upload.bytes);
            }
            Err(e) => {
                if let Some(upload) = self.active.remove(&task) {
                    self.fail(task, upload, format!("write: {e}"));
                }
            }
        }
    }

    fn on_finish(&mut self, task: TaskId) {
        let Some(upload) = self.active.remove(&task) else {
            log::debug!(target: LOG_TARGET, "task {task}: finish ignored (task not running)");
            return;
        };
        let Writing {
            name,
            original,
            tmp,
            file,
            hasher,
            bytes,
        } = upload;
        let sha256 = hex(&hasher.finalize());
        match self.store(task, (&name, &original), &tmp, file, bytes, &sha256) {
            Ok(stored) => {
                log::debug!(target: LOG_TARGET, "task {task} done: {stored} ({bytes} bytes)");
                self.notify(
                    task,
                    TaskStatus::Done {
                        stored,
                        bytes,
                        sha256,
                    },
                );
            }
            Err(reason) => {
                remove_quietly(&tmp);
                log::warn!(target: LOG_TARGET, "task {task} failed: {reason}");
                self.notify(task, TaskStatus::Failed(reason));
            }
        }
    }

    /// fsync, link under a free name, unlink the temporary name, fsync the dir, log. On `Err`
    /// the final name is removed again; the caller removes the temporary one.
    fn store(
        &self,
        task: TaskId,
        (name, original): (&str, &str),
        tmp: &Path,
        file: File,
        bytes: u64,
        sha256: &str,
    ) -> Result<String, String> {
        file.sync_all().map_err(|e| format!("fsync: {e}"))?;
        drop(file);
        let dir = &self.shared.dir;
        let stored = link_unique(dir, tmp, name)?;
        let line = format!(
            "{{\"task\":{task},\"stored\":{},\"original\":{},\"bytes\":{bytes},\"sha256\":\"{sha256}\",\"time\":{}}}\n",
            json_string(&stored),
            json_string(original),
            unix_time(),
        );
        let logged = fs::remove_file(tmp)
            .map_err(|e| format!("remove temporary file: {e}"))
            .and_then(|()| sync_dir(dir).map_err(|e| format!("fsync upload dir: {e}")))
            .and_then(|()| {
                self.shared
                    .append_log(&line)
                    .map_err(|e| format!("append to {LOG_FILE}: {e}"))
            });
        if let Err(reason) = logged {
            remove_quietly(&dir.join(&stored));
            let _ = sync_dir(dir);
            return Err(reason);
        }
        Ok(stored)
    }

    /// Applies the aborts whose place in the queue has been reached.
    fn apply_aborts(&mut self) {
        let received = self.received;
        let mut due = Vec::new();
        {
            let mut list = lock(&self.aborts);
            if list.is_empty() {
                return;
            }
            list.retain(|&(task, after)| {
                let is_due = after <= received;
                if is_due {
                    due.push(task);
                }
                !is_due
            });
        }
        for task in due {
            match self.active.remove(&task) {
                Some(upload) => self.fail(
                    task,
                    upload,
                    "aborted: the client went away before the body was complete".into(),
                ),
                None => {
                    log::debug!(target: LOG_TARGET, "task {task}: abort ignored (task already ended)")
                }
            }
        }
    }

    fn fail(&self, task: TaskId, upload: Writing, reason: String) {
        drop(upload.file);
        remove_quietly(&upload.tmp);
        log::warn!(target: LOG_TARGET, "task {task} failed after {} bytes: {reason}", upload.bytes);
        self.notify(task, TaskStatus::Failed(reason));
    }

    fn notify(&self, task: TaskId, status: TaskStatus) {
        (self.shared.notify)(TaskUpdate { task, status });
    }
}

impl Shared {
    /// Appends one line and fsyncs it. Appends are serialized so that a failed one (say,
    /// ENOSPC halfway through the line) can be cut off again. The file is opened per line,
    /// so it may be rotated while the server runs. Readers should still skip a last line
    /// without a newline: a crash in the middle of an append can leave one.
    fn append_log(&self, line: &str) -> io::Result<()> {
        let _serialized = lock(&self.log_lock);
        let mut log = OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join(LOG_FILE))?;
        let before = log.metadata()?.len();
        let result = log
            .write_all(line.as_bytes())
            .and_then(|()| log.sync_data());
        if result.is_err() {
            let _ = log.set_len(before);
            let _ = log.sync_data();
        } else if before == 0 {
            // The file may be new: make its directory entry durable too.
            sync_dir(&self.dir)?;
        }
        result
    }

    /// Test hook for write errors (disk full is hard to arrange in a test); a no-op otherwise.
    fn check_fault(&self, total_after_write: u64) -> io::Result<()> {
        #[cfg(test)]
        if total_after_write
            > self
                .fail_writes_after
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "No space left on device (injected)",
            ));
        }
        let _ = total_after_write;
        Ok(())
    }
}

/// Links `tmp` as `name.ext`, else `name-1.ext`, `name-2.ext`...; returns the name taken.
/// `link(2)` fails with EEXIST instead of replacing, which `rename(2)` would do. Linux's
/// `renameat2(RENAME_NOREPLACE)` would save the `unlink`, but not every filesystem supports
/// it; a crash between `link` and `unlink` only leaves a `.part` that `start` removes.
fn link_unique(dir: &Path, tmp: &Path, original: &str) -> Result<String, String> {
    for n in 0..=MAX_NAME_SUFFIX {
        let name = candidate_name(original, n);
        match fs::hard_link(tmp, dir.join(&name)) {
            Ok(()) => return Ok(name),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("store as {name}: {e}")),
        }
    }
    Err(format!(
        "no free name for {original} after {MAX_NAME_SUFFIX} suffixes"
    ))
}

/// The `n`th candidate for `original`: `a.tar.gz`, `a.tar-1.gz`, `a.tar-2.gz`... The caller
/// sanitizes names; this only keeps the result a plain file name (no `/`, NUL, `.` or `..`)
/// and out of the dot-file namespace that holds our temporary files (a leading `.` becomes `_.`).
fn candidate_name(original: &str, n: u32) -> String {
    let mut name: String = original
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    if name.is_empty() {
        name.push_str("upload");
    } else if name.starts_with('.') {
        name.insert(0, '_');
    }
    if n == 0 {
        return name;
    }
    match name.rfind('.') {
        Some(dot) => format!("{}-{n}{}", &name[..dot], &name[dot..]),
        None => format!("{name}-{n}"),
    }
}

/// Removes `.upload-*.part` files, except those of another process that is still alive (two
/// processes serving the same upload dir must not delete each other's uploads).
fn remove_leftovers(dir: &Path, own_pid: u32) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        let Some(middle) = name
            .strip_prefix(TMP_PREFIX)
            .and_then(|rest| rest.strip_suffix(TMP_SUFFIX))
        else {
            continue;
        };
        if !entry.file_type()?.is_file() {
            continue;
        }
        let owner = middle.split_once('-').and_then(|(pid, _)| pid.parse().ok());
        if let Some(pid) = owner {
            if pid != own_pid && process_alive(pid) {
                log::debug!(target: LOG_TARGET, "kept {name}: process {pid} is alive");
                continue;
            }
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; kill(2) only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Makes a new, removed or renamed directory entry durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_quietly(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!(target: LOG_TARGET, "remove {}: {e}", path.display()),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a Vec push or `()` half done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Seconds since the epoch with microseconds, e.g. `1700000000.123456`.
fn unix_time() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", now.as_secs(), now.subsec_micros())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

use crate::codec::json::string as json_string;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    const WAIT: Duration = Duration::from_secs(10);

    /// A fresh directory under the system temp dir, removed on drop.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(tag: &str) -> Self {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let path = std::env::temp_dir().join(format!(
                "readyloop-upload-{tag}-{}-{nanos}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&path);
            TestDir(path)
        }

        fn path(&self) -> PathBuf {
            self.0.clone()
        }

        fn read(&self, name: &str) -> Vec<u8> {
            fs::read(self.0.join(name)).unwrap()
        }

        fn log_lines(&self) -> Vec<String> {
            fs::read_to_string(self.0.join(LOG_FILE))
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect()
        }

        fn part_files(&self) -> Vec<String> {
            self.names()
                .into_iter()
                .filter(|n| n.ends_with(TMP_SUFFIX))
                .collect()
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .map(|rd| {
                    rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn start(dir: &TestDir, threads: usize, depth: usize) -> (UploadStore, Receiver<TaskUpdate>) {
        let (tx, rx) = mpsc::channel();
        let store = UploadStore::start(dir.path(), threads, depth, move |u| {
            let _ = tx.send(u);
        })
        .unwrap();
        (store, rx)
    }

    /// Collects updates until every task in `tasks` has ended; returns each task's statuses.
    fn wait_ended(rx: &Receiver<TaskUpdate>, tasks: &[TaskId]) -> HashMap<TaskId, Vec<TaskStatus>> {
        let mut seen: HashMap<TaskId, Vec<TaskStatus>> = HashMap::new();
        let ended = |seen: &HashMap<TaskId, Vec<TaskStatus>>, t: &TaskId| {
            seen.get(t).is_some_and(|s| {
                matches!(
                    s.last(),
                    Some(TaskStatus::Done { .. } | TaskStatus::Failed(_))
                )
            })
        };
        while !tasks.iter().all(|t| ended(&seen, t)) {
            let u = rx.recv_timeout(WAIT).expect("task did not end in time");
            seen.entry(u.task).or_default().push(u.status);
        }
        seen
    }

    fn final_status(rx: &Receiver<TaskUpdate>, task: TaskId) -> TaskStatus {
        let statuses = wait_ended(rx, &[task]).remove(&task).unwrap();
        assert_eq!(statuses[0], TaskStatus::Running, "{statuses:?}");
        assert_eq!(statuses.len(), 2, "{statuses:?}");
        statuses[1].clone()
    }

    fn wait_running(rx: &Receiver<TaskUpdate>, task: TaskId) {
        let u = rx.recv_timeout(WAIT).unwrap();
        assert_eq!(
            u,
            TaskUpdate {
                task,
                status: TaskStatus::Running
            }
        );
    }

    /// Retries like the loop would, on later iterations.
    fn retry<T>(mut attempt: impl FnMut() -> Result<(), QueueFull<T>>) {
        let deadline = Instant::now() + WAIT;
        while attempt().is_err() {
            assert!(Instant::now() < deadline, "queue stayed full");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// A store whose single task thread parks inside `notify(Running)` of task 1 until the returned
    /// sender is used (or dropped): the queue then fills deterministically.
    fn gated_store(
        dir: &TestDir,
        depth: usize,
    ) -> (UploadStore, Receiver<TaskUpdate>, mpsc::Sender<()>) {
        let (tx, rx) = mpsc::channel();
        let (entered_tx, entered_rx) = mpsc::channel();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let gate_rx = Mutex::new(gate_rx);
        let store = UploadStore::start(dir.path(), 1, depth, move |u: TaskUpdate| {
            let park = u.task == 1 && u.status == TaskStatus::Running;
            let _ = tx.send(u);
            if park {
                let _ = entered_tx.send(());
                let _ = gate_rx.lock().unwrap().recv();
            }
        })
        .unwrap();
        assert_eq!(store.begin("gated.bin"), Ok(1));
        entered_rx.recv_timeout(WAIT).unwrap();
        (store, rx, gate_tx)
    }

    #[test]
    fn chunks_are_stored_hashed_and_logged() {
        let dir = TestDir::new("store");
        let (store, rx) = start(&dir, 2, 256);
        let task = store.begin("hello.txt").unwrap();
        assert_eq!(task, 1);
        for chunk in [&b"a"[..], b"", b"b", b"c"] {
            store.write(task, chunk.to_vec()).unwrap();
        }
        store.finish(task).unwrap();
        let sha_abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            final_status(&rx, task),
            TaskStatus::Done {
                stored: "hello.txt".into(),
                bytes: 3,
                sha256: sha_abc.into()
            }
        );
        assert_eq!(dir.read("hello.txt"), b"abc");
        assert!(dir.part_files().is_empty());
        let lines = dir.log_lines();
        assert_eq!(lines.len(), 1);
        let prefix = format!(
            "{{\"task\":1,\"stored\":\"hello.txt\",\"original\":\"hello.txt\",\"bytes\":3,\"sha256\":\"{sha_abc}\",\"time\":"
        );
        let time = lines[0]
            .strip_prefix(&prefix)
            .unwrap()
            .strip_suffix('}')
            .unwrap();
        let time: f64 = time.parse().unwrap();
        assert!(time > 1.6e9, "{time}");

        // A bigger body in many chunks, checked against a one-shot hash.
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let task = store.begin("big.bin").unwrap();
        for chunk in body.chunks(16 * 1024) {
            retry(|| store.write(task, chunk.to_vec()));
        }
        retry(|| store.finish(task));
        let TaskStatus::Done { bytes, sha256, .. } = final_status(&rx, task) else {
            panic!("big upload failed");
        };
        assert_eq!(bytes, body.len() as u64);
        assert_eq!(sha256, hex(&Sha256::digest(&body)));
        assert_eq!(dir.read("big.bin"), body);
        store.shutdown();
    }

    #[test]
    fn same_name_gets_a_suffix_and_never_overwrites() {
        let dir = TestDir::new("suffix");
        fs::create_dir_all(dir.path()).unwrap();
        fs::write(dir.path().join("same.txt"), b"old").unwrap();
        let (store, rx) = start(&dir, 2, 256);
        // Two threads race for the same names.
        let a = store.begin("same.txt").unwrap();
        let b = store.begin("same.txt").unwrap();
        store.write(a, b"first".to_vec()).unwrap();
        store.write(b, b"second".to_vec()).unwrap();
        store.finish(a).unwrap();
        store.finish(b).unwrap();
        let ended = wait_ended(&rx, &[a, b]);
        let mut stored = HashSet::new();
        for task in [a, b] {
            let Some(TaskStatus::Done { stored: name, .. }) = ended[&task].last() else {
                panic!("{ended:?}");
            };
            let want: &[u8] = if task == a { b"first" } else { b"second" };
            assert_eq!(dir.read(name), want);
            stored.insert(name.clone());
        }
        let want: HashSet<String> = ["same-1.txt".into(), "same-2.txt".into()].into();
        assert_eq!(stored, want);
        assert_eq!(dir.read("same.txt"), b"old");
        assert_eq!(dir.log_lines().len(), 2);
        store.shutdown();
    }

    #[test]
    fn candidate_names() {
        assert_eq!(candidate_name("a.tar.gz", 0), "a.tar.gz");
        assert_eq!(candidate_name("a.tar.gz", 1), "a.tar-1.gz");
        assert_eq!(candidate_name("README", 2), "README-2");
        assert_eq!(candidate_name("", 0), "upload");
        assert_eq!(candidate_name(".upload-1-2.part", 0), "_.upload-1-2.part");
        assert_eq!(candidate_name("..", 0), "_..");
        assert_eq!(candidate_name("a/b", 0), "a_b");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(
            json_string("a\"b\\c\nd\t\u{1}\u{7f}é"),
            r#""a\"b\\c\nd\t\u0001\u007fé""#
        );
    }

    #[test]
    fn abort_removes_the_temporary_file() {
        let dir = TestDir::new("abort");
        let (store, rx) = start(&dir, 1, 256);
        let task = store.begin("gone.bin").unwrap();
        store.write(task, vec![7; 1000]).unwrap();
        wait_running(&rx, task);
        store.abort(task);
        let u = rx.recv_timeout(WAIT).unwrap();
        assert!(
            matches!(&u.status, TaskStatus::Failed(m) if m.contains("aborted")),
            "{u:?}"
        );
        // Late messages for the aborted task are dropped.
        store.write(task, vec![1]).unwrap();
        store.finish(task).unwrap();
        store.shutdown();
        assert!(rx.try_recv().is_err());
        assert!(dir.names().is_empty(), "{:?}", dir.names());
    }

    #[test]
    fn abort_after_finish_is_a_no_op() {
        let dir = TestDir::new("abort-late");
        let (store, rx) = start(&dir, 1, 256);
        let task = store.begin("kept.bin").unwrap();
        store.write(task, b"kept".to_vec()).unwrap();
        store.finish(task).unwrap();
        store.abort(task);
        assert!(matches!(final_status(&rx, task), TaskStatus::Done { .. }));
        assert_eq!(dir.read("kept.bin"), b"kept");
        store.shutdown();
    }

    #[test]
    fn abort_is_not_lost_when_the_queue_is_full() {
        let dir = TestDir::new("abort-full");
        let (store, rx, gate) = gated_store(&dir, 2);
        store.write(1, vec![1]).unwrap();
        store.write(1, vec![2]).unwrap();
        assert!(store.write(1, vec![3]).is_err());
        store.abort(1); // the nudge is refused, the abort is not
        gate.send(()).unwrap();
        let status = final_status(&rx, 1);
        assert!(
            matches!(&status, TaskStatus::Failed(m) if m.contains("aborted")),
            "{status:?}"
        );
        assert!(dir.part_files().is_empty());
        store.shutdown();
        assert!(dir.log_lines().is_empty());
    }

    #[test]
    fn leftover_part_files_are_removed_at_start() {
        let dir = TestDir::new("leftover");
        fs::create_dir_all(dir.path()).unwrap();
        let dead = dir.path().join(".upload-999999999-3.part"); // beyond any pid_max
        let unparsable = dir.path().join(".upload-crashed.part");
        let live = dir.path().join(".upload-1-3.part"); // pid 1 always exists
        let kept = dir.path().join("photo.part");
        for p in [&dead, &unparsable, &live, &kept] {
            fs::write(p, b"x").unwrap();
        }
        let (store, _rx) = start(&dir, 1, 1);
        assert!(!dead.exists());
        assert!(!unparsable.exists());
        assert!(live.exists());
        assert!(kept.exists());
        store.shutdown();
    }

    #[test]
    fn write_error_fails_the_task_and_leaves_nothing() {
        let dir = TestDir::new("enospc");
        let (store, rx) = start(&dir, 1, 256);
        store.shared.fail_writes_after.store(4, Ordering::Relaxed);
        let task = store.begin("full.bin").unwrap();
        store.write(task, b"abc".to_vec()).unwrap();
        store.write(task, b"def".to_vec()).unwrap();
        store.write(task, b"ghi".to_vec()).unwrap();
        store.finish(task).unwrap();
        let status = final_status(&rx, task);
        assert!(
            matches!(&status, TaskStatus::Failed(m) if m.contains("No space")),
            "{status:?}"
        );
        store.shutdown();
        assert!(rx.try_recv().is_err(), "one final status only");
        assert!(dir.names().is_empty(), "{:?}", dir.names());
    }

    #[test]
    fn upload_dir_removed_mid_upload_fails_the_task() {
        let dir = TestDir::new("rmdir");
        let (store, rx) = start(&dir, 1, 256);
        let task = store.begin("lost.bin").unwrap();
        store.write(task, b"data".to_vec()).unwrap();
        wait_running(&rx, task);
        fs::remove_dir_all(dir.path()).unwrap();
        store.finish(task).unwrap();
        let u = rx.recv_timeout(WAIT).unwrap();
        assert!(
            matches!(&u.status, TaskStatus::Failed(m) if m.contains("store as")),
            "{u:?}"
        );
        store.shutdown();
        assert!(!dir.path().exists());
    }

    #[test]
    fn full_queue_is_reported_without_blocking() {
        let dir = TestDir::new("full");
        let (store, rx, gate) = gated_store(&dir, 2);
        store.write(1, vec![1]).unwrap();
        store.write(1, vec![2]).unwrap();
        let t0 = Instant::now();
        assert_eq!(store.write(1, vec![3]), Err(QueueFull(vec![3])));
        assert_eq!(store.finish(1), Err(QueueFull(())));
        assert_eq!(store.begin("other.bin"), Err(QueueFull(())));
        assert!(t0.elapsed() < Duration::from_secs(1));
        gate.send(()).unwrap();
        retry(|| store.write(1, vec![3]));
        retry(|| store.finish(1));
        assert!(matches!(final_status(&rx, 1), TaskStatus::Done { .. }));
        assert_eq!(dir.read("gated.bin"), [1, 2, 3]);
        // The refused begin used no id.
        assert_eq!(store.begin("other.bin"), Ok(2));
        store.shutdown();
    }

    #[test]
    fn shutdown_drains_everything_queued() {
        let dir = TestDir::new("drain");
        let (store, rx) = start(&dir, 2, 256);
        let tasks: Vec<TaskId> = (0..10)
            .map(|i| {
                let task = store.begin(&format!("f{i}.txt")).unwrap();
                for part in ["one ", "two ", "three"] {
                    store.write(task, part.as_bytes().to_vec()).unwrap();
                }
                store.finish(task).unwrap();
                task
            })
            .collect();
        // Begun but never finished: fails at shutdown and leaves nothing.
        let open = store.begin("open.txt").unwrap();
        store.write(open, b"half".to_vec()).unwrap();
        store.shutdown();
        let ended = wait_ended(&rx, &tasks);
        for (i, task) in tasks.iter().enumerate() {
            assert!(matches!(ended[task].last(), Some(TaskStatus::Done { .. })));
            assert_eq!(dir.read(&format!("f{i}.txt")), b"one two three");
        }
        assert_eq!(dir.log_lines().len(), 10);
        assert!(dir.part_files().is_empty());
        assert!(!dir.path().join("open.txt").exists());
    }
}
