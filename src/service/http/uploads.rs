//! Uploads: `POST /upload-file` bodies handed to background tasks, and the table of those tasks.
//!
//! `Uploads` is everything the server knows about background work: the handle of the task
//! threads (`store.rs`, where the disk IO happens), `Tasks`, the status of every task for
//! `GET /tasks/ID` and `/stats` (this run's, updated from the threads' reports, and the recent
//! ones of earlier runs, read from the logs at start-up), and the admission of new uploads.
//! `Upload` is one request's body on its way there, as an enum of its phases:
//!
//! ```text
//!  head ──(multipart)──> AwaitingFile ──(the `file` part)──┐
//!    └──(?name=FILE)─────────────────────────────────────┐ │
//!                                                        ▼ ▼
//!              begin refused (queue full, no id yet) ── Starting ──(begin taken)──┐
//!                                                        │                        ▼
//!                                                        └──(begin taken)──> Receiving ──(end of body)──> Sealing ──(verdict)──> Decided
//!                                                                             │   ▲                                                  (202, or 503)
//!                                                     a task queue is full ── ▼   │ ── the thread caught up
//!                                                                            Stalled
//!  any phase ──(bad name, bad form, too many uploads)──> Decided (a refusal, answered at the end of the body)
//!  any phase ──(the client left, the request failed)──> Abandoned
//! ```
//!
//! Bytes are copied into 64 KiB pieces and handed to the task's thread; when its queue is full
//! the upload is `Stalled`, and when an upload cannot even begin (the queue is full, or the run
//! is renewing its task ids) it is `Starting`: in both the HTTP service stops reading the
//! connection (TCP pushes back on the client) and retries on a short timer, so memory stays
//! bounded whatever the size and however many uploads there are. Only past `--max-uploads`
//! uploads in progress is a new one refused, with `503` and `Retry-After`.
//!
//! **What a `202` promises.** At the end of the body the upload is `Sealing`: the answer waits
//! for the task thread's verdict, which comes once the whole body is fsynced on disk and sealed
//! (`TaskStatus::Sealed`, see `store.rs`). From then on the upload survives a crash: the next
//! start-up stores it. So `202` means "your bytes are on our disk, the task will end `done`
//! unless storing fails, and `GET /tasks/ID` will say which, before and after a restart". A
//! task that failed before the seal is answered `202` too, with the failure in its message and
//! its task (storage failed; the body was received), except for a lack of descriptors, which
//! passes: that is `503` with `Retry-After`, as nothing was promised.

use super::store::{PastTask, QueueFull, TaskId, TaskStatus, TaskUpdate, TryLater, UploadStore};
use crate::codec::escape::escaped;
use crate::codec::http::filename;
use crate::codec::http::multipart::{MultipartError, MultipartEvent, MultipartParser};
use crate::codec::http::query::query_param;
use crate::codec::http::{RequestHead, Response};
use crate::codec::json::escape_into as json_escape;
use crate::runtime::ConnId;
use log::{info, warn};
use std::collections::{HashMap, VecDeque};

const LOG: &str = "readyloop::http";

/// Upload bytes are handed to the task thread in pieces of this size: 64 KiB, one read
/// buffer's worth, so a piece costs one queue slot and one `write` on the thread.
const UPLOAD_PIECE: usize = 64 * 1024;
/// Finished tasks remembered for `GET /tasks/ID`: the newest 10,000 (about 1 MiB).
const TASKS_KEPT: usize = 10_000;

/// Background tasks and their status, for `GET /tasks/ID` and `/stats`.
#[derive(Debug, Default)]
struct Tasks {
    status: HashMap<TaskId, (TaskStatus, String)>,
    finished: VecDeque<TaskId>,
    counters: TaskCounters,
}

/// Task counts since start, for `/stats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TaskCounters {
    /// Tasks accepted.
    pub queued_total: u64,
    /// Tasks done.
    pub done: u64,
    /// Tasks failed.
    pub failed: u64,
}

impl TaskCounters {
    /// Tasks accepted and not yet done or failed.
    pub fn in_flight(&self) -> u64 {
        self.queued_total - self.done - self.failed
    }
}

impl Tasks {
    /// Tasks of earlier runs, as the logs tell them (not counted in `/stats`, which is this
    /// run's).
    fn remember(&mut self, past: Vec<PastTask>) {
        for p in past {
            if self.status.insert(p.task, (p.status, p.name)).is_none() {
                self.finished.push_back(p.task);
            }
        }
        self.forget_oldest();
    }

