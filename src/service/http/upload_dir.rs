//! The upload dir on disk: its layout, the names it reserves, its file formats, and the two
//! locks that let several server processes (and a crash at any instant) share it.
//!
//! ```text
//! uploads/
//!   report.pdf, notes-1.txt   the stored files, under the client's (sanitized) names
//!   uploads.jsonl             one line per stored file: task, stored, original, bytes, sha256, time
//!   uploads-failed.jsonl      one line per failed task: task, name, original, bytes, error, time
//!   .upload-lock              flock(2)ed for a moment by whoever changes a file shared by runs
//!   .upload-next              the next task id no run has reserved yet (decimal text)
//!   .upload-run-PID/          one per running server process (a "run"):
//!     lock                    flock(2)ed by that process for its whole life
//!     T.part                  task T's body, as it arrives
//!     T.sealed                written once T.part is complete and fsynced (name, bytes, sha256)
//! ```
//!
//! Why each piece is there:
//! - **Reserved names.** A stored file may take any name but `uploads.jsonl` and
//!   `uploads-failed.jsonl` (a client's file must never become, or be appended to as, our log).
//!   Every other name of ours starts with a dot, which a stored name never does (sanitized
//!   names lose their leading dots, and [`candidate_name`] prefixes `_` to be sure).
//! - **Task ids are unique for the life of the dir**, across restarts and across the processes
//!   of `serve --workers N`: a run reserves [`ID_LEASE`] ids at a time by advancing
//!   `.upload-next` under `.upload-lock` (written to a temporary name, fsynced, renamed), and
//!   hands them out from memory. Ids a run reserved but never used are skipped, never reused.
//! - **A run's liveness is a lock, not a pid.** A run holds an exclusive `flock` on its own
//!   `lock` file until it exits; the kernel drops it when the process dies, however it dies.
//!   At start-up a run whose lock can be taken is dead and its uploads are recovered
//!   (`recovery.rs`); one whose lock is held is alive and is left alone, whatever its pid is
//!   now (pids are reused, and two containers sharing a volume can both be pid 1).
//! - **Every line of both logs is final**, and each task gets at most one: a task is done once
//!   its line is in `uploads.jsonl`, failed once its line is in `uploads-failed.jsonl`, and only
//!   then are its `.part` and `.sealed` files removed. Appends are serialized by `.upload-lock`
//!   and fsynced; a failed append is cut off again, and a line torn by a crash is removed at the
//!   next start-up, before anyone appends.
//!
//! Everything here blocks (it is disk IO): it runs on the task threads, and at start-up before
//! the loop runs, never on the loop thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::codec::json::string as json_string;

/// Log target, so `RUST_LOG=readyloop::upload=trace` shows just the upload store.
pub const LOG_TARGET: &str = "readyloop::upload";

/// The log of stored files, one JSON object per line, in the upload dir.
pub const LOG_FILE: &str = "uploads.jsonl";
/// The log of failed tasks, one JSON object per line, in the upload dir.
pub const FAILED_LOG_FILE: &str = "uploads-failed.jsonl";
/// The names a stored file never takes (compared without regard to ASCII case, for the
/// case-insensitive file systems a dir may live on). The other names of ours start with a dot.
pub const RESERVED_NAMES: [&str; 2] = [LOG_FILE, FAILED_LOG_FILE];

const LOCK_FILE: &str = ".upload-lock";
const NEXT_FILE: &str = ".upload-next";
const NEXT_TMP: &str = ".upload-next.tmp";
const RUN_PREFIX: &str = ".upload-run-";
const RUN_LOCK: &str = "lock";
const PART_EXT: &str = ".part";
const SEALED_EXT: &str = ".sealed";
/// Temporary files of the layout before run dirs (`.upload-PID-TASK.part` in the dir itself).
/// Nothing can say whether such a file was complete, so start-up removes them.
const LEGACY_PREFIX: &str = ".upload-";

