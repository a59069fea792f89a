//! The HTTP/1.1 service: routes, uploads handed to background tasks, and the WebSocket upgrade.
//!
//! This file turns what the sans-IO `http::RequestParser` reports (a head, body slices, the end
//! of a request) into responses queued through the loop's `Context`. It owns the per-connection
//! request state (`HttpConn`, allocated only while a request is in progress: an idle keep-alive
//! connection costs a null pointer), the timers of a request (the header deadline against
//! slowloris, the keep-alive timeout) and the upload flow:
//!
//! 1. `POST /upload-file` head: name the file (`?name=` or the multipart `file` part's filename,
//!    sanitized) and `begin` a task in the `UploadStore`; answer `100 Continue` if asked.
//! 2. Body slices are copied into 64 KiB pieces and handed to the task's worker thread; when its
//!    queue is full the connection stops reading (TCP pushes back on the client) and retries on a
//!    short timer, so memory stays bounded whatever the upload's size.
//! 3. End of body: `finish` the task and answer `202 {"message", "task"}` at once; the worker
//!    fsyncs, renames and logs the upload after the response, and reports through the `Waker`.

use crate::handler::{CloseReason, ConnId, Context};
use crate::http::filename;
use crate::http::multipart::{MultipartEvent, MultipartParser};
use crate::http::request::{BodyFraming, Event, Limits, Method, RequestHead, RequestParser};
use crate::http::response::{json_escape, write_error, ResponseWriter, CONTINUE};
use crate::http::HttpError;
use crate::server::{Conn, Server};
use crate::upload_store::{QueueFull, TaskId, TaskStatus, TaskUpdate};
#[cfg(feature = "websocket")]
use crate::ws_service::Endpoint;
use log::{debug, info, warn};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

const LOG: &str = "readyloop::http";

/// Upload bytes are handed to the worker in pieces of this size: 64 KiB, one read buffer's
/// worth, so a piece costs one queue slot and one `write` on the worker.
const UPLOAD_PIECE: usize = 64 * 1024;
/// When the worker's queue is full, try again after this long (one timer tick).
const STALL_RETRY: Duration = Duration::from_millis(10);
/// A request body must bring this many bytes (1 KiB) per `--header-timeout` to keep its
/// connection: at the default 10 s, at least ~100 bytes/s.
const MIN_BODY_PROGRESS: usize = 1024;
/// Finished tasks remembered for `GET /tasks/ID`: the newest 10,000 (about 1 MiB).
const TASKS_KEPT: usize = 10_000;

/// The chat page served at `GET /`.
const CHAT_PAGE: &[u8] = include_bytes!("chat.html");

/// State of one HTTP connection while a request is in progress.
#[derive(Debug)]
pub struct HttpConn {
    parser: RequestParser,
    request: Option<Request>,
    /// Body bytes received since the request deadline was last pushed back.
    body_progress: usize,
}

#[derive(Debug)]
struct Request {
    keep_alive: bool,
    head_only: bool,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A response prepared at the head, sent once the (discarded) body has been read.
    Respond(Response),
    /// An upload in progress.
    Upload(Box<Upload>),
}

#[derive(Debug)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, &'static str)>,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    fn json(status: u16, body: String) -> Response {
        Response::new(status, "application/json", body)
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Response {
        self.headers.push((name, value));
        self
    }

    fn write(&self, out: &mut Vec<u8>, close: bool, head_only: bool) {
        let mut w = ResponseWriter::new(out, self.status).content_type(self.content_type);
        for (name, value) in &self.headers {
            w = w.header(name, value);
        }
        w.close(close).head_only(head_only).body(&self.body);
    }
}