    fn queued(&mut self, task: TaskId, name: &str) {
        self.counters.queued_total += 1;
        self.status
            .insert(task, (TaskStatus::Queued, name.to_string()));
    }

    fn update(&mut self, update: TaskUpdate) {
        let Some(entry) = self.status.get_mut(&update.task) else {
            return;
        };
        match &update.status {
            TaskStatus::Done { stored, bytes, .. } => {
                info!(target: LOG, "task {}: saved {} ({bytes} bytes)", update.task, escaped(stored));
                self.counters.done += 1;
                self.finished.push_back(update.task);
            }
            TaskStatus::Failed(e) | TaskStatus::Unavailable(e) => {
                warn!(target: LOG, "task {}: failed: {}", update.task, escaped(e));
                self.counters.failed += 1;
                self.finished.push_back(update.task);
            }
            _ => {}
        }
        entry.0 = update.status;
        self.forget_oldest();
    }

    fn forget_oldest(&mut self) {
        while self.finished.len() > TASKS_KEPT {
            if let Some(old) = self.finished.pop_front() {
                self.status.remove(&old);
            }
        }
    }

    /// Tasks of this run not finished yet, by state: queued, running, sealed.
    fn unfinished(&self) -> [u64; 3] {
        let mut by_state = [0; 3];
        for (status, _) in self.status.values() {
            match status {
                TaskStatus::Queued => by_state[0] += 1,
                TaskStatus::Running => by_state[1] += 1,
                TaskStatus::Sealed { .. } => by_state[2] += 1,
                _ => {}
            }
        }
        by_state
    }

    fn status(&self, task: TaskId) -> Option<&TaskStatus> {
        self.status.get(&task).map(|(status, _)| status)
    }

    fn json(&self, task: TaskId) -> Option<String> {
        let (status, name) = self.status.get(&task)?;
        let mut out = format!(
            "{{\"task\": {task}, \"status\": \"{}\", \"name\": \"",
            status.as_str()
        );
        json_escape(name, &mut out);
        out.push('"');
        match status {
            TaskStatus::Done {
                stored,
                bytes,
                sha256,
            } => {
                out.push_str(", \"stored\": \"");
                json_escape(stored, &mut out);
                out.push_str(&format!("\", \"bytes\": {bytes}, \"sha256\": \"{sha256}\""));
            }
            TaskStatus::Sealed { bytes, sha256 } => {
                out.push_str(&format!(", \"bytes\": {bytes}, \"sha256\": \"{sha256}\""));
            }
            TaskStatus::Failed(e) | TaskStatus::Unavailable(e) => {
                out.push_str(", \"error\": \"");
                json_escape(e, &mut out);
                out.push('"');
            }
            TaskStatus::Queued | TaskStatus::Running => {}
        }
        out.push('}');
        Some(out)
    }
}

/// The task threads, the table of their tasks, and the admission of new uploads.
pub struct Uploads {
    /// `None` until the server starts the threads (and in a server without an HTTP listener).
    store: Option<UploadStore>,
    tasks: Tasks,
    /// Uploads in progress (begun or `Starting`, not yet done or failed) past which a new one
    /// is refused with 503 (`--max-uploads`).
    max_uploads: u64,
    /// Uploads `Starting`: admitted, waiting for their `begin` to be taken.
    starting: u64,
    /// Connections whose answer waits for their task's verdict (`Sealing`).
    awaiting: HashMap<TaskId, ConnId>,
}

/// How `Uploads::start_task` went.
enum Begun {
    /// The task exists.
    Now(TaskId),
    /// Admitted, but its `begin` must be retried (a queue is full, or ids are being renewed).
    Later,
}

impl Uploads {
    /// Uploads handed to `store` (`None`: uploads are refused with 503), at most
    /// `max_uploads` in progress at once.
    pub fn new(mut store: Option<UploadStore>, max_uploads: usize) -> Uploads {
        let mut tasks = Tasks::default();
        if let Some(store) = store.as_mut() {
            tasks.remember(store.take_history());
        }
        Uploads {
            store,
            tasks,
            max_uploads: max_uploads as u64,
            starting: 0,
            awaiting: HashMap::new(),
        }
    }

