//! Uploads: `POST /upload-file` bodies handed to background tasks, and the table of those tasks.
//!
//! `Uploads` is everything the server knows about background work: the handle of the task
//! threads (`store.rs`, where the disk IO happens) and `Tasks`, the status of every task for
//! `GET /tasks/ID` and `/stats`, updated from the threads' reports. `Upload` is one request's
//! body on its way there, as an enum of its phases:
//!
//! ```text
//!  head ──(multipart)──> AwaitingFile ──(the `file` part)──┐
//!    └──(?name=FILE)─────────────────────────────────────> Receiving ──(end of body)──> Complete
//!                                                            │   ▲                      (202)
//!                                    a task queue is full ── ▼   │ ── the thread caught up
//!                                                            Stalled
//!  any phase ──(bad name, bad form, queue full at start)──> Refused (answered at the end)
//! ```
//!
//! Bytes are copied into 64 KiB pieces and handed to the task's thread; when its queue is full
//! the upload is `Stalled` and the HTTP service stops reading the connection (TCP pushes back
//! on the client) and retries on a short timer, so memory stays bounded whatever the size.

use super::store::{QueueFull, TaskId, TaskStatus, TaskUpdate, UploadStore};
use crate::codec::http::filename;
use crate::codec::http::multipart::{MultipartError, MultipartEvent, MultipartParser};
use crate::codec::http::query::query_param;
use crate::codec::http::{RequestHead, Response};
use crate::codec::json::escape_into as json_escape;
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
                info!(target: LOG, "task {}: saved {stored:?} ({bytes} bytes)", update.task);
                self.counters.done += 1;
                self.finished.push_back(update.task);
            }
            TaskStatus::Failed(e) => {
                warn!(target: LOG, "task {}: failed: {e}", update.task);
                self.counters.failed += 1;
                self.finished.push_back(update.task);
            }
            _ => {}
        }
        entry.0 = update.status;
        while self.finished.len() > TASKS_KEPT {
            if let Some(old) = self.finished.pop_front() {
                self.status.remove(&old);
            }
        }
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
            TaskStatus::Failed(e) => {
                out.push_str(", \"error\": \"");
                json_escape(e, &mut out);
                out.push('"');
            }
            _ => {}
        }
        out.push('}');
        Some(out)
    }
}

/// The task threads and the table of their tasks.
pub struct Uploads {
    /// `None` until the server starts the threads (and in a server without an HTTP listener).
    store: Option<UploadStore>,
    tasks: Tasks,
}

impl Uploads {
    /// Uploads handed to `store` (`None`: uploads are refused with 503).
    pub fn new(store: Option<UploadStore>) -> Uploads {
        Uploads {
            store,
            tasks: Tasks::default(),
        }
    }

    /// Applies a task thread's report.
    pub fn update(&mut self, update: TaskUpdate) {
        self.tasks.update(update);
    }

    /// The `GET /tasks/ID` body of `task`.
    pub fn task_json(&self, task: TaskId) -> Option<String> {
        self.tasks.json(task)
    }

    /// Task counts since start.
    pub fn counters(&self) -> TaskCounters {
        self.tasks.counters
    }

    /// Stops the task threads, letting them finish what is queued (blocks: call after the loop).
    pub fn shut_down(&mut self) {
        if let Some(store) = self.store.take() {
            store.shutdown();
        }
    }

    /// Begins the task saving `name` (sanitized; `original` is what the client sent, kept for
    /// the log). `Err` is the answer to give instead: 503 when the queue is full.
    fn start_task(&mut self, name: &str, original: &str) -> Result<TaskId, Response> {
        let Some(store) = self.store.as_ref() else {
            return Err(Response::text(503, "uploads are not enabled"));
        };
        match store.begin_named(name, original) {
            Ok(task) => {
                self.tasks.queued(task, name);
                info!(target: LOG, "task {task}: upload of {name:?} started");
                Ok(task)
            }
            Err(QueueFull(())) => {
                warn!(target: LOG, "task queue full: refusing upload of {name:?}");
                Err(busy())
            }
        }
    }

    /// Hands `transfer`'s buffered piece to its thread; `Err` gives the piece back (queue full).
    fn hand_over(&self, transfer: &mut Transfer) -> Result<(), Vec<u8>> {
        let piece = std::mem::take(&mut transfer.piece);
        match self.store.as_ref() {
            Some(store) => store
                .write(transfer.task, piece)
                .map_err(|QueueFull(piece)| piece),
            None => Ok(()),
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

/// A file on its way to its task thread.
#[derive(Debug)]
pub struct Transfer {
    task: TaskId,
    /// The client's name for the file, sanitized.
    name: String,
    source: Source,
    /// File bytes received.
    bytes: u64,
    /// File bytes not yet handed to the thread.
    piece: Vec<u8>,
}

/// One upload request's body, by phase (see the module documentation).
#[derive(Debug)]
pub enum Upload {
    /// A multipart form before its `file` part: no task yet.
    AwaitingFile(MultipartParser),
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
    /// Everything, `finish` included, is with the thread: the answer is 202.
    Complete(Transfer),
    /// Failed while the body was still arriving: the rest is read and dropped, then answered.
    Refused(Response),
}

/// What an upload needs from the connection after a step.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Go,
    /// Stop reading until `retry` succeeds (a task queue is full).
    Pause,
}

/// How an upload begins, decided at the request head.
pub enum Start {
    /// The body goes to this upload.
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
            Ok(task) => Start::Upload(Box::new(Upload::Receiving(Transfer {
                task,
                name,
                source: Source::Raw,
                bytes: 0,
                piece: Vec::new(),
            }))),
            Err(refusal) => Start::RefuseNow(refusal),
        }
    }