/// Task ids a run reserves per write of `.upload-next`: 100. The counter then costs three
/// fsyncs per 100 uploads, and a restart skips at most 99 ids (a new run starts at the next
/// hundred and one: 101, 201, ...).
pub const ID_LEASE: u64 = 100;

/// How many `name-N.ext` candidates are tried before a task fails (bounds the probing when a
/// directory is full of same-named uploads).
const MAX_NAME_SUFFIX: u32 = 10_000;

/// The end of each log read at start-up to answer `GET /tasks/ID` for earlier runs: 4 MiB,
/// some 15,000 lines, more than the 10,000 finished tasks the server remembers.
const HISTORY_TAIL: u64 = 4 << 20;

/// Task ids start at 1 and are unique for the life of the upload dir.
pub type TaskId = u64;

/// An open upload dir: the handles every task thread shares. Opening it creates the dir and
/// both logs, so that nothing after a `202` ever needs a new descriptor (see `store.rs`).
pub struct UploadDir {
    path: PathBuf,
    /// The directory itself, for fsyncs that make new names durable.
    handle: File,
    shared: Mutex<SharedFiles>,
}

/// The files that runs share, behind `.upload-lock`.
struct SharedFiles {
    lock: File,
    done: Log,
    failed: Log,
}

/// One append-only log, kept open (and reopened if an operator moves it away).
struct Log {
    path: PathBuf,
    file: File,
}

/// `.upload-lock`, held: the in-process mutex and the cross-process `flock` both.
pub struct Locked<'a> {
    dir: &'a UploadDir,
    files: MutexGuard<'a, SharedFiles>,
}

/// This process's run dir, locked for as long as the value lives.
pub struct Run {
    path: PathBuf,
    handle: File,
    _lock: File,
}

/// What `T.sealed` records: the body of task `task` is complete in `T.part`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// The task.
    pub task: TaskId,
    /// The sanitized name to store under (a `-N` suffix may be added).
    pub name: String,
    /// What the client called the file.
    pub original: String,
    /// Bytes in `T.part`.
    pub bytes: u64,
    /// SHA-256 of those bytes, lower-case hex.
    pub sha256: String,
}

/// What a line of either log says about a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A line of `uploads.jsonl`.
    Done {
        /// The task.
        task: TaskId,
        /// The stored name.
        stored: String,
        /// What the client called the file.
        original: String,
        /// Bytes stored.
        bytes: u64,
        /// SHA-256, lower-case hex.
        sha256: String,
    },
    /// A line of `uploads-failed.jsonl`.
    Failed {
        /// The task.
        task: TaskId,
        /// The sanitized name, when it was known.
        name: String,
        /// Why.
        error: String,
    },
}

impl Record {
    /// The task the line is about.
    pub fn task(&self) -> TaskId {
        match self {
            Record::Done { task, .. } | Record::Failed { task, .. } => *task,
        }
    }
}

