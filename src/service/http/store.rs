//! Background storage of uploaded files. The event loop must never block, so it never touches
//! the disk: it hands each upload's body, chunk by chunk as the chunks arrive, to one of a few
//! task threads, and learns how the upload went through a `notify` callback (which the loop
//! turns into a channel message plus a `mio::Waker` wake-up). `upload_dir.rs` has the layout of
//! the dir and its formats; `recovery.rs` settles what a dead run left.
//!
//! One task on its task thread, step by step, with what a crash after each step leaves:
//!
//! | step | on disk | after a crash here |
//! |---|---|---|
//! | `begin` | `RUN/T.part` created (before any `202` can be sent, so a lack of descriptors is a `503`, not a failure after the promise) | failed: interrupted |
//! | each chunk | appended to `T.part`, hashed (SHA-256) | failed: interrupted |
//! | `finish` | `T.part` fsynced, `T.sealed` written and fsynced, the run dir fsynced: **sealed**, `notify(Sealed)`, and only now does the loop answer `202` | stored by recovery |
//! | store | `T.part` linked under a free name (`link(2)` never replaces: `name.ext`, `name-1.ext`...), the dir fsynced | stored by recovery (it finds the link) |
//! | log | one line appended to `uploads.jsonl` and fsynced: **done**, `notify(Done)` | done |
//! | clean up | `T.part`, then `T.sealed` removed | done |
//!
//! So a `202` promises that the whole body is on disk and that the task ends `done` (even
//! across a crash) unless storing it fails afterwards, which the task then reports with its
//! reason; any failure is recorded in `uploads-failed.jsonl` (before the task's files go), so
//! `GET /tasks/ID` can say what became of a task after a restart too. A line in either log is
//! the task's final word. Nothing after the seal opens a new descriptor: the dir and both logs
//! are opened once at start-up.
//!
//! Life of one upload, as the loop sees it:
//! 1. [`UploadStore::begin`] → a [`TaskId`] (status `Queued`, which the loop records itself).
//!    The task is pinned to task thread `task % threads`, so its messages stay in order.
//! 2. [`UploadStore::write`] for each chunk of the body, as it arrives.
//! 3. [`UploadStore::finish`] when the body is complete, or [`UploadStore::abort`] when the
//!    client went away first.
//! 4. `notify` reports `Running` once the task thread has created the task's file, `Sealed`
//!    after `finish` (the loop answers `202` now), then `Done` or `Failed`; a task can also go
//!    straight to `Failed` (or `Unavailable`, for a lack of descriptors) from any earlier step.
//!
//! Every call is non-blocking: `begin`, `write` and `finish` use `try_send` on the task thread's
//! bounded queue and hand the message back when it is full, so the loop can stop reading that
//! connection (TCP back-pressure reaches the client) and retry on a later iteration. `begin`
//! also waits, the same way, when this run has no task id left: ids are reserved
//! [`ID_LEASE`] at a time in the upload dir (a disk write), which a task thread does, asked
//! for when half of the lease is used. `abort` cannot be refused, since a refused abort would
//! leak a temporary file, so it bypasses the queue; see [`UploadStore::abort`] for how it still
//! stays in order.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use hmac_sha256::Hash as Sha256;

use super::recovery;
pub use super::upload_dir::TaskId;
use super::upload_dir::{
    done_line, failed_line, hex, is_descriptor_shortage, Record, Run, Seal, UploadDir, ID_LEASE,
    LOG_FILE, LOG_TARGET,
};
use crate::codec::escape::escaped;
use crate::codec::http::filename;