    /// Waiting for a task queue: the connection must not be read.
    pub fn is_stalled(&self) -> bool {
        matches!(self, Upload::Stalled { .. })
    }

    /// Body bytes arrived.
    pub fn on_body(&mut self, uploads: &mut Uploads, bytes: &[u8]) -> Flow {
        if let Err(refusal) = self.take_in(uploads, bytes) {
            self.refuse(uploads, refusal);
            return Flow::Go;
        }
        match self {
            Upload::Receiving(t) if t.piece.len() >= UPLOAD_PIECE => self.hand_over(uploads, false),
            _ => Flow::Go,
        }
    }

    /// Feeds file bytes into the piece (through the multipart parser for a form).
    fn take_in(&mut self, uploads: &mut Uploads, mut bytes: &[u8]) -> Result<(), Response> {
        let refused = |e: MultipartError| Response::text(e.status(), e.reason());
        loop {
            match self {
                Upload::Receiving(Transfer {
                    source: Source::Raw,
                    bytes: total,
                    piece,
                    ..
                }) => {
                    *total += bytes.len() as u64;
                    piece.extend_from_slice(bytes);
                    return Ok(());
                }
                Upload::Receiving(Transfer {
                    source: Source::Form(form, part),
                    bytes: total,
                    piece,
                    ..
                }) => loop {
                    let (n, event) = match form.feed(bytes).map_err(refused)? {
                        (_, None) => return Ok(()),
                        (n, Some(event)) => (n, event),
                    };
                    match event {
                        MultipartEvent::Data(d) if *part == Part::File => {
                            *total += d.len() as u64;
                            piece.extend_from_slice(d);
                        }
                        MultipartEvent::Data(_) => {}
                        // Only the first `file` part is the upload; what follows is ignored.
                        MultipartEvent::PartStart(_)
                        | MultipartEvent::PartEnd
                        | MultipartEvent::End => *part = Part::Other,
                    }
                    bytes = &bytes[n..];
                },
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
                    let task = uploads.start_task(&name, &raw)?;
                    if let Upload::AwaitingFile(form) = self.take() {
                        *self = Upload::Receiving(Transfer {
                            task,
                            name,
                            source: Source::Form(form, Part::File),
                            bytes: 0,
                            piece: Vec::new(),
                        });
                    }
                }
                // A refused body is read and dropped; a stalled or complete one gets no bytes.
                _ => return Ok(()),
            }
        }
    }

    /// The body is complete. `Go`: answer now (`response`); `Pause`: a queue is full.
    pub fn on_end(&mut self, uploads: &mut Uploads) -> Flow {
        let checked = match self {
            Upload::AwaitingFile(form) => Err(match form.finish() {
                Err(e) => Response::text(e.status(), e.reason()),
                Ok(()) => Response::text(400, "the form has no `file` field"),
            }),
            Upload::Receiving(Transfer {
                source: Source::Form(form, _),
                ..
            }) => form
                .finish()
                .map_err(|e| Response::text(e.status(), e.reason())),
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

    /// A stalled upload tries its queue again. `Go`: it moved on (if it is `Complete`, answer
    /// now; else read on); `Pause`: still full.
    pub fn retry(&mut self, uploads: &mut Uploads) -> Flow {
        match self.take() {
            Upload::Stalled {
                mut transfer,
                piece,
                ended,
            } => {
                transfer.piece = piece;
                *self = Upload::Receiving(transfer);
                self.hand_over(uploads, ended)
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
                        *self = Upload::Complete(transfer);
                    }
                    return Flow::Go;
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

    /// Moves the phase out to build the next one from it (a placeholder that allocates
    /// nothing stands in for the instant between).
    fn take(&mut self) -> Upload {
        std::mem::replace(self, Upload::Refused(Response::new(500, "", Vec::new())))
    }

    /// Fails the upload with `refusal` (its task, if any, is aborted).
    fn refuse(&mut self, uploads: &mut Uploads, refusal: Response) {
        self.abort(uploads);
        *self = Upload::Refused(refusal);
    }

    /// The client is gone or the request failed: a task whose `finish` was not queued is
    /// aborted (its temporary file removed). A `Complete` upload is kept: it was all received.
    pub fn abort(&self, uploads: &Uploads) {
        match self {
            Upload::Receiving(t) | Upload::Stalled { transfer: t, .. } => uploads.abort(t.task),
            Upload::AwaitingFile(_) | Upload::Complete(_) | Upload::Refused(_) => {}
        }
    }

    /// The answer once the body is complete: 202 with the task, or the refusal.
    pub fn response(&self) -> Response {
        match self {
            Upload::Complete(t) => {
                let mut body = String::from("{\"message\": \"");
                json_escape(
                    &format!(
                        "received {} ({} bytes); saving in the background",
                        t.name, t.bytes
                    ),
                    &mut body,
                );
                body.push_str(&format!("\", \"task\": {}}}", t.task));
                Response::json(202, body)
            }
            Upload::Refused(refusal) => refusal.clone(),
            _ => Response::text(500, "upload answered before its body ended"),
        }
    }
}