    /// Applies a task thread's report. Returns the connection to wake when the report is the
    /// verdict its answer waited for.
    pub fn update(&mut self, update: TaskUpdate) -> Option<ConnId> {
        let task = update.task;
        let verdict =
            matches!(update.status, TaskStatus::Sealed { .. }) || update.status.is_final();
        self.tasks.update(update);
        if verdict {
            self.awaiting.remove(&task)
        } else {
            None
        }
    }

    /// The `GET /tasks/ID` body of `task`.
    pub fn task_json(&self, task: TaskId) -> Option<String> {
        self.tasks.json(task)
    }

    /// Task counts since start.
    pub fn counters(&self) -> TaskCounters {
        self.tasks.counters
    }

    /// Tasks not finished yet, by state: queued, running, sealed (a walk over the tasks kept,
    /// for `/metrics`).
    pub fn unfinished(&self) -> [u64; 3] {
        self.tasks.unfinished()
    }

    /// Wake connection `id` when `task`'s verdict comes.
    pub fn await_verdict(&mut self, task: TaskId, id: ConnId) {
        self.awaiting.insert(task, id);
    }

    /// Stops the task threads, letting them finish what is queued (blocks: call after the loop).
    pub fn shut_down(&mut self) {
        if let Some(store) = self.store.take() {
            store.shutdown();
        }
    }

    fn in_progress(&self) -> u64 {
        self.tasks.counters.in_flight() + self.starting
    }

    /// Admits and begins the task saving `name` (sanitized; `original` is what the client sent,
    /// kept for the log). `Err` is the answer to give instead: 503 past `--max-uploads`.
    fn start_task(&mut self, name: &str, original: &str) -> Result<Begun, Response> {
        let Some(store) = self.store.as_ref() else {
            return Err(Response::text(503, "uploads are not enabled"));
        };
        if self.in_progress() >= self.max_uploads {
            warn!(target: LOG, "{} uploads in progress (--max-uploads): refusing {}", self.in_progress(), escaped(name));
            return Err(busy());
        }
        match store.begin_named(name, original) {
            Ok(task) => {
                self.began(task, name);
                Ok(Begun::Now(task))
            }
            Err(TryLater) => {
                self.starting += 1;
                Ok(Begun::Later)
            }
        }
    }

    /// A `Starting` upload tries its `begin` again.
    fn retry_start(&mut self, file: &Incoming) -> Option<TaskId> {
        let store = self.store.as_ref()?;
        let task = store.begin_named(&file.name, &file.original).ok()?;
        self.starting -= 1;
        self.began(task, &file.name);
        Some(task)
    }

    fn began(&mut self, task: TaskId, name: &str) {
        self.tasks.queued(task, name);
        info!(target: LOG, "task {task}: upload of {} started", escaped(name));
    }

    /// Hands `transfer`'s buffered piece to its thread; `Err` gives the piece back (queue full).
    /// A task that has already failed gets no more pieces: they are dropped here.
    fn hand_over(&self, transfer: &mut Transfer) -> Result<(), Vec<u8>> {
        let piece = std::mem::take(&mut transfer.file.piece);
        let failed = self
            .tasks
            .status(transfer.task)
            .is_some_and(TaskStatus::is_final);
        match self.store.as_ref() {
            Some(store) if !failed => store
                .write(transfer.task, piece)
                .map_err(|QueueFull(piece)| piece),
            _ => Ok(()),
        }
    }

    fn finish(&self, task: TaskId) -> Result<(), QueueFull> {
        self.store.as_ref().map_or(Ok(()), |s| s.finish(task))
    }

    fn abort(&self, task: TaskId) {
        if let Some(store) = self.store.as_ref() {
            store.abort(task);
        }
    }
}

fn busy() -> Response {
    Response::text(503, "too many uploads in progress, try again later").header("Retry-After", "1")
}

/// Where a multipart body is, relative to its `file` part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    File,
    Other,
}

/// How the body carries the file.
#[derive(Debug)]
enum Source {
    /// The whole body is the file (`?name=FILE`).
    Raw,
    /// A `multipart/form-data` form, in the part named `file`.
    Form(MultipartParser, Part),
}

/// A file arriving: its names, where it comes from, and its bytes not yet handed over.
#[derive(Debug)]
pub struct Incoming {
    /// The client's name for the file, sanitized.
    name: String,
    /// The client's name as sent (for the log).
    original: String,
    source: Source,
    /// File bytes received.
    bytes: u64,
    /// File bytes not yet handed to the thread.
    piece: Vec<u8>,
}