#[derive(Debug)]
struct Upload {
    /// The task, once the file is named (at the head for raw bodies, at the `file` part for
    /// multipart ones).
    task: Option<TaskId>,
    /// The name the client gave, sanitized.
    name: String,
    multipart: Option<MultipartParser>,
    /// Inside the multipart `file` part.
    in_file: bool,
    /// Body bytes not yet handed to the worker.
    piece: Vec<u8>,
    /// A piece the worker's queue refused; nothing is read until it is taken.
    stalled: Option<Vec<u8>>,
    /// The body has ended and `finish` still has to be queued.
    finish_pending: bool,
    bytes: u64,
    /// The upload failed while the body was still arriving: the answer, sent at its end.
    error: Option<(u16, &'static str)>,
}

/// What became of a request after an event.
enum Step {
    Continue,
    /// Reading is paused until the worker takes the stalled piece.
    Stalled,
    /// The connection is closing; stop parsing.
    Closed,
    /// The connection became a WebSocket.
    #[cfg(feature = "websocket")]
    Upgraded(Endpoint),
}

/// Background tasks and their status, for `GET /tasks/ID` and `/stats`.
#[derive(Debug, Default)]
pub struct Tasks {
    status: HashMap<TaskId, (TaskStatus, String)>,
    finished: VecDeque<TaskId>,
    /// Tasks accepted since start.
    pub queued_total: u64,
    /// Tasks done since start.
    pub done: u64,
    /// Tasks failed since start.
    pub failed: u64,
}

impl Tasks {
    fn queued(&mut self, task: TaskId, name: &str) {
        self.queued_total += 1;
        self.status
            .insert(task, (TaskStatus::Queued, name.to_string()));
    }