impl UploadDir {
    /// Creates `path` if needed, and opens the dir, its lock file and both logs.
    pub fn open(path: PathBuf) -> io::Result<UploadDir> {
        fs::create_dir_all(&path)?;
        let handle = File::open(&path)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(LOCK_FILE))?;
        let done = Log::open(path.join(LOG_FILE))?;
        let failed = Log::open(path.join(FAILED_LOG_FILE))?;
        handle.sync_all()?;
        Ok(UploadDir {
            path,
            handle,
            shared: Mutex::new(SharedFiles { lock, done, failed }),
        })
    }

    /// The dir's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes new, removed or renamed entries of the dir durable.
    pub fn sync(&self) -> io::Result<()> {
        self.handle.sync_all()
    }

    /// Takes `.upload-lock` (blocks while another thread or process holds it, which is only
    /// ever for an append, a counter update, or a start-up's recovery).
    pub fn lock(&self) -> io::Result<Locked<'_>> {
        let files = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        flock(&files.lock, libc::LOCK_EX)?;
        Ok(Locked { dir: self, files })
    }

    /// The run dirs in the upload dir (ours included, if it exists yet).
    pub fn run_dirs(&self) -> io::Result<Vec<PathBuf>> {
        let mut runs = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| n.starts_with(RUN_PREFIX))
                && entry.file_type()?.is_dir()
            {
                runs.push(entry.path());
            }
        }
        runs.sort();
        Ok(runs)
    }

    /// Removes `.upload-*.part` files of the layout before run dirs; returns how many.
    pub fn remove_legacy_parts(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            let legacy = name.starts_with(LEGACY_PREFIX) && name.ends_with(PART_EXT);
            if !legacy || !entry.file_type()?.is_file() {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if removed > 0 {
            self.sync()?;
        }
        Ok(removed)
    }

    /// Links `part` into the dir as `name.ext`, else `name-1.ext`, `name-2.ext`...; returns
    /// the name taken. `link(2)` fails with EEXIST instead of replacing, which `rename(2)`
    /// would do, so an existing file is never overwritten; the reserved names are skipped.
    pub fn link_unique(&self, part: &Path, name: &str) -> Result<String, String> {
        for n in 0..=MAX_NAME_SUFFIX {
            let candidate = candidate_name(name, n);
            if is_reserved(&candidate) {
                continue;
            }
            match fs::hard_link(part, self.path.join(&candidate)) {
                Ok(()) => return Ok(candidate),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("store as {candidate}: {e}")),
            }
        }
        Err(format!(
            "no free name for {name} after {MAX_NAME_SUFFIX} suffixes"
        ))
    }

    /// The name in the dir of a regular file that is the same inode as `metadata` (a stored
    /// link of a `.part` file), if there is one.
    pub fn find_link(&self, metadata: &fs::Metadata) -> io::Result<Option<String>> {
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            let Ok(m) = entry.metadata() else { continue };
            if m.is_file() && m.ino() == metadata.ino() && m.dev() == metadata.dev() {
                if let Some(name) = entry.file_name().to_str() {
                    return Ok(Some(name.to_owned()));
                }
            }
        }
        Ok(None)
    }

    /// Every record of both logs, oldest first (a full read: only start-up recovery needs it,
    /// and only when a dead run left files).
    pub fn all_records(&self) -> io::Result<Vec<Record>> {
        let mut all = Vec::new();
        for name in [LOG_FILE, FAILED_LOG_FILE] {
            let file = match File::open(self.path.join(name)) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for line in BufReader::new(file).split(b'\n') {
                if let Some(record) = parse_record(&line?) {
                    all.push(record);
                }
            }
        }
        Ok(all)
    }

    /// The records in the last [`HISTORY_TAIL`] bytes of each log, in task order.
    pub fn recent_records(&self) -> io::Result<Vec<Record>> {
        let mut recent = Vec::new();
        for name in [LOG_FILE, FAILED_LOG_FILE] {
            let mut file = File::open(self.path.join(name))?;
            let len = file.metadata()?.len();
            let start = len.saturating_sub(HISTORY_TAIL);
            file.seek(SeekFrom::Start(start))?;
            let mut tail = Vec::new();
            file.take(HISTORY_TAIL).read_to_end(&mut tail)?;
            let mut lines = tail.split(|&b| b == b'\n');
            if start > 0 {
                lines.next(); // probably cut in the middle
            }
            recent.extend(lines.filter_map(parse_record));
        }
        recent.sort_by_key(Record::task);
        Ok(recent)
    }
}