impl Incoming {
    fn new(name: String, original: String, source: Source) -> Incoming {
        Incoming {
            name,
            original,
            source,
            bytes: 0,
            piece: Vec::new(),
        }
    }

    /// Feeds body bytes in; file bytes go to the piece (through the multipart parser for a form).
    fn take_in(&mut self, mut bytes: &[u8]) -> Result<(), MultipartError> {
        match &mut self.source {
            Source::Raw => {
                self.bytes += bytes.len() as u64;
                self.piece.extend_from_slice(bytes);
                Ok(())
            }
            Source::Form(form, part) => loop {
                let (n, event) = match form.feed(bytes)? {
                    (_, None) => return Ok(()),
                    (n, Some(event)) => (n, event),
                };
                match event {
                    MultipartEvent::Data(d) if *part == Part::File => {
                        self.bytes += d.len() as u64;
                        self.piece.extend_from_slice(d);
                    }
                    MultipartEvent::Data(_) => {}
                    // Only the first `file` part is the upload; what follows is ignored.
                    MultipartEvent::PartStart(_)
                    | MultipartEvent::PartEnd
                    | MultipartEvent::End => *part = Part::Other,
                }
                bytes = &bytes[n..];
            },
        }
    }

    /// The end of the body: a form must be complete.
    fn finish(&mut self) -> Result<(), MultipartError> {
        match &mut self.source {
            Source::Raw => Ok(()),
            Source::Form(form, _) => form.finish(),
        }
    }
}

/// A file on its way to its task thread.
#[derive(Debug)]
pub struct Transfer {
    task: TaskId,
    file: Incoming,
}

/// One upload request's body, by phase (see the module documentation).
#[derive(Debug)]
pub enum Upload {
    /// A multipart form before its `file` part: no task yet.
    AwaitingFile(MultipartParser),
    /// Admitted, but the task could not begin yet (its thread's queue is full, or the run is
    /// renewing its task ids): the connection is not read until `begin` is taken.
    Starting(Incoming),
    /// File bytes flow to the task thread.
    Receiving(Transfer),
    /// The thread's queue is full: `piece` waits to be handed over (then the `finish`, if the
    /// body has `ended`), and the connection is not read meanwhile.
    Stalled {
        /// The transfer.
        transfer: Transfer,
        /// The piece the queue refused (empty when only the `finish` waits).
        piece: Vec<u8>,
        /// The body has ended: queue the `finish` after the piece.
        ended: bool,
    },
    /// Everything, `finish` included, is with the thread: the answer waits for the verdict
    /// (the body sealed on disk, or the task failed), and the connection is not read meanwhile.
    Sealing(Transfer),
    /// The answer is decided: a `202` or `503` once sealed or failed, or a refusal, for which
    /// the rest of the body is read and dropped first.
    Decided(Response),
    /// The client left or the request failed: nothing more happens here (the task, if any,
    /// was aborted, or goes on without an answer when it was already sealing).
    Abandoned,
}

/// What an upload needs from the connection after a step.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading (or, if the upload is `Decided` and its body has ended, answer now).
    Go,
    /// Stop reading and retry shortly (`Starting` or `Stalled`: a task queue is full).
    Pause,
    /// Stop reading until this task's verdict comes (`Sealing`).
    Wait(TaskId),
}

/// How an upload begins, decided at the request head.
pub enum Start {
    /// The body goes to this upload (which may be `Starting`: then pause at once).
    Upload(Box<Upload>),
    /// Refused; answer once the body has been read (or at once if it has none).
    Refuse(Response),
    /// Refused and the body is not worth reading: answer now and close.
    RefuseNow(Response),
}

impl Upload {
    /// Judges the head of `POST /upload-file`.
    pub fn start(uploads: &mut Uploads, head: &RequestHead) -> Start {
        let content_type = head.content_type.as_deref().unwrap_or("");
        let is_multipart = content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data");
        if is_multipart {
            return match MultipartParser::from_content_type(content_type) {
                Ok(form) => Start::Upload(Box::new(Upload::AwaitingFile(form))),
                Err(e) => Start::Refuse(Response::text(e.status(), e.reason())),
            };
        }
        let Some(raw) = head.query.as_deref().and_then(|q| query_param(q, "name")) else {
            return Start::Refuse(Response::text(
                400,
                "send multipart/form-data with a `file` field, or a raw body with ?name=FILE",
            ));
        };
        let Some(name) = filename::sanitize(&raw) else {
            return Start::Refuse(Response::text(400, "unusable file name"));
        };
        match uploads.start_task(&name, &raw) {
            Ok(begun) => Start::Upload(Box::new(Upload::begun(
                begun,
                Incoming::new(name, raw, Source::Raw),
            ))),
            Err(refusal) => Start::RefuseNow(refusal),
        }
    }