/// Where a task is. `Queued` is never sent through `notify`: `begin` returning `Ok` means it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    /// Accepted by `begin`, not yet picked up by its task thread.
    Queued,
    /// The task thread has started on it: the body is being written to the temporary file.
    Running,
    /// The whole body is fsynced and sealed: the upload will be stored even if the server
    /// crashes now. This is what the `202` waits for; `GET /tasks/ID` still says `running`.
    Sealed {
        /// Bytes received.
        bytes: u64,
        /// SHA-256 of the content, lower-case hex.
        sha256: String,
    },
    /// Stored as `stored` (a file name in the upload dir) and logged in `uploads.jsonl`.
    Done {
        /// The file name in the upload dir.
        stored: String,
        /// Bytes stored.
        bytes: u64,
        /// SHA-256 of the content, lower-case hex.
        sha256: String,
    },
    /// Nothing stored and nothing in `uploads.jsonl`; the text says why.
    Failed(String),
    /// Failed like `Failed`, before anything was promised, for want of descriptors (EMFILE,
    /// ENFILE): a shortage that passes, so the client is told to try again (`503`).
    Unavailable(String),
}

impl TaskStatus {
    /// The `status` word of `GET /tasks/ID`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running | TaskStatus::Sealed { .. } => "running",
            TaskStatus::Done { .. } => "done",
            TaskStatus::Failed(_) | TaskStatus::Unavailable(_) => "failed",
        }
    }

    /// Done or failed: nothing more will happen to the task.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            TaskStatus::Done { .. } | TaskStatus::Failed(_) | TaskStatus::Unavailable(_)
        )
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

/// A task of an earlier run, as the logs tell it (for `GET /tasks/ID` after a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastTask {
    /// The task.
    pub task: TaskId,
    /// The sanitized name the client gave (empty when a crash left it unknown).
    pub name: String,
    /// `Done` or `Failed`.
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

/// `begin` cannot take the upload yet: its task thread's queue is full, or this run's task ids
/// are being renewed. Nothing was used; try again on a later iteration.
#[derive(Debug, PartialEq, Eq)]
pub struct TryLater;

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
    /// Reserve more task ids in the upload dir (sent to task thread 0).
    Lease,
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
    shared: Arc<Shared>,
    /// What the logs say of earlier runs' tasks, until `take_history`.
    history: Vec<PastTask>,
}

struct ThreadHandle {
    jobs: SyncSender<Job>,
    /// Messages accepted by `jobs` so far (the task thread counts the ones it received).
    sent: Cell<u64>,
    aborts: AbortList,
    thread: JoinHandle<()>,
}

/// The task ids this run may hand out: what is left of its lease, and the next lease once a
/// task thread has reserved it.
struct IdLease {
    free: Range<TaskId>,
    more: Option<Range<TaskId>>,
    /// A `Job::Lease` is queued or running.
    asked: bool,
}

impl IdLease {
    fn peek(&mut self) -> Option<TaskId> {
        if self.free.is_empty() {
            if let Some(more) = self.more.take() {
                self.free = more;
            }
        }
        (!self.free.is_empty()).then_some(self.free.start)
    }

    fn is_low(&self) -> bool {
        self.more.is_none() && self.free.end - self.free.start <= ID_LEASE / 2
    }

    /// The end of the newest lease: no later lease may start below it.
    fn end(&self) -> TaskId {
        self.more.as_ref().map_or(self.free.end, |m| m.end)
    }
}

/// What all task threads share.
struct Shared {
    dir: UploadDir,
    run: Run,
    ids: Mutex<IdLease>,
    notify: Box<dyn Fn(TaskUpdate) + Send + Sync>,
    /// Test hook: a write that would take an upload past this many bytes fails with ENOSPC.
    #[cfg(test)]
    fail_writes_after: std::sync::atomic::AtomicU64,
}