    /// Applies a worker's report.
    pub fn update(&mut self, update: TaskUpdate) {
        let Some(entry) = self.status.get_mut(&update.task) else {
            return;
        };
        match &update.status {
            TaskStatus::Done { stored, bytes, .. } => {
                info!(target: LOG, "task {}: saved {stored:?} ({bytes} bytes)", update.task);
                self.done += 1;
                self.finished.push_back(update.task);
            }
            TaskStatus::Failed(e) => {
                warn!(target: LOG, "task {}: failed: {e}", update.task);
                self.failed += 1;
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

    /// Tasks accepted and not yet done or failed.
    pub fn in_flight(&self) -> u64 {
        self.queued_total - self.done - self.failed
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

/// The value of `key` in a query string, percent-decoded (`+` is a space).
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Server {
    fn limits(&self) -> Limits {
        Limits {
            max_body: self.config.web.max_body,
            ..Limits::default()
        }
    }

    fn take_http(cx: &mut Context<'_, Self>) -> Option<Box<HttpConn>> {
        match cx.state() {
            Conn::Http(slot) => slot.take(),
            _ => None,
        }
    }

    fn put_http(cx: &mut Context<'_, Self>, st: Option<Box<HttpConn>>) {
        if let Conn::Http(slot) = cx.state() {
            *slot = st;
        }
    }

    pub(crate) fn http_open(&mut self, cx: &mut Context<'_, Self>) {
        // The first request head must arrive within the header timeout.
        let id = cx.id();
        cx.set_timer(id, self.config.web.header_timeout);
    }

    pub(crate) fn http_data(&mut self, cx: &mut Context<'_, Self>, data: &mut [u8]) -> usize {
        let id = cx.id();
        let mut st = match Self::take_http(cx) {
            Some(st) => st,
            None => {
                // A new request begins: its head has `header_timeout` to arrive, however
                // slowly its bytes trickle in.
                cx.set_timer(id, self.config.web.header_timeout);
                Box::new(HttpConn {
                    parser: RequestParser::new(self.limits()),
                    request: None,
                    body_progress: 0,
                })
            }
        };
        if let Some(Request {
            kind: Kind::Upload(up),
            ..
        }) = &st.request
        {
            if up.stalled.is_some() || up.finish_pending {
                // Paused: these bytes wait in the loop's buffer until the worker catches up.
                Self::put_http(cx, Some(st));
                return 0;
            }
        }
        let mut used = 0;
        loop {
            let parsed = st.parser.parse(&data[used..]);
            let (n, event) = match parsed {
                Ok(x) => x,
                Err(e) => {
                    self.fail_request(cx, &mut st, &e);
                    Self::put_http(cx, Some(st));
                    return data.len();
                }
            };
            used += n;
            let step = match event {
                None => break,
                Some(Event::Head(head)) => self.on_head(cx, &mut st, *head),
                Some(Event::Body(bytes)) => self.on_body(cx, &mut st, bytes),
                Some(Event::End) => self.on_end(cx, &mut st),
            };
            match step {
                Step::Continue => {}
                Step::Stalled => {
                    Self::put_http(cx, Some(st));
                    return used;
                }
                Step::Closed => {
                    Self::put_http(cx, Some(st));
                    return data.len();
                }
                #[cfg(feature = "websocket")]
                Step::Upgraded(endpoint) => {
                    self.ws_upgraded(cx, endpoint);
                    return used + self.ws_data(cx, &mut data[used..]);
                }
            }
        }
        self.settle(cx, st, used == data.len());
        used
    }

    /// After processing: an idle connection drops its request state and waits for the next
    /// request under the keep-alive timeout; a busy one keeps it.
    fn settle(&mut self, cx: &mut Context<'_, Self>, st: Box<HttpConn>, all_used: bool) {
        if st.request.is_none() && st.parser.is_idle() && all_used {
            let id = cx.id();
            cx.set_timer(id, self.config.web.keepalive_timeout);
            Self::put_http(cx, None);
        } else {
            Self::put_http(cx, Some(st));
        }
    }

    fn fail_request(&mut self, cx: &mut Context<'_, Self>, st: &mut HttpConn, e: &HttpError) {
        let id = cx.id();
        debug!(target: LOG, "conn {id}: {} {}", e.status, e.reason);
        if let Some(Request {
            kind: Kind::Upload(up),
            ..
        }) = st.request.take()
        {
            self.abort_upload(&up);
        }
        let mut out = Vec::new();
        write_error(&mut out, e);
        cx.send(id, out);
        cx.close(id);
    }

    fn abort_upload(&mut self, up: &Upload) {
        if let (Some(task), Some(store)) = (up.task, self.store.as_ref()) {
            if !up.finish_pending || up.stalled.is_some() {
                store.abort(task);
            }
        }
    }

    fn on_head(
        &mut self,
        cx: &mut Context<'_, Self>,
        st: &mut HttpConn,
        head: RequestHead,
    ) -> Step {
        let id = cx.id();
        debug!(target: LOG, "conn {id}: {} {}{}{} HTTP/1.{}", head.method, head.path,
            if head.query.is_some() { "?" } else { "" }, head.query.as_deref().unwrap_or(""),
            head.version_minor);
        // The head is complete: from here the request is bounded by the body's own pace.
        cx.set_timer(id, self.config.web.header_timeout);
        let keep_alive = head.keep_alive && !cx.shutting_down();
        let head_only = head.method == Method::Head;
        let has_body = head.body != BodyFraming::None;
        let kind = match self.route(cx, &head) {
            Ok(kind) => kind,
            Err(step) => return step,
        };
        if head.expect_continue && has_body {
            match &kind {
                Kind::Upload(_) => {
                    cx.send(id, CONTINUE);
                }
                Kind::Respond(resp) => {
                    // Refused before the body was sent: answer now and close rather than read
                    // a body the client has not sent yet (RFC 9110 §10.1.1).
                    let mut out = Vec::new();
                    resp.write(&mut out, true, head_only);
                    cx.send(id, out);
                    cx.close(id);
                    return Step::Closed;
                }
            }
        }
        st.request = Some(Request {
            keep_alive,
            head_only,
            kind,
        });
        Step::Continue
    }

    /// Decides what a request gets. `Err` means the connection was already dealt with.
    fn route(&mut self, cx: &mut Context<'_, Self>, head: &RequestHead) -> Result<Kind, Step> {
        let get = matches!(head.method, Method::Get | Method::Head);
        let respond = |r: Response| Ok(Kind::Respond(r));
        if let Method::Other(_) = head.method {
            return respond(Response::text(501, "method not implemented"));
        }
        let path = head.path.as_str();
        match path {
            "/" if get => respond(Response::new(200, "text/html; charset=utf-8", CHAT_PAGE)),
            "/healthz" if get => respond(Response::new(200, "text/plain; charset=utf-8", "ok")),
            "/stats" if get => {
                // `?all=1`: every worker of `serve --workers N` summed (crate::workers).
                let all = head.query.as_deref().and_then(|q| query_param(q, "all"));
                let summed = (all.as_deref() == Some("1"))
                    .then(|| crate::workers::all_stats_json(self, cx))
                    .flatten();
                respond(Response::json(
                    200,
                    summed.unwrap_or_else(|| self.stats_json(cx)),
                ))
            }
            "/" | "/healthz" | "/stats" => {
                respond(Response::text(405, "method not allowed").header("Allow", "GET, HEAD"))
            }
            "/upload-file" if head.method == Method::Post => self.begin_upload(cx, head),
            "/upload-file" => {
                respond(Response::text(405, "method not allowed").header("Allow", "POST"))
            }
            #[cfg(feature = "websocket")]
            "/ws" | "/echo" => self.upgrade(cx, head),
            _ => match path.strip_prefix("/tasks/") {
                Some(task) if get => {
                    match task.parse::<TaskId>().ok().and_then(|t| self.tasks.json(t)) {
                        Some(json) => respond(Response::json(200, json)),
                        None => respond(Response::text(404, "no such task")),
                    }
                }
                Some(_) => {
                    respond(Response::text(405, "method not allowed").header("Allow", "GET, HEAD"))
                }
                None => respond(Response::text(404, "not found")),
            },
        }
    }

    /// The Redis fields of `/stats` in a build without `redis`: the same as a server started
    /// without `--redis`.
    #[cfg(not(feature = "redis"))]
    fn redis_stats_json(&self) -> String {
        ", \"redis_connected\": false, \"redis_unrelayed\": 0".to_string()
    }

    fn stats_json(&self, cx: &Context<'_, Self>) -> String {
        let s = cx.stats();
        let conns: Vec<String> = self
            .open_connections(cx)
            .iter()
            .map(|(name, n)| format!("\"{name}\": {n}"))
            .collect();
        format!(
            "{{\"connections\": {{{}}}, \"accepted_total\": {}, \"bytes_read\": {}, \
             \"bytes_written\": {}, \"loop_iterations\": {}, \"tasks_queued\": {}, \
             \"tasks_in_flight\": {}, \"tasks_done\": {}, \"tasks_failed\": {}, \
             \"uptime_s\": {:.3}, \"pid\": {}{}}}",
            conns.join(", "),
            s.accepted_total,
            s.bytes_read,
            s.bytes_written,
            s.loop_iterations,
            self.tasks.queued_total,
            self.tasks.in_flight(),
            self.tasks.done,
            self.tasks.failed,
            s.started.elapsed().as_secs_f64(),
            std::process::id(),
            self.redis_stats_json()
        )
    }

    #[cfg(feature = "websocket")]
    fn upgrade(&mut self, cx: &mut Context<'_, Self>, head: &RequestHead) -> Result<Kind, Step> {
        use crate::ws::handshake;
        let endpoint = if head.path == "/ws" {
            Endpoint::Broadcast
        } else {
            Endpoint::Echo
        };
        let refuse = |r: Response| Ok(Kind::Respond(r));
        if !head.wants_websocket() {
            return refuse(
                Response::text(426, "this endpoint speaks WebSocket")
                    .header("Upgrade", "websocket")
                    .header("Sec-WebSocket-Version", "13"),
            );
        }
        if head.method != Method::Get {
            return refuse(
                Response::text(405, "WebSocket upgrades use GET").header("Allow", "GET"),
            );
        }
        if head.version_minor != 1 || head.body != BodyFraming::None {
            return refuse(Response::text(400, "bad WebSocket upgrade request"));
        }
        if head.ws_version.as_deref() != Some(handshake::VERSION) {
            return refuse(
                Response::text(426, "unsupported WebSocket version")
                    .header("Sec-WebSocket-Version", "13"),
            );
        }
        let Some(key) = head
            .ws_key
            .as_deref()
            .filter(|k| handshake::validate_key(k))
        else {
            return refuse(Response::text(400, "bad Sec-WebSocket-Key"));
        };
        let allowed = &self.config.web.allowed_origins;
        if !allowed.is_empty() && !head.origin.as_ref().is_some_and(|o| allowed.contains(o)) {
            warn!(target: LOG, "conn {}: WebSocket origin {:?} refused", cx.id(), head.origin);
            return refuse(Response::text(403, "origin not allowed"));
        }
        let id = cx.id();
        cx.send(id, handshake::response(&handshake::accept_key(key)));
        Err(Step::Upgraded(endpoint))
    }

    fn begin_upload(
        &mut self,
        cx: &mut Context<'_, Self>,
        head: &RequestHead,
    ) -> Result<Kind, Step> {
        let refuse = |status: u16, msg: &str| Ok(Kind::Respond(Response::text(status, msg)));
        let is_multipart = head.content_type.as_deref().is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
        let mut up = Upload {
            task: None,
            name: String::new(),
            multipart: None,
            in_file: false,
            piece: Vec::new(),
            stalled: None,
            finish_pending: false,
            bytes: 0,
            error: None,
        };
        if is_multipart {
            match MultipartParser::from_content_type(head.content_type.as_deref().unwrap_or("")) {
                Ok(mp) => up.multipart = Some(mp),
                Err(e) => return refuse(e.status(), e.reason()),
            }
        } else {
            let Some(raw) = head.query.as_deref().and_then(|q| query_param(q, "name")) else {
                return refuse(
                    400,
                    "send multipart/form-data with a `file` field, or a raw body with ?name=FILE",
                );
            };
            let Some(name) = filename::sanitize(&raw) else {
                return refuse(400, "unusable file name");
            };
            match self.start_task(&name, &raw) {
                Ok(task) => {
                    up.task = Some(task);
                    up.name = name;
                }
                Err(resp) => return self.refuse_now(cx, resp, head),
            }
        }
        Ok(Kind::Upload(Box::new(up)))
    }

    /// A refusal that cannot wait for the body (the task queue is full): answer and close.
    fn refuse_now(
        &mut self,
        cx: &mut Context<'_, Self>,
        resp: Response,
        head: &RequestHead,
    ) -> Result<Kind, Step> {
        if head.body == BodyFraming::None {
            return Ok(Kind::Respond(resp));
        }
        let id = cx.id();
        let mut out = Vec::new();
        resp.write(&mut out, true, false);
        cx.send(id, out);
        cx.close(id);
        Err(Step::Closed)
    }

    /// Begins the background task saving `name` (sanitized; `original` is what the client
    /// sent, kept for the log). `Err` is the answer to give instead: 503 when the queue is full.
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
                Err(
                    Response::text(503, "too many uploads in progress, try again later")
                        .header("Retry-After", "1"),
                )
            }
        }
    }

    fn on_body(&mut self, cx: &mut Context<'_, Self>, st: &mut HttpConn, bytes: &[u8]) -> Step {
        let id = cx.id();
        // Body bytes keep the request alive, but only real progress does: the deadline is pushed
        // back once per `MIN_BODY_PROGRESS` bytes, so a body trickling a byte at a time (the
        // slowloris of bodies) still times out.
        st.body_progress += bytes.len();
        if st.body_progress >= MIN_BODY_PROGRESS {
            st.body_progress = 0;
            cx.set_timer(id, self.config.web.header_timeout);
        }
        let Some(Request {
            kind: Kind::Upload(up),
            ..
        }) = st.request.as_mut()
        else {
            return Step::Continue; // a body nobody asked for is read and dropped
        };
        if up.error.is_some() {
            return Step::Continue;
        }
        match up.multipart.as_mut() {
            None => {
                up.bytes += bytes.len() as u64;
                up.piece.extend_from_slice(bytes);
            }
            Some(mp) => {
                let mut rest = bytes;
                loop {
                    match mp.feed(rest) {
                        Ok((_, None)) => break,
                        Ok((n, Some(event))) => {
                            match event {
                                MultipartEvent::PartStart(part) => {
                                    up.in_file = false;
                                    if part.name == "file" && up.task.is_none() {
                                        let raw = part.filename.unwrap_or_default();
                                        match filename::sanitize(&raw) {
                                            None => up.error = Some((400, "unusable file name")),
                                            Some(name) => match self.start_task(&name, &raw) {
                                                Ok(task) => {
                                                    up.task = Some(task);
                                                    up.name = name;
                                                    up.in_file = true;
                                                }
                                                Err(_) => up.error = Some((
                                                    503,
                                                    "too many uploads in progress, try again later",
                                                )),
                                            },
                                        }
                                    }
                                }
                                MultipartEvent::Data(d) => {
                                    if up.in_file {
                                        up.bytes += d.len() as u64;
                                        up.piece.extend_from_slice(d);
                                    }
                                }
                                MultipartEvent::PartEnd | MultipartEvent::End => up.in_file = false,
                            }
                            rest = &rest[n..];
                            if up.error.is_some() {
                                break;
                            }
                        }
                        Err(e) => {
                            up.error = Some((e.status(), e.reason()));
                            break;
                        }
                    }
                }
                if up.error.is_some() {
                    self.abort_upload(up);
                    up.task = None;
                    up.piece = Vec::new();
                    return Step::Continue;
                }
            }
        }
        if up.piece.len() >= UPLOAD_PIECE {
            return self.hand_over(cx, up);
        }
        Step::Continue
    }

    /// Gives the buffered piece to the worker; on a full queue, keeps it and pauses reading.
    fn hand_over(&mut self, cx: &mut Context<'_, Self>, up: &mut Upload) -> Step {
        let (Some(task), Some(store)) = (up.task, self.store.as_ref()) else {
            up.piece = Vec::new();
            return Step::Continue;
        };
        if up.piece.is_empty() {
            return Step::Continue;
        }
        match store.write(task, std::mem::take(&mut up.piece)) {
            Ok(()) => Step::Continue,
            Err(QueueFull(piece)) => {
                let id = cx.id();
                debug!(target: LOG, "conn {id}: task {task} queue full, pausing reads");
                up.stalled = Some(piece);
                cx.pause_reading(id);
                cx.set_timer(id, STALL_RETRY);
                Step::Stalled
            }
        }
    }

    fn on_end(&mut self, cx: &mut Context<'_, Self>, st: &mut HttpConn) -> Step {
        let Some(request) = st.request.as_mut() else {
            return Step::Continue;
        };
        if let Kind::Upload(up) = &mut request.kind {
            if up.error.is_none() {
                if let Some(mp) = &up.multipart {
                    if let Err(e) = mp.finish() {
                        up.error = Some((e.status(), e.reason()));
                    } else if up.task.is_none() {
                        up.error = Some((400, "the form has no `file` field"));
                    }
                }
                if up.error.is_some() {
                    self.abort_upload(up);
                    up.task = None;
                }
            }
            if up.error.is_none() {
                up.finish_pending = true;
                if let Step::Stalled = self.hand_over(cx, up) {
                    return Step::Stalled;
                }
                if let Step::Stalled = self.queue_finish(cx, up) {
                    return Step::Stalled;
                }
            }
        }
        self.respond(cx, st)
    }

    fn queue_finish(&mut self, cx: &mut Context<'_, Self>, up: &mut Upload) -> Step {
        let (Some(task), Some(store)) = (up.task, self.store.as_ref()) else {
            return Step::Continue;
        };
        match store.finish(task) {
            Ok(()) => {
                up.finish_pending = false;
                Step::Continue
            }
            Err(QueueFull(())) => {
                let id = cx.id();
                cx.pause_reading(id);
                cx.set_timer(id, STALL_RETRY);
                Step::Stalled
            }
        }
    }

    /// Sends the answer to the finished request and readies the connection for the next.
    fn respond(&mut self, cx: &mut Context<'_, Self>, st: &mut HttpConn) -> Step {
        let id = cx.id();
        let Some(request) = st.request.take() else {
            return Step::Continue;
        };
        let close = !request.keep_alive || cx.shutting_down();
        let mut out = Vec::new();
        match request.kind {
            Kind::Respond(resp) => resp.write(&mut out, close, request.head_only),
            Kind::Upload(up) => match (up.error, up.task) {
                (Some((status, reason)), _) => {
                    Response::text(status, reason).write(&mut out, close, false)
                }
                (None, Some(task)) => {
                    let mut body = String::from("{\"message\": \"");
                    json_escape(
                        &format!(
                            "received {} ({} bytes); saving in the background",
                            up.name, up.bytes
                        ),
                        &mut body,
                    );
                    body.push_str(&format!("\", \"task\": {task}}}"));
                    Response::json(202, body).write(&mut out, close, false);
                }
                (None, None) => {
                    Response::text(500, "upload lost its task").write(&mut out, true, false)
                }
            },
        }
        cx.send(id, out);
        if close {
            cx.close(id);
            return Step::Closed;
        }
        Step::Continue
    }

    pub(crate) fn http_timer(&mut self, cx: &mut Context<'_, Self>) {
        let id = cx.id();
        let Some(mut st) = Self::take_http(cx) else {
            debug!(target: LOG, "conn {id}: keep-alive timeout");
            cx.close(id);
            return;
        };
        let stalled = matches!(&st.request, Some(Request { kind: Kind::Upload(up), .. }) if up.stalled.is_some() || up.finish_pending);
        if stalled {
            self.retry_stall(cx, st);
            return;
        }
        info!(target: LOG, "conn {id}: request timed out");
        self.fail_request(cx, &mut st, &HttpError::new(408, "request timed out"));
        Self::put_http(cx, Some(st));
    }

    fn retry_stall(&mut self, cx: &mut Context<'_, Self>, mut st: Box<HttpConn>) {
        let id = cx.id();
        let Some(Request {
            kind: Kind::Upload(up),
            ..
        }) = st.request.as_mut()
        else {
            Self::put_http(cx, Some(st));
            return;
        };
        if let Some(piece) = up.stalled.take() {
            up.piece = piece;
            if let Step::Stalled = self.hand_over(cx, up) {
                Self::put_http(cx, Some(st));
                return;
            }
        }
        if up.finish_pending {
            if let Step::Stalled = self.queue_finish(cx, up) {
                Self::put_http(cx, Some(st));
                return;
            }
            // The body had ended: answer now.
            if let Step::Closed = self.respond(cx, &mut st) {
                Self::put_http(cx, Some(st));
                return;
            }
        }
        debug!(target: LOG, "conn {id}: worker caught up, resuming reads");
        cx.set_timer(id, self.config.web.header_timeout);
        cx.resume_reading(id);
        // Any bytes kept while paused are offered again by the loop.
        self.settle(cx, st, false);
    }

    /// Graceful shutdown reached a connection in the middle of a request. One whose head is
    /// complete is answered first (the response closes the connection, so an upload in flight
    /// still gets its 202). One whose head is still arriving has been promised nothing: it gets
    /// `503` and a close now, instead of holding the exit until its header deadline (a
    /// slowloris would otherwise delay every shutdown by the full `--header-timeout`).
    pub(crate) fn http_shutdown(&mut self, cx: &mut Context<'_, Self>, id: ConnId) {
        let Some(Conn::Http(slot)) = cx.state_of(id) else {
            return;
        };
        if slot.as_ref().is_some_and(|st| st.request.is_some()) {
            return;
        }
        *slot = None;
        debug!(target: LOG, "conn {id}: shutting down with a request head half received");
        let mut out = Vec::new();
        write_error(&mut out, &HttpError::new(503, "server shutting down"));
        cx.send(id, out);
        cx.close(id);
    }

    pub(crate) fn http_eof(&mut self, cx: &mut Context<'_, Self>) {
        let id = cx.id();
        if let Some(st) = Self::take_http(cx) {
            if let Some(Request {
                kind: Kind::Upload(up),
                ..
            }) = &st.request
            {
                debug!(target: LOG, "conn {id}: client left mid-upload");
                self.abort_upload(up);
            }
        }
        cx.close(id);
    }

    pub(crate) fn http_closed(&mut self, id: ConnId, st: HttpConn, why: CloseReason) {
        if let Some(Request {
            kind: Kind::Upload(up),
            ..
        }) = &st.request
        {
            debug!(target: LOG, "conn {id}: closed mid-upload ({why:?})");
            self.abort_upload(up);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        assert_eq!(
            query_param("name=a%20b.txt&x=1", "name").as_deref(),
            Some("a b.txt")
        );
        assert_eq!(query_param("x=1&name=c+d", "name").as_deref(), Some("c d"));
        assert_eq!(query_param("name=%zz%4", "name").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("names=1", "name"), None);
    }
}