    fn begun(begun: Begun, file: Incoming) -> Upload {
        match begun {
            Begun::Now(task) => Upload::Receiving(Transfer { task, file }),
            Begun::Later => Upload::Starting(file),
        }
    }

    /// Waiting for a task queue or a verdict: the connection must not be read.
    pub fn waits(&self) -> bool {
        matches!(
            self,
            Upload::Starting(_) | Upload::Stalled { .. } | Upload::Sealing(_)
        )
    }

    /// The answer is known (send it once the body has ended).
    pub fn is_decided(&self) -> bool {
        matches!(self, Upload::Decided(_))
    }

    /// Body bytes arrived.
    pub fn on_body(&mut self, uploads: &mut Uploads, bytes: &[u8]) -> Flow {
        if let Err(refusal) = self.take_in(uploads, bytes) {
            self.refuse(uploads, refusal);
            return Flow::Go;
        }
        match self {
            Upload::Starting(_) => Flow::Pause,
            Upload::Receiving(t) if t.file.piece.len() >= UPLOAD_PIECE => {
                self.hand_over(uploads, false)
            }
            _ => Flow::Go,
        }
    }

    /// Feeds body bytes in: to the file, or (before the `file` part of a form) to the parser,
    /// starting the task when the `file` part begins.
    fn take_in(&mut self, uploads: &mut Uploads, mut bytes: &[u8]) -> Result<(), Response> {
        let refused = |e: MultipartError| Response::text(e.status(), e.reason());
        loop {
            match self {
                Upload::Starting(file) | Upload::Receiving(Transfer { file, .. }) => {
                    return file.take_in(bytes).map_err(refused);
                }
                Upload::AwaitingFile(form) => {
                    let (n, event) = match form.feed(bytes).map_err(refused)? {
                        (_, None) => return Ok(()),
                        (n, Some(event)) => (n, event),
                    };
                    let file = match event {
                        MultipartEvent::PartStart(p) if p.name == "file" => p.filename,
                        _ => None,
                    };
                    bytes = &bytes[n..];
                    let Some(raw) = file else { continue };
                    let Some(name) = filename::sanitize(&raw) else {
                        return Err(Response::text(400, "unusable file name"));
                    };
                    let begun = uploads.start_task(&name, &raw)?;
                    if let Upload::AwaitingFile(form) = self.take() {
                        let file = Incoming::new(name, raw, Source::Form(form, Part::File));
                        *self = Upload::begun(begun, file);
                    }
                }
                // A decided body is read and dropped; a stalled or sealing one gets no bytes.
                _ => return Ok(()),
            }
        }
    }

    /// The body is complete. `Go`: answer now (`into_response`); `Pause` or `Wait`: not yet.
    pub fn on_end(&mut self, uploads: &mut Uploads) -> Flow {
        let checked = match self {
            Upload::AwaitingFile(form) => Err(match form.finish() {
                Err(e) => Response::text(e.status(), e.reason()),
                Ok(()) => Response::text(400, "the form has no `file` field"),
            }),
            Upload::Receiving(Transfer { file, .. }) => file
                .finish()
                .map_err(|e| Response::text(e.status(), e.reason())),
            // Reads pause while `Starting`, so the end of the body is never seen in it.
            Upload::Starting(_) => Err(Response::text(500, "upload ended before it began")),
            _ => Ok(()),
        };
        if let Err(refusal) = checked {
            self.refuse(uploads, refusal);
            return Flow::Go;
        }
        match self {
            Upload::Receiving(_) => self.hand_over(uploads, true),
            _ => Flow::Go,
        }
    }

    /// A waiting upload tries again. `Go`: it moved on (if it is `Decided`, answer now; else
    /// read on); `Pause` or `Wait`: not yet.
    pub fn retry(&mut self, uploads: &mut Uploads) -> Flow {
        match self.take() {
            Upload::Starting(file) => match uploads.retry_start(&file) {
                Some(task) => {
                    let full = file.piece.len() >= UPLOAD_PIECE;
                    *self = Upload::Receiving(Transfer { task, file });
                    if full {
                        self.hand_over(uploads, false)
                    } else {
                        Flow::Go
                    }
                }
                None => {
                    *self = Upload::Starting(file);
                    Flow::Pause
                }
            },
            Upload::Stalled {
                mut transfer,
                piece,
                ended,
            } => {
                transfer.file.piece = piece;
                *self = Upload::Receiving(transfer);
                self.hand_over(uploads, ended)
            }
            Upload::Sealing(transfer) => {
                *self = Upload::Sealing(transfer);
                self.decide(uploads)
            }
            other => {
                *self = other;
                Flow::Go
            }
        }
    }