impl UploadStore {
    /// Opens the upload dir `dir` (creating it if needed), settles what dead runs left in it
    /// (`recovery.rs`), creates and locks this run's own dir, reserves the first task ids, reads
    /// what the logs say of recent tasks, and starts `threads` threads, each with a queue of
    /// `queue_depth` messages (see `config::DEFAULT_TASK_QUEUE`). Blocks (disk IO): call it
    /// before the loop runs. `notify` runs on a task thread after each status change; it must
    /// be quick and must not block for long (the loop's closure sends on a channel and wakes
    /// its `Waker`).
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
        let dir = UploadDir::open(dir)?;
        let mut locked = dir.lock()?;
        locked.repair_logs()?;
        let recovered = recovery::recover_dead_runs(&dir, &mut locked)?;
        let legacy = dir.remove_legacy_parts()?;
        if legacy > 0 {
            log::info!(target: LOG_TARGET, "removed {legacy} temporary file(s) of an older readyloop in {}", dir.path().display());
        }
        let run = locked.create_run()?;
        let first = locked.reserve_ids(ID_LEASE, 1, || {
            // No counter yet: start past every id on disk.
            let logged = dir.all_records()?.iter().map(Record::task).max();
            Ok(logged.unwrap_or(0).max(recovered.max_task) + 1)
        })?;
        drop(locked);
        log::debug!(target: LOG_TARGET, "run {}: task ids {first:?}", run.path().display());
        let history = dir.recent_records()?.into_iter().map(past_task).collect();
        let shared = Arc::new(Shared {
            dir,
            run,
            ids: Mutex::new(IdLease {
                free: first,
                more: None,
                asked: false,
            }),
            notify: Box::new(notify),
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
            shared,
            history,
        })
    }

    /// The tasks of earlier runs found in the logs at start-up, in task order (once; later
    /// calls return nothing).
    pub fn take_history(&mut self) -> Vec<PastTask> {
        std::mem::take(&mut self.history)
    }

    /// Begins an upload that will be stored under `name` (already sanitized by the caller; a
    /// `-N` suffix is added before the extension if the name is taken). On `Err(TryLater)` no
    /// id was used: retry later (or answer `503`).
    pub fn begin(&self, name: &str) -> Result<TaskId, TryLater> {
        self.begin_named(name, name)
    }

    /// Like `begin`, recording in `uploads.jsonl` the name the client gave (`original`, peer
    /// input kept only as a JSON-escaped string) next to the one stored.
    pub fn begin_named(&self, name: &str, original: &str) -> Result<TaskId, TryLater> {
        let mut ids = lock(&self.shared.ids);
        let Some(task) = ids.peek() else {
            drop(ids);
            self.renew_ids();
            return Err(TryLater);
        };
        let job = Job::Begin {
            task,
            name: name.to_owned(),
            original: original.to_owned(),
        };
        self.send(task, job).map_err(|_| TryLater)?;
        ids.free.start += 1;
        let low = ids.is_low();
        drop(ids);
        if low {
            self.renew_ids();
        }
        Ok(task)
    }

    /// Asks task thread 0 to reserve the next lease of ids, unless it was asked already (a
    /// full queue is asked again by the next `begin`).
    fn renew_ids(&self) {
        let mut ids = lock(&self.shared.ids);
        if ids.asked || !ids.is_low() {
            return;
        }
        if self.send_on(&self.threads[0], 0, Job::Lease).is_ok() {
            ids.asked = true;
        }
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

    /// Marks the body complete: the task thread will seal (then report `Sealed`), store and log
    /// the file.
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
    /// queued, joins them, and removes this run's dir. Uploads begun but neither finished nor
    /// aborted then fail (their temporary files are removed). Blocks: call it after the loop has
    /// stopped, or on a helper thread when the wait must be bounded.
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
        self.shared.run.remove();
    }

    fn thread_of(&self, task: TaskId) -> &ThreadHandle {
        &self.threads[(task % self.threads.len() as u64) as usize]
    }

    fn send(&self, task: TaskId, job: Job) -> Result<(), Job> {
        self.send_on(self.thread_of(task), task, job)
    }

    fn send_on(&self, w: &ThreadHandle, task: TaskId, job: Job) -> Result<(), Job> {
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

/// A record of the logs as `GET /tasks/ID` shows it.
fn past_task(record: Record) -> PastTask {
    match record {
        Record::Done {
            task,
            stored,
            original,
            bytes,
            sha256,
        } => PastTask {
            task,
            name: filename::sanitize(&original).unwrap_or_else(|| stored.clone()),
            status: TaskStatus::Done {
                stored,
                bytes,
                sha256,
            },
        },
        Record::Failed { task, name, error } => PastTask {
            task,
            name,
            status: TaskStatus::Failed(error),
        },
    }
}

/// An upload whose body is being written.
struct Writing {
    name: String,
    original: String,
    part: PathBuf,
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
                Job::Lease => self.on_lease(),
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
    /// it goes straight from `Queued` to `Failed`, or `Unavailable` for want of descriptors).
    fn on_begin(&mut self, task: TaskId, name: String, original: String) {
        let part = self.shared.run.part(task);
        match OpenOptions::new().write(true).create_new(true).open(&part) {
            Ok(file) => {
                log::debug!(target: LOG_TARGET, "task {task} running on task thread {}: {}", self.index, part.display());
                let upload = Writing {
                    name,
                    original,
                    part,
                    file,
                    hasher: Sha256::new(),
                    bytes: 0,
                };
                self.active.insert(task, upload);
                self.notify(task, TaskStatus::Running);
            }
            Err(e) => {
                let reason = format!("create temporary file: {e}");
                log::warn!(target: LOG_TARGET, "task {task} failed: {}", escaped(&reason));
                self.record_failure(task, &name, &original, 0, &reason);
                let status = if is_descriptor_shortage(&e) {
                    TaskStatus::Unavailable(reason)
                } else {
                    TaskStatus::Failed(reason)
                };
                self.notify(task, status);
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
            part,
            file,
            hasher,
            bytes,
        } = upload;
        let seal = Seal {
            task,
            name,
            original,
            bytes,
            sha256: hex(&hasher.finalize()),
        };
        if let Err((what, e)) = self.seal(&seal, file) {
            let reason = format!("{what}: {e}");
            log::warn!(target: LOG_TARGET, "task {task} failed: {}", escaped(&reason));
            self.record_failure(task, &seal.name, &seal.original, bytes, &reason);
            remove_quietly(&self.shared.run.seal(task));
            remove_quietly(&part);
            let status = if is_descriptor_shortage(&e) {
                TaskStatus::Unavailable(reason)
            } else {
                TaskStatus::Failed(reason)
            };
            self.notify(task, status);
            return;
        }
        self.notify(
            task,
            TaskStatus::Sealed {
                bytes,
                sha256: seal.sha256.clone(),
            },
        );
        match self.store(&seal, &part) {
            Ok(stored) => {
                log::debug!(target: LOG_TARGET, "task {task} done: {} ({bytes} bytes)", escaped(&stored));
                self.notify(
                    task,
                    TaskStatus::Done {
                        stored,
                        bytes,
                        sha256: seal.sha256,
                    },
                );
            }
            Err(reason) => {
                log::warn!(target: LOG_TARGET, "task {task} failed after it was sealed: {}", escaped(&reason));
                self.notify(task, TaskStatus::Failed(reason));
            }
        }
    }

    /// Makes the complete body durable and says so: fsync `T.part`, write and fsync `T.sealed`,
    /// fsync the run dir (which makes both names durable). On `Err` the caller removes both.
    fn seal(&self, seal: &Seal, file: File) -> Result<(), (&'static str, io::Error)> {
        file.sync_all().map_err(|e| ("fsync", e))?;
        drop(file);
        let path = self.shared.run.seal(seal.task);
        let mut sealed = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| ("create seal", e))?;
        sealed
            .write_all(seal.to_line().as_bytes())
            .and_then(|()| sealed.sync_all())
            .map_err(|e| ("write seal", e))?;
        self.shared.run.sync().map_err(|e| ("fsync run dir", e))
    }

    /// Link under a free name, fsync the dir, log, remove the temporary files. On `Err` the
    /// link is removed again, the failure recorded, and then the temporary files removed (a
    /// crash before the record leaves a sealed body, which recovery stores).
    fn store(&self, seal: &Seal, part: &Path) -> Result<String, String> {
        let dir = &self.shared.dir;
        let task = seal.task;
        let stored = dir.link_unique(part, &seal.name);
        let logged = stored.as_ref().map_err(Clone::clone).and_then(|stored| {
            let line = done_line(task, stored, &seal.original, seal.bytes, &seal.sha256);
            dir.sync()
                .map_err(|e| format!("fsync upload dir: {e}"))
                .and_then(|()| {
                    dir.lock()
                        .and_then(|mut locked| locked.append_done(&line))
                        .map_err(|e| format!("append to {LOG_FILE}: {e}"))
                })
        });
        if let Err(reason) = logged {
            if let Ok(stored) = &stored {
                remove_quietly(&dir.path().join(stored));
                let _ = dir.sync();
            }
            self.record_failure(task, &seal.name, &seal.original, seal.bytes, &reason);
            remove_quietly(part);
            remove_quietly(&self.shared.run.seal(task));
            return Err(reason);
        }
        remove_quietly(part);
        remove_quietly(&self.shared.run.seal(task));
        stored
    }

    /// Reserves the next lease of task ids for the loop.
    fn on_lease(&mut self) {
        let floor = lock(&self.shared.ids).end();
        let reserved = self
            .shared
            .dir
            .lock()
            .and_then(|mut locked| locked.reserve_ids(ID_LEASE, floor, || Ok(floor)));
        let mut ids = lock(&self.shared.ids);
        ids.asked = false;
        match reserved {
            Ok(more) => {
                log::debug!(target: LOG_TARGET, "task ids {more:?} reserved");
                ids.more = Some(more);
            }
            Err(e) => log::warn!(target: LOG_TARGET, "could not reserve task ids: {e}"),
        }
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

    /// Ends an upload whose body was still being written: recorded as failed, file removed.
    fn fail(&self, task: TaskId, upload: Writing, reason: String) {
        drop(upload.file);
        log::warn!(target: LOG_TARGET, "task {task} failed after {} bytes: {}", upload.bytes, escaped(&reason));
        self.record_failure(task, &upload.name, &upload.original, upload.bytes, &reason);
        remove_quietly(&upload.part);
        self.notify(task, TaskStatus::Failed(reason));
    }

    /// Appends the task's line to `uploads-failed.jsonl` (a failure to do so is only logged:
    /// the task still fails, and says why, until the server stops).
    fn record_failure(&self, task: TaskId, name: &str, original: &str, bytes: u64, reason: &str) {
        let line = failed_line(task, name, original, bytes, reason);
        let recorded = self
            .shared
            .dir
            .lock()
            .and_then(|mut locked| locked.append_failed(&line));
        if let Err(e) = recorded {
            log::warn!(target: LOG_TARGET, "task {task}: could not record the failure: {e}");
        }
    }

    fn notify(&self, task: TaskId, status: TaskStatus) {
        (self.shared.notify)(TaskUpdate { task, status });
    }
}

impl Shared {
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

fn remove_quietly(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!(target: LOG_TARGET, "remove {}: {e}", path.display()),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a Vec push, a range or `()` half done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::http::upload_dir::FAILED_LOG_FILE;
    use std::collections::HashSet;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

        fn lines(&self, log: &str) -> Vec<String> {
            fs::read_to_string(self.0.join(log))
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect()
        }

        fn log_lines(&self) -> Vec<String> {
            self.lines(LOG_FILE)
        }

        fn failed_lines(&self) -> Vec<String> {
            self.lines(FAILED_LOG_FILE)
        }

        /// `.part` and `.sealed` files anywhere in the dir (run dirs included).
        fn leftovers(&self) -> Vec<String> {
            let mut found = Vec::new();
            for run in self
                .names()
                .iter()
                .filter(|n| n.starts_with(".upload-run-"))
            {
                for e in fs::read_dir(self.0.join(run)).unwrap() {
                    let n = e.unwrap().file_name().into_string().unwrap();
                    if n != "lock" {
                        found.push(format!("{run}/{n}"));
                    }
                }
            }
            found.extend(self.names().into_iter().filter(|n| n.ends_with(".part")));
            found
        }

        /// Files that are neither ours nor in a run dir: the stored uploads.
        fn stored(&self) -> Vec<String> {
            self.names()
                .into_iter()
                .filter(|n| !n.starts_with('.') && n != LOG_FILE && n != FAILED_LOG_FILE)
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
            seen.get(t)
                .is_some_and(|s| s.last().is_some_and(TaskStatus::is_final))
        };
        while !tasks.iter().all(|t| ended(&seen, t)) {
            let u = rx.recv_timeout(WAIT).expect("task did not end in time");
            seen.entry(u.task).or_default().push(u.status);
        }
        seen
    }

    /// The final status of `task`, checking the steps before it: `Running`, then `Sealed`
    /// (with the same bytes and hash) unless it failed before the seal.
    fn final_status(rx: &Receiver<TaskUpdate>, task: TaskId) -> TaskStatus {
        let statuses = wait_ended(rx, &[task]).remove(&task).unwrap();
        assert_eq!(statuses[0], TaskStatus::Running, "{statuses:?}");
        let last = statuses.last().unwrap().clone();
        if let TaskStatus::Done { bytes, sha256, .. } = &last {
            assert_eq!(
                statuses[1],
                TaskStatus::Sealed {
                    bytes: *bytes,
                    sha256: sha256.clone()
                }
            );
            assert_eq!(statuses.len(), 3, "{statuses:?}");
        }
        last
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
    fn retry<T, E>(mut attempt: impl FnMut() -> Result<T, E>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(t) = attempt() {
                return t;
            }
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

    /// Uploads `data` as `name` and waits for it to end.
    fn upload(
        store: &UploadStore,
        rx: &Receiver<TaskUpdate>,
        name: &str,
        data: &[u8],
    ) -> (TaskId, TaskStatus) {
        let task = retry(|| store.begin(name));
        for chunk in data.chunks(16 * 1024) {
            retry(|| store.write(task, chunk.to_vec()));
        }
        retry(|| store.finish(task));
        (task, final_status(rx, task))
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
        assert!(dir.leftovers().is_empty(), "{:?}", dir.leftovers());
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
        let (_, status) = upload(&store, &rx, "big.bin", &body);
        let TaskStatus::Done { bytes, sha256, .. } = status else {
            panic!("big upload failed: {status:?}");
        };
        assert_eq!(bytes, body.len() as u64);
        assert_eq!(sha256, hex(&Sha256::hash(&body)));
        assert_eq!(dir.read("big.bin"), body);
        store.shutdown();
        assert!(dir.failed_lines().is_empty());
        assert_eq!(
            dir.leftovers(),
            Vec::<String>::new(),
            "the run dir is removed"
        );
        assert!(!dir.names().iter().any(|n| n.starts_with(".upload-run-")));
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
    fn the_logs_names_are_reserved() {
        let dir = TestDir::new("reserved");
        let (store, rx) = start(&dir, 1, 256);
        let (_, a) = upload(&store, &rx, "uploads.jsonl", b"{\"task\":99}");
        let (_, b) = upload(&store, &rx, "UPLOADS-FAILED.JSONL", b"x");
        let names: Vec<_> = [a, b]
            .into_iter()
            .map(|s| match s {
                TaskStatus::Done { stored, .. } => stored,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["uploads-1.jsonl", "UPLOADS-FAILED-1.JSONL"]);
        let log = dir.log_lines();
        assert_eq!(log.len(), 2);
        assert!(log.iter().all(|l| l.starts_with("{\"task\":")), "{log:?}");
        store.shutdown();
    }

    #[test]
    fn abort_removes_the_temporary_file_and_records_the_failure() {
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
        assert!(dir.stored().is_empty(), "{:?}", dir.names());
        assert!(dir.leftovers().is_empty(), "{:?}", dir.leftovers());
        let failed = dir.failed_lines();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(
            failed[0].starts_with("{\"task\":1,\"name\":\"gone.bin\""),
            "{failed:?}"
        );
        assert!(failed[0].contains("aborted"), "{failed:?}");
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
        assert!(dir.leftovers().is_empty());
        store.shutdown();
        assert!(dir.log_lines().is_empty());
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
        assert!(dir.stored().is_empty(), "{:?}", dir.names());
        assert!(dir.leftovers().is_empty(), "{:?}", dir.leftovers());
        assert_eq!(dir.failed_lines().len(), 1);
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
            matches!(&u.status, TaskStatus::Failed(m) if m.contains("seal")),
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
        assert_eq!(store.begin("other.bin"), Err(TryLater));
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
        assert_eq!(dir.failed_lines().len(), 1);
        assert!(dir.leftovers().is_empty());
        assert!(!dir.path().join("open.txt").exists());
    }

    #[test]
    fn task_ids_are_never_reused_and_the_past_is_remembered() {
        let dir = TestDir::new("ids");
        let (mut store, rx) = start(&dir, 2, 8);
        assert!(store.take_history().is_empty());
        // More uploads than one lease: the ids are renewed on the way, never repeated.
        let mut ids = Vec::new();
        for i in 0..(ID_LEASE + ID_LEASE / 2) {
            let (task, status) = upload(&store, &rx, &format!("n{i}"), b"x");
            assert!(matches!(status, TaskStatus::Done { .. }), "{status:?}");
            ids.push(task);
        }
        let aborted = store.begin("aborted.bin").unwrap();
        store.abort(aborted);
        wait_ended(&rx, &[aborted]);
        let expected: Vec<TaskId> = (1..=ids.len() as u64).collect();
        assert_eq!(ids, expected);
        store.shutdown();
        // A restart goes on past every id reserved so far, and knows what became of the old ones.
        let (mut store, rx) = start(&dir, 1, 8);
        let history = store.take_history();
        assert_eq!(history.len(), ids.len() + 1);
        assert_eq!(history[0].task, 1);
        assert_eq!(history[0].name, "n0");
        assert!(
            matches!(&history[0].status, TaskStatus::Done { stored, bytes: 1, .. } if stored == "n0")
        );
        let last = history.last().unwrap();
        assert_eq!((last.task, last.name.as_str()), (aborted, "aborted.bin"));
        assert!(matches!(&last.status, TaskStatus::Failed(e) if e.contains("aborted")));
        // Past every lease of the first run: a new lease begins at the next hundred and one.
        let (task, _) = upload(&store, &rx, "after.bin", b"y");
        assert!(task > aborted && task % ID_LEASE == 1, "{task}");
        store.shutdown();
        let logged: Vec<TaskId> = dir.log_lines().iter().map(|l| parse_task(l)).collect();
        let unique: HashSet<_> = logged.iter().collect();
        assert_eq!(unique.len(), logged.len(), "duplicate task ids in the log");
    }

    fn parse_task(line: &str) -> TaskId {
        let rest = line.strip_prefix("{\"task\":").unwrap();
        rest[..rest.find(',').unwrap()].parse().unwrap()
    }

    #[test]
    fn a_lost_counter_is_recomputed_from_the_logs() {
        let dir = TestDir::new("counter");
        let (store, rx) = start(&dir, 1, 8);
        upload(&store, &rx, "a.txt", b"a");
        store.shutdown();
        fs::remove_file(dir.path().join(".upload-next")).unwrap();
        let (store, rx) = start(&dir, 1, 8);
        assert_eq!(upload(&store, &rx, "b.txt", b"b").0, 2);
        store.shutdown();
    }

    /// Files as a run killed at various steps leaves them, in a run dir nobody holds.
    #[test]
    fn start_up_settles_a_dead_runs_uploads() {
        let dir = TestDir::new("recover");
        let (store, rx) = start(&dir, 1, 8);
        // Task ids 1..=3 are this store's; the dead run used 4..=9.
        let (done, _) = upload(&store, &rx, "earlier.txt", b"earlier");
        store.shutdown();
        let run = dir.path().join(".upload-run-4242");
        fs::create_dir_all(&run).unwrap();
        fs::write(run.join("lock"), b"").unwrap();
        let sealed = |task: TaskId, name: &str, data: &[u8]| {
            fs::write(run.join(format!("{task}.part")), data).unwrap();
            let seal = Seal {
                task,
                name: name.into(),
                original: format!("C:\\{name}"),
                bytes: data.len() as u64,
                sha256: hex(&Sha256::hash(data)),
            };
            fs::write(run.join(format!("{task}.sealed")), seal.to_line()).unwrap();
        };
        // 4: sealed, not yet linked.
        sealed(4, "four.txt", b"four");
        // 5: sealed and linked as five.txt, not logged.
        sealed(5, "five.txt", b"five");
        fs::hard_link(run.join("5.part"), dir.path().join("five.txt")).unwrap();
        // 6: still arriving.
        fs::write(run.join("6.part"), b"half").unwrap();
        // 7: a seal cut short by the crash.
        fs::write(run.join("7.part"), b"seven").unwrap();
        fs::write(run.join("7.sealed"), b"{\"task\":7,\"na").unwrap();
        // 8: sealed, but the bytes changed.
        sealed(8, "eight.txt", b"eight");
        fs::write(run.join("8.part"), b"EIGHT").unwrap();
        // 9: logged already (its clean-up was cut short).
        sealed(9, "nine.txt", b"nine");
        let line = done_line(9, "nine.txt", "nine.txt", 4, &hex(&Sha256::hash(b"nine")));
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG_FILE))
            .unwrap();
        log.write_all(line.as_bytes()).unwrap();
        // And a line torn by the crash.
        log.write_all(b"{\"task\":10,\"stored\":\"ten").unwrap();
        drop(log);
        fs::write(dir.path().join(".upload-31337-2.part"), b"old layout").unwrap();

        let (mut store, _rx) = start(&dir, 1, 8);
        assert_eq!(dir.read("four.txt"), b"four");
        assert_eq!(dir.read("five.txt"), b"five");
        assert!(!dir.path().join("five-1.txt").exists(), "stored twice");
        assert!(!dir.path().join("eight.txt").exists());
        assert!(
            dir.leftovers().iter().all(|l| !l.contains("4242")),
            "{:?}",
            dir.leftovers()
        );
        assert!(!run.exists());
        assert!(!dir.path().join(".upload-31337-2.part").exists());
        let log = dir.log_lines();
        assert_eq!(log.len(), 4, "{log:?}");
        let tasks: Vec<TaskId> = log.iter().map(|l| parse_task(l)).collect();
        assert_eq!(tasks, [done, 9, 4, 5]);
        assert!(
            log[2].contains("\"original\":\"C:\\\\four.txt\""),
            "{}",
            log[2]
        );
        let history = store.take_history();
        let status = |t: TaskId| &history.iter().find(|p| p.task == t).unwrap().status;
        assert!(matches!(status(4), TaskStatus::Done { stored, .. } if stored == "four.txt"));
        assert!(matches!(status(5), TaskStatus::Done { stored, .. } if stored == "five.txt"));
        for (task, why) in [
            (6, "interrupted"),
            (7, "interrupted"),
            (8, "does not match"),
        ] {
            assert!(
                matches!(status(task), TaskStatus::Failed(e) if e.contains(why)),
                "task {task}: {:?}",
                status(task)
            );
        }
        assert!(history.iter().all(|p| p.task != 10));
        store.shutdown();
    }

    #[test]
    fn a_live_run_keeps_its_files_whatever_its_pid() {
        let dir = TestDir::new("live");
        let (first, rx) = start(&dir, 1, 8);
        let task = first.begin("slow.bin").unwrap();
        first.write(task, b"part one ".to_vec()).unwrap();
        wait_running(&rx, task);
        // A second store on the same dir (its own descriptor, so the lock is held against it).
        let (second, rx2) = start(&dir, 1, 8);
        assert!(dir
            .leftovers()
            .iter()
            .any(|l| l.ends_with(&format!("/{task}.part"))));
        let (other, _) = upload(&second, &rx2, "other.bin", b"o");
        assert_ne!(other, task);
        first.write(task, b"part two".to_vec()).unwrap();
        first.finish(task).unwrap();
        let ended = wait_ended(&rx, &[task]);
        assert!(
            matches!(ended[&task].last(), Some(TaskStatus::Done { .. })),
            "{ended:?}"
        );
        assert_eq!(dir.read("slow.bin"), b"part one part two");
        second.shutdown();
        first.shutdown();
        assert!(dir.leftovers().is_empty(), "{:?}", dir.leftovers());
    }
}