impl Locked<'_> {
    /// Appends `line` to `uploads.jsonl` and fsyncs it.
    pub fn append_done(&mut self, line: &str) -> io::Result<()> {
        let dir = &self.dir.handle;
        self.files.done.append(line, dir)
    }

    /// Appends `line` to `uploads-failed.jsonl` and fsyncs it.
    pub fn append_failed(&mut self, line: &str) -> io::Result<()> {
        let dir = &self.dir.handle;
        self.files.failed.append(line, dir)
    }

    /// Start-up only: cuts off a last line that a crash left without its newline (its task
    /// still has its files, so recovery writes the line again). Returns the bytes removed.
    pub fn repair_logs(&mut self) -> io::Result<u64> {
        let done = self.files.done.cut_torn_tail()?;
        let failed = self.files.failed.cut_torn_tail()?;
        Ok(done + failed)
    }

    /// Reserves `n` task ids for this run, none below `floor` (the end of the run's previous
    /// lease). `fallback` gives the first id to use when `.upload-next` is missing or
    /// unreadable (a fresh dir, or one of an older version): one past the highest id on disk.
    pub fn reserve_ids(
        &mut self,
        n: u64,
        floor: TaskId,
        fallback: impl FnOnce() -> io::Result<TaskId>,
    ) -> io::Result<Range<TaskId>> {
        let path = self.dir.path.join(NEXT_FILE);
        let next = match fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<TaskId>() {
                Ok(next) if next >= 1 => Some(next),
                _ => {
                    log::warn!(target: LOG_TARGET, "{}: unreadable counter, recomputing it", path.display());
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let first = match next {
            Some(next) => next,
            None => fallback()?,
        }
        .max(floor)
        .max(1);
        let end = first
            .checked_add(n)
            .ok_or_else(|| io::Error::other("task ids exhausted"))?;
        let tmp = self.dir.path.join(NEXT_TMP);
        let mut file = File::create(&tmp)?;
        file.write_all(format!("{end}\n").as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)?;
        self.dir.sync()?;
        Ok(first..end)
    }

    /// Creates this process's run dir and takes its lock. Names are `.upload-run-PID`, or
    /// `.upload-run-PID-N` when that is taken (by a dead run that could not be removed, or a
    /// process with the same pid in another pid namespace).
    pub fn create_run(&mut self) -> io::Result<Run> {
        let pid = std::process::id();
        for n in 0..1000u32 {
            let name = match n {
                0 => format!("{RUN_PREFIX}{pid}"),
                n => format!("{RUN_PREFIX}{pid}-{n}"),
            };
            let path = self.dir.path.join(name);
            match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
            let lock = File::create(path.join(RUN_LOCK))?;
            // Under `.upload-lock` nobody else can be looking at the new dir, so this cannot
            // be refused; a start-up that finds the dir later finds it locked.
            flock(&lock, libc::LOCK_EX | libc::LOCK_NB)?;
            let handle = File::open(&path)?;
            handle.sync_all()?;
            self.dir.sync()?;
            return Ok(Run {
                path,
                handle,
                _lock: lock,
            });
        }
        Err(io::Error::other("no free run dir name"))
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = flock(&self.files.lock, libc::LOCK_UN);
    }
}

impl Log {
    fn open(path: PathBuf) -> io::Result<Log> {
        let file = open_append(&path)?;
        Ok(Log { path, file })
    }

    /// Appends one line and fsyncs it; a failed append (say, ENOSPC halfway through the line)
    /// is cut off again. The caller holds `.upload-lock`, so no other run appended meanwhile.
    fn append(&mut self, line: &str, dir: &File) -> io::Result<()> {
        self.reopen_if_moved(dir)?;
        let before = self.file.metadata()?.len();
        let result = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data());
        if result.is_err() {
            let _ = self.file.set_len(before);
            let _ = self.file.sync_data();
        }
        result
    }

    /// The log is kept open (no descriptor needed per line), but an operator may rotate it:
    /// when the path no longer names the open file, the path is opened (created) anew.
    fn reopen_if_moved(&mut self, dir: &File) -> io::Result<()> {
        let same = match fs::metadata(&self.path) {
            Ok(on_disk) => {
                let open = self.file.metadata()?;
                on_disk.ino() == open.ino() && on_disk.dev() == open.dev()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if !same {
            self.file = open_append(&self.path)?;
            dir.sync_all()?;
        }
        Ok(())
    }

    fn cut_torn_tail(&mut self) -> io::Result<u64> {
        let len = self.file.metadata()?.len();
        let mut reader = File::open(&self.path)?;
        let keep = end_of_last_line(&mut reader, len)?;
        if keep == len {
            return Ok(0);
        }
        self.file.set_len(keep)?;
        self.file.sync_data()?;
        log::warn!(target: LOG_TARGET, "{}: removed {} bytes of a line a crash cut short", self.path.display(), len - keep);
        Ok(len - keep)
    }
}

/// The length of `file` up to and including its last newline (0 if it has none).
fn end_of_last_line(file: &mut File, len: u64) -> io::Result<u64> {
    const BLOCK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl Run {
    /// The run dir's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where task `task`'s body is written.
    pub fn part(&self, task: TaskId) -> PathBuf {
        part_path(&self.path, task)
    }

    /// Where task `task`'s seal is written.
    pub fn seal(&self, task: TaskId) -> PathBuf {
        seal_path(&self.path, task)
    }

    /// Makes the run dir's new entries durable.
    pub fn sync(&self) -> io::Result<()> {
        self.handle.sync_all()
    }

    /// At a clean exit: removes the run dir if no task left anything in it (else the next
    /// start-up recovers what is there).
    pub fn remove(&self) {
        let _ = fs::remove_file(self.path.join(RUN_LOCK));
        match fs::remove_dir(&self.path) {
            Ok(()) => {}
            Err(e) => log::warn!(target: LOG_TARGET, "kept {}: {e}", self.path.display()),
        }
    }
}

/// A run dir whose process is gone, claimed for recovery (its lock is held while this lives).
pub struct DeadRun {
    path: PathBuf,
    _lock: Option<File>,
}

impl DeadRun {
    /// `Some` when the run at `path` is dead: its lock could be taken (or it never got one).
    pub fn claim(path: PathBuf) -> io::Result<Option<DeadRun>> {
        let lock = match OpenOptions::new().read(true).open(path.join(RUN_LOCK)) {
            Ok(f) => Some(f),
            // Created a moment before its lock file: that run died right there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(lock) = &lock {
            match flock(lock, libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(Some(DeadRun { path, _lock: lock }))
    }

    /// The run dir's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tasks that have a `.part` or a `.sealed` file here, in order.
    pub fn tasks(&self) -> io::Result<Vec<TaskId>> {
        let mut tasks = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let stem = name
                .strip_suffix(PART_EXT)
                .or_else(|| name.strip_suffix(SEALED_EXT));
            if let Some(task) = stem.and_then(|s| s.parse::<TaskId>().ok()) {
                tasks.push(task);
            }
        }
        tasks.sort_unstable();
        tasks.dedup();
        Ok(tasks)
    }

    /// Where task `task`'s body was written.
    pub fn part(&self, task: TaskId) -> PathBuf {
        part_path(&self.path, task)
    }

    /// Where task `task`'s seal was written.
    pub fn seal(&self, task: TaskId) -> PathBuf {
        seal_path(&self.path, task)
    }

    /// Removes the lock and the dir, which must be empty by now.
    pub fn remove(self) -> io::Result<()> {
        match fs::remove_file(self.path.join(RUN_LOCK)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::remove_dir(&self.path)
    }
}

fn part_path(run: &Path, task: TaskId) -> PathBuf {
    run.join(format!("{task}{PART_EXT}"))
}

fn seal_path(run: &Path, task: TaskId) -> PathBuf {
    run.join(format!("{task}{SEALED_EXT}"))
}

impl Seal {
    /// The seal file's one line.
    pub fn to_line(&self) -> String {
        format!(
            "{{\"task\":{},\"name\":{},\"original\":{},\"bytes\":{},\"sha256\":\"{}\"}}\n",
            self.task,
            json_string(&self.name),
            json_string(&self.original),
            self.bytes,
            self.sha256,
        )
    }

    /// Reads a seal file. `None` unless it is whole (a crash while it was being written, before
    /// any `202`, leaves a partial one, which counts as no seal).
    pub fn read(path: &Path) -> io::Result<Option<Seal>> {
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(line) = text.strip_suffix(b"\n") else {
            return Ok(None);
        };
        let Some(fields) = parse_flat(line) else {
            return Ok(None);
        };
        let seal = (|| {
            Some(Seal {
                task: number(&fields, "task")?,
                name: string(&fields, "name")?,
                original: string(&fields, "original")?,
                bytes: number(&fields, "bytes")?,
                sha256: string(&fields, "sha256")?,
            })
        })();
        Ok(seal)
    }
}

/// The `uploads.jsonl` line of a stored file.
pub fn done_line(task: TaskId, stored: &str, original: &str, bytes: u64, sha256: &str) -> String {
    format!(
        "{{\"task\":{task},\"stored\":{},\"original\":{},\"bytes\":{bytes},\"sha256\":\"{sha256}\",\"time\":{}}}\n",
        json_string(stored),
        json_string(original),
        unix_time(),
    )
}

/// The `uploads-failed.jsonl` line of a failed task (`name` and `original` empty when unknown:
/// a crash can leave a body without them).
pub fn failed_line(task: TaskId, name: &str, original: &str, bytes: u64, error: &str) -> String {
    format!(
        "{{\"task\":{task},\"name\":{},\"original\":{},\"bytes\":{bytes},\"error\":{},\"time\":{}}}\n",
        json_string(name),
        json_string(original),
        json_string(error),
        unix_time(),
    )
}

fn parse_record(line: &[u8]) -> Option<Record> {
    let fields = parse_flat(line)?;
    let task = number(&fields, "task")?;
    if let Some(error) = string(&fields, "error") {
        return Some(Record::Failed {
            task,
            name: string(&fields, "name").unwrap_or_default(),
            error,
        });
    }
    Some(Record::Done {
        task,
        stored: string(&fields, "stored")?,
        original: string(&fields, "original").unwrap_or_default(),
        bytes: number(&fields, "bytes")?,
        sha256: string(&fields, "sha256")?,
    })
}

/// A value of a flat JSON object: a string (unescaped) or the text of a number.
#[derive(Debug, PartialEq, Eq)]
enum Value {
    Str(String),
    Num(String),
}

fn string(fields: &[(String, Value)], key: &str) -> Option<String> {
    fields.iter().find_map(|(k, v)| match v {
        Value::Str(s) if k == key => Some(s.clone()),
        _ => None,
    })
}

fn number(fields: &[(String, Value)], key: &str) -> Option<u64> {
    fields.iter().find_map(|(k, v)| match v {
        Value::Num(n) if k == key => n.parse().ok(),
        _ => None,
    })
}

/// Parses `{"key": value, ...}` with string and number values only: the shape of every line
/// this file writes. Anything else (a line cut short, a hand edit) is `None` and is skipped.
fn parse_flat(line: &[u8]) -> Option<Vec<(String, Value)>> {
    let text = std::str::from_utf8(line).ok()?.trim();
    let mut rest = text.strip_prefix('{')?.trim_start();
    let mut fields = Vec::new();
    if let Some(after) = rest.strip_prefix('}') {
        return after.trim().is_empty().then_some(fields);
    }
    loop {
        let (key, after) = parse_string(rest)?;
        rest = after.trim_start().strip_prefix(':')?.trim_start();
        let value = if rest.starts_with('"') {
            let (s, after) = parse_string(rest)?;
            rest = after;
            Value::Str(s)
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
                .unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            let (n, after) = rest.split_at(end);
            rest = after;
            Value::Num(n.to_owned())
        };
        fields.push((key, value));
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else {
            let after = rest.strip_prefix('}')?;
            return after.trim().is_empty().then_some(fields);
        }
    }
}

/// A JSON string at the start of `s`: its value and what follows it.
fn parse_string(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('"')?.char_indices();
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[1 + i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                out.push(match e {
                    '"' => '"',
                    '\\' => '\\',
                    '/' => '/',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'u' => {
                        let hex: String = (0..4)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        let unit = u32::from_str_radix(&hex, 16).ok()?;
                        // We only write \u00XX (control characters); a surrogate is not ours.
                        char::from_u32(unit)?
                    }
                    _ => return None,
                });
            }
            c => out.push(c),
        }
    }
    None
}

/// The `n`th candidate for `name`: `a.tar.gz`, `a.tar-1.gz`, `a.tar-2.gz`... The caller
/// sanitizes names; this only keeps the result a plain file name (no `/`, NUL, `.` or `..`)
/// and out of the dot-file namespace that holds our own files (a leading `.` becomes `_.`).
pub fn candidate_name(name: &str, n: u32) -> String {
    let mut name: String = name
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

/// Whether `name` is one of the [`RESERVED_NAMES`].
pub fn is_reserved(name: &str) -> bool {
    RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Whether `e` is a shortage of descriptors (EMFILE, ENFILE): it passes, so the client is told
/// to try again rather than that its upload failed.
pub fn is_descriptor_shortage(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock(2) on a descriptor we own; it touches no memory.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Seconds since the epoch with microseconds, e.g. `1700000000.123456`.
fn unix_time() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", now.as_secs(), now.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn reserved_names() {
        assert!(is_reserved("uploads.jsonl"));
        assert!(is_reserved("UPLOADS.JSONL"));
        assert!(is_reserved("uploads-failed.jsonl"));
        assert!(!is_reserved("uploads-1.jsonl"));
        assert_eq!(candidate_name("uploads.jsonl", 1), "uploads-1.jsonl");
    }

    #[test]
    fn our_lines_parse_back() {
        let done = done_line(7, "a \"b\".txt", "../a\n\"b\".txt", 3, "abc");
        assert_eq!(
            parse_record(done.trim_end().as_bytes()),
            Some(Record::Done {
                task: 7,
                stored: "a \"b\".txt".into(),
                original: "../a\n\"b\".txt".into(),
                bytes: 3,
                sha256: "abc".into(),
            })
        );
        let failed = failed_line(8, "x.bin", "x.bin", 0, "write: \u{1} disk full");
        assert_eq!(
            parse_record(failed.as_bytes()),
            Some(Record::Failed {
                task: 8,
                name: "x.bin".into(),
                error: "write: \u{1} disk full".into(),
            })
        );
        let seal = Seal {
            task: 9,
            name: "é.txt".into(),
            original: "C:\\é.txt".into(),
            bytes: 12,
            sha256: "00ff".into(),
        };
        let line = seal.to_line();
        let fields = parse_flat(line.trim_end().as_bytes()).unwrap();
        assert_eq!(string(&fields, "original").as_deref(), Some("C:\\é.txt"));
        assert_eq!(number(&fields, "bytes"), Some(12));
    }

    #[test]
    fn cut_or_odd_lines_are_skipped() {
        let done = done_line(7, "a.txt", "a.txt", 3, "abc");
        for cut in 1..done.trim_end().len() {
            assert_eq!(parse_record(&done.as_bytes()[..cut]), None, "{cut}");
        }
        for odd in [
            &b""[..],
            b"{}",
            b"[1]",
            b"{\"task\": -1, \"error\": \"x\"}",
            b"{\"task\": 1, \"error\": \"\\u12\"}",
            b"{\"task\": 1 \"error\": \"x\"}",
            b"{\"task\": 1, \"error\": \"x\"} trailing",
            b"\xff",
        ] {
            assert_eq!(
                parse_record(odd),
                None,
                "{:?}",
                String::from_utf8_lossy(odd)
            );
        }
    }
}