    /// Hands the piece over, then (when the body has `ended`) queues the `finish`.
    fn hand_over(&mut self, uploads: &mut Uploads, ended: bool) -> Flow {
        let Upload::Receiving(transfer) = self else {
            return Flow::Go;
        };
        let stalled = match uploads.hand_over(transfer) {
            Err(piece) => piece,
            Ok(()) if !ended => return Flow::Go,
            Ok(()) => match uploads.finish(transfer.task) {
                Ok(()) => {
                    if let Upload::Receiving(transfer) = self.take() {
                        *self = Upload::Sealing(transfer);
                    }
                    return self.decide(uploads);
                }
                Err(QueueFull(())) => Vec::new(),
            },
        };
        if let Upload::Receiving(transfer) = self.take() {
            *self = Upload::Stalled {
                transfer,
                piece: stalled,
                ended,
            };
        }
        Flow::Pause
    }

    /// A `Sealing` upload whose verdict is in becomes `Decided`; else it waits.
    fn decide(&mut self, uploads: &Uploads) -> Flow {
        let Upload::Sealing(t) = self else {
            return Flow::Go;
        };
        let answer = match uploads.tasks.status(t.task) {
            // Without a store (or a task forgotten) there is nothing to wait for.
            None => Some(accepted(t, "and handed it to a background task")),
            Some(TaskStatus::Sealed { .. } | TaskStatus::Done { .. }) => Some(accepted(
                t,
                "and saved it to disk; naming and logging it in the background",
            )),
            Some(TaskStatus::Unavailable(e)) => Some(
                Response::text(
                    503,
                    &format!("cannot store uploads right now ({e}), try again later"),
                )
                .header("Retry-After", "1"),
            ),
            Some(TaskStatus::Failed(e)) => {
                Some(accepted(t, &format!("but could not save it: {e}")))
            }
            Some(TaskStatus::Queued | TaskStatus::Running) => None,
        };
        match answer {
            Some(response) => {
                *self = Upload::Decided(response);
                Flow::Go
            }
            None => Flow::Wait(t.task),
        }
    }

    /// Moves the phase out to build the next one from it (`Abandoned`, which owns nothing,
    /// stands in for the instant between).
    fn take(&mut self) -> Upload {
        std::mem::replace(self, Upload::Abandoned)
    }

    /// Fails the upload with `refusal` (its task, if any, is aborted).
    fn refuse(&mut self, uploads: &mut Uploads, refusal: Response) {
        self.abort(uploads);
        *self = Upload::Decided(refusal);
    }

    /// The client is gone or the request failed: a task whose `finish` was not queued is
    /// aborted (its temporary file removed). A `Sealing` upload is kept: it was all received,
    /// and it ends `done` or `failed` on its own. Afterwards the upload is `Abandoned`, so a
    /// second call does nothing.
    pub fn abort(&mut self, uploads: &mut Uploads) {
        match self.take() {
            Upload::Receiving(t) | Upload::Stalled { transfer: t, .. } => uploads.abort(t.task),
            Upload::Starting(_) => uploads.starting -= 1,
            Upload::Sealing(t) => {
                uploads.awaiting.remove(&t.task);
            }
            Upload::AwaitingFile(_) | Upload::Decided(_) | Upload::Abandoned => {}
        }
    }

    /// The answer once the body is complete: what was decided.
    pub fn into_response(self) -> Response {
        match self {
            Upload::Decided(response) => response,
            _ => Response::text(500, "upload answered before it was decided"),
        }
    }
}

/// The `202` of a task: its message says how far it got.
fn accepted(t: &Transfer, how: &str) -> Response {
    let mut body = String::from("{\"message\": \"");
    json_escape(
        &format!("received {} ({} bytes) {how}", t.file.name, t.file.bytes),
        &mut body,
    );
    body.push_str(&format!("\", \"task\": {}}}", t.task));
    Response::json(202, body)
}
