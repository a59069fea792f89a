//! The HTTP/1.1 service: the routes, the request timers, and uploads handed to background tasks.
//!
//! This file turns what the sans-IO `codec::http::RequestParser` reports (a head, body slices,
//! the end of a request) into responses queued through the loop's `Context`. It owns the
//! per-connection request state (`HttpConn`: nothing between requests, so an idle keep-alive
//! connection costs a null pointer; the loop keeps one emptied `Exchange` and one output buffer
//! for the next request, so a keep-alive `GET` costs no `malloc` of this file's), the timers of a
//! request (the header deadline against slowloris, the keep-alive timeout), and `uploads.rs` (`POST /upload-file`: the body goes to
//! a task thread, `202` once it is all in and safe on disk). The files below it: `store.rs`
//! (the task threads), `upload_dir.rs` (the upload dir's layout and locks), `recovery.rs`
//! (what a crashed run left, settled at start-up).
//!
//! The routing table is here, whole. Some routes are answered by the dispatcher because their
//! answer needs another service: `/stats` and `/metrics` (every service's counters) and the WebSocket
//! endpoints (`/ws`, `/echo`: the connection becomes a WebSocket). For those `on_data` stops
//! with `Progress::Delegate`; the dispatcher answers through `answer` or takes the connection
//! over, and calls `on_data` again with the rest of the bytes.

mod recovery;
mod store;
mod upload_dir;
pub mod uploads;

pub use self::store::{PastTask, TaskId, TaskStatus, TaskUpdate, TryLater, UploadStore};
use self::uploads::{Flow, Start, TaskCounters, Upload, Uploads};
use super::config::WebConfig;
use crate::codec::http::query::{path_id, query_param};
use crate::codec::http::request::{BodyFraming, Event, Limits, Method, RequestHead, RequestParser};
use crate::codec::http::response::{write_error, Persist, Response, CONTINUE};
use crate::codec::http::HttpError;
use crate::runtime::{CloseReason, ConnId, Context};
use log::{debug, info};
use std::time::Duration;

const LOG: &str = "readyloop::http";

/// When a task queue is full, try again after this long (one timer tick).
const STALL_RETRY: Duration = Duration::from_millis(10);
/// An upload waiting for its verdict (the body sealed on disk) is woken by the task thread's
/// report; this slow poll is only a safety net: 1 s. A slow disk never times such a request out.
const VERDICT_POLL: Duration = Duration::from_secs(1);
/// A request body must bring this many bytes (1 KiB) per `--header-timeout` to keep its
/// connection: at the default 10 s, at least ~100 bytes/s.
const MIN_BODY_PROGRESS: usize = 1024;
/// A response up to this size (4 KiB, the out queue's coalescing limit) is written into the
/// service's reused buffer and copied into the connection's queue; a larger one is written into
/// a buffer of its own, which the queue takes as it is.
const COPY_LIMIT: usize = 4096;

/// The chat page served at `GET /`.
const CHAT_PAGE: &[u8] = include_bytes!("chat.html");
/// The live page of the loop served at `GET /loop` with `--inspect` (fed by `/loop/ws`, see
/// `service::inspect`).
#[cfg(feature = "websocket")]
const LOOP_PAGE: &[u8] = include_bytes!("loop.html");

/// An HTTP connection's state: `None` between requests, the request in progress otherwise.
pub type HttpConn = Option<Box<Exchange>>;

/// One request in progress on a connection.
#[derive(Debug)]
pub struct Exchange {
    parser: RequestParser,
    /// `None` while the head is still arriving.
    request: Option<Request>,
    /// Body bytes received since the request deadline was last pushed back.
    body_progress: usize,
    /// The request deadline is to be armed `header_timeout` from now before `on_data` returns:
    /// once per call, however many times the call moved it (a new exchange, a complete head,
    /// body progress), and not at all when the call ends with the connection idle (its
    /// keep-alive timeout replaces it) or with a timer of its own (a pause).
    rearm: bool,
}

impl Exchange {
    fn new(limits: Limits) -> Exchange {
        Exchange {
            parser: RequestParser::new(limits),
            request: None,
            body_progress: 0,
            rearm: false,
        }
    }
}

#[derive(Debug)]
struct Request {
    keep_alive: bool,
    /// An HTTP/1.0 request asked for keep-alive: the answer must say it is granted (a 1.0
    /// client does not assume it, RFC 9112 §C.2.2).
    announce_keep_alive: bool,
    head_only: bool,
    /// `Expect: 100-continue` with a body: a refusal is answered at once, before the body.
    continue_wanted: bool,
    answer: Answer,
}

/// How a request is being answered.
#[derive(Debug)]
enum Answer {
    /// A response prepared at the head, sent once the (discarded) body has been read.
    Respond(Response),
    /// An upload in progress.
    Upload(Box<Upload>),
    /// The dispatcher is deciding (`Progress::Delegate`); it calls `answer` next.
    Delegated,
}

impl Exchange {
    fn upload(&mut self) -> Option<&mut Upload> {
        match &mut self.request {
            Some(Request {
                answer: Answer::Upload(up),
                ..
            }) => Some(up),
            _ => None,
        }
    }
}

/// A request this service parsed but the dispatcher answers.
#[derive(Debug)]
pub enum Delegated {
    /// `GET /stats` (`?all=1`: every worker summed).
    Stats {
        /// `?all=1` was asked.
        all: bool,
    },
    /// `GET /metrics` (`?all=1`: every worker summed, and each one's own).
    Metrics {
        /// `?all=1` was asked.
        all: bool,
    },
    /// `GET /ws` or `/echo` (an upgrade, or a request the WebSocket service refuses).
    WebSocket(Box<RequestHead>),
}

/// How far `on_data` got.
#[derive(Debug)]
pub enum Progress {
    /// This many bytes were used; wait for more (or the connection is closing).
    Used(usize),
    /// This many bytes were used, up to the end of a head the dispatcher must answer.
    Delegate(usize, Delegated),
}

/// What the parse loop does after one event.
enum Next {
    Parse,
    /// Reading is paused (an upload waits for its task queue).
    Pause,
    /// The connection is closing; stop parsing.
    Closed,
    Delegate(Delegated),
}

/// Where a request head goes.
enum Route {
    Respond(Response),
    Upload(Start),
    Stats {
        all: bool,
    },
    Metrics {
        all: bool,
    },
    #[cfg(feature = "websocket")]
    WebSocket,
}

/// The HTTP service.
pub struct HttpService {
    limits: Limits,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    uploads: Uploads,
    /// An emptied exchange (the parser idle, no request) kept for the next request: one per
    /// loop, not per connection, so an idle connection still holds none.
    spare: Option<Box<Exchange>>,
    /// The buffer small responses are written into before being copied to the connection's
    /// queue, reused (at most `COPY_LIMIT` bytes are kept).
    out: Vec<u8>,
    /// `--inspect`: `/loop` and `/loop/ws` are served.
    #[cfg(feature = "websocket")]
    inspect: bool,
}

impl HttpService {
    /// A service with `web`'s limits, handing uploads to `store` (`None`: uploads get 503).
    /// With a store, `GET /tasks/ID` also answers for the recent tasks of earlier runs.
    pub fn new(web: &WebConfig, store: Option<UploadStore>) -> HttpService {
        HttpService {
            limits: Limits {
                max_body: web.max_body,
                ..Limits::default()
            },
            header_timeout: web.header_timeout,
            keepalive_timeout: web.keepalive_timeout,
            uploads: Uploads::new(store, web.max_uploads),
            spare: None,
            out: Vec::new(),
            #[cfg(feature = "websocket")]
            inspect: web.inspect,
        }
    }

    /// Task counts since start.
    pub fn task_counters(&self) -> TaskCounters {
        self.uploads.counters()
    }

    /// Upload tasks not finished yet, by state: queued, running, sealed.
    pub fn unfinished_tasks(&self) -> [u64; 3] {
        self.uploads.unfinished()
    }

    /// A task thread's report. When it is the verdict an upload's answer waits for, that
    /// connection's timer is set to fire at once: `on_timer` answers it.
    pub fn task_update<S, M>(&mut self, cx: &mut Context<'_, S, M>, update: TaskUpdate) {
        if let Some(id) = self.uploads.update(update) {
            cx.set_timer(id, Duration::ZERO);
        }
    }

    /// Stops the task threads once the loop has ended (they have drained by then unless the
    /// shutdown timed out; queued work is still finished before this returns).
    pub fn shut_down(&mut self) {
        self.uploads.shut_down();
    }

    /// A client connected: its first request head must arrive within the header timeout.
    pub fn on_open<S, M>(&mut self, cx: &mut Context<'_, S, M>) {
        let id = cx.id();
        cx.set_timer(id, self.header_timeout);
    }

    /// Parses and answers requests in `data` until it runs out, an upload pauses, or a head
    /// needs the dispatcher.
    pub fn on_data<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        conn: &mut HttpConn,
        data: &[u8],
    ) -> Progress {
        let ex = match conn {
            Some(ex) => ex,
            None => {
                let limits = self.limits;
                let mut ex = self
                    .spare
                    .take()
                    .unwrap_or_else(|| Box::new(Exchange::new(limits)));
                // A new request begins: its head has `header_timeout` to arrive, however slowly
                // its bytes trickle in.
                ex.rearm = true;
                conn.insert(ex)
            }
        };
        if ex.upload().is_some_and(|up| up.waits()) {
            // Paused: these bytes wait in the loop's buffer until the task thread catches up.
            return Progress::Used(0);
        }
        let mut used = 0;
        loop {
            let (n, event) = match ex.parser.parse(&data[used..]) {
                Ok(x) => x,
                Err(e) => {
                    // Closing: the close has its own deadline.
                    ex.rearm = false;
                    self.fail_request(cx, ex, &e);
                    return Progress::Used(data.len());
                }
            };
            used += n;
            let next = match event {
                None => break,
                Some(Event::Head(head)) => self.on_head(cx, ex, head),
                Some(Event::Body(bytes)) => self.on_body(cx, ex, bytes),
                Some(Event::End) => self.on_end(cx, ex),
            };
            match next {
                Next::Parse => {}
                Next::Pause | Next::Closed => {
                    // A pause armed its own timer; a closing connection has the close's.
                    ex.rearm = false;
                    let n = if let Next::Pause = next {
                        used
                    } else {
                        data.len()
                    };
                    return Progress::Used(n);
                }
                Next::Delegate(d) => {
                    self.arm_deadline(cx, ex);
                    return Progress::Delegate(used, d);
                }
            }
        }
        self.settle(cx, conn, used == data.len());
        Progress::Used(used)
    }

    /// The dispatcher's answer to a delegated request. Returns false when the connection is
    /// closing (the answer went out at once, before a body the client was waiting to send).
    pub fn answer<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        conn: &mut HttpConn,
        response: Response,
    ) -> bool {
        let Some(request) = conn.as_mut().and_then(|ex| ex.request.as_mut()) else {
            return true;
        };
        request.answer = Answer::Respond(response);
        !matches!(self.refuse_before_body(cx, request), Next::Closed)
    }

    /// After processing: an idle connection drops its request state (kept as the loop's spare
    /// exchange) and waits for the next request under the keep-alive timeout; a busy one keeps
    /// it, under the request deadline.
    fn settle<S, M>(&mut self, cx: &mut Context<'_, S, M>, conn: &mut HttpConn, all_used: bool) {
        let Some(ex) = conn else {
            return;
        };
        if !(all_used && ex.request.is_none() && ex.parser.is_idle()) {
            self.arm_deadline(cx, ex);
            return;
        }
        let id = cx.id();
        cx.set_timer(id, self.keepalive_timeout);
        if let Some(mut ex) = conn.take() {
            if self.spare.is_none() {
                ex.body_progress = 0;
                ex.rearm = false;
                self.spare = Some(ex);
            }
        }
    }

    /// Arms the request deadline if this call moved it (`Exchange::rearm`).
    fn arm_deadline<S, M>(&self, cx: &mut Context<'_, S, M>, ex: &mut Exchange) {
        if std::mem::take(&mut ex.rearm) {
            let id = cx.id();
            cx.set_timer(id, self.header_timeout);
        }
    }

    fn fail_request<S, M>(&mut self, cx: &mut Context<'_, S, M>, ex: &mut Exchange, e: &HttpError) {
        let id = cx.id();
        debug!(target: LOG, "conn {id}: {} {}", e.status, e.reason);
        if let Some(up) = ex.upload() {
            up.abort(&mut self.uploads);
        }
        ex.request = None;
        let mut out = Vec::new();
        write_error(&mut out, e);
        cx.send(id, out);
        // A bad or refused request: the rest of it (a body, a pipelined request) may be on
        // its way, and a reset would destroy the error before the client reads it.
        cx.close_mid_input(id);
    }

    fn on_head<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        ex: &mut Exchange,
        head: Box<RequestHead>,
    ) -> Next {
        let id = cx.id();
        debug!(target: LOG, "conn {id}: {} {}{}{} HTTP/1.{}", head.method, head.path,
            if head.query.is_some() { "?" } else { "" }, head.query.as_deref().unwrap_or(""),
            head.version_minor);
        // The head is complete: from here the request is bounded by the body's own pace.
        ex.rearm = true;
        let has_body = head.body != BodyFraming::None;
        let mut request = Request {
            keep_alive: head.keep_alive && !cx.shutting_down(),
            announce_keep_alive: head.keep_alive && head.version_minor == 0,
            head_only: head.method == Method::Head,
            continue_wanted: head.expect_continue && has_body,
            answer: Answer::Delegated,
        };
        let route = self.route(&head);
        // Handed back to the parser once routed, for the next head to be built in; a WebSocket
        // request takes it to the dispatcher.
        #[cfg_attr(not(feature = "websocket"), allow(unused_mut))]
        let mut head = Some(head);
        let delegated = match route {
            Route::Respond(response) => {
                request.answer = Answer::Respond(response);
                None
            }
            Route::Upload(Start::Upload(up)) => {
                if request.continue_wanted {
                    cx.send(id, CONTINUE);
                }
                let starting = up.waits();
                request.answer = Answer::Upload(up);
                if starting {
                    // Admitted, but its task cannot begin yet: the body waits in the socket.
                    ex.request = Some(request);
                    return self.pause(cx);
                }
                None
            }
            Route::Upload(Start::Refuse(response)) => {
                request.answer = Answer::Respond(response);
                None
            }
            Route::Upload(Start::RefuseNow(response)) if has_body => {
                // Not worth reading a body we refuse anyway (too many uploads in progress).
                let mut out = Vec::new();
                response.write(&mut out, true, false);
                cx.send(id, out);
                // The body is still coming.
                cx.close_mid_input(id);
                return Next::Closed;
            }
            Route::Upload(Start::RefuseNow(response)) => {
                request.answer = Answer::Respond(response);
                None
            }
            Route::Stats { all } => Some(Delegated::Stats { all }),
            Route::Metrics { all } => Some(Delegated::Metrics { all }),
            #[cfg(feature = "websocket")]
            Route::WebSocket => head.take().map(Delegated::WebSocket),
        };
        if let Some(head) = head {
            ex.parser.recycle(head);
        }
        let next = self.refuse_before_body(cx, &mut request);
        ex.request = Some(request);
        match delegated {
            Some(d) => Next::Delegate(d),
            None => next,
        }
    }

    /// A request refused before its body was sent (`Expect: 100-continue`) is answered now
    /// and closed, rather than reading a body the client has not sent (RFC 9110 §10.1.1).
    fn refuse_before_body<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        request: &mut Request,
    ) -> Next {
        let Answer::Respond(response) = &request.answer else {
            return Next::Parse;
        };
        if !request.continue_wanted {
            return Next::Parse;
        }
        let id = cx.id();
        let mut out = Vec::new();
        response.write(&mut out, true, request.head_only);
        cx.send(id, out);
        cx.close(id);
        Next::Closed
    }

    /// Decides what a request gets.
    fn route(&mut self, head: &RequestHead) -> Route {
        let get = matches!(head.method, Method::Get | Method::Head);
        let respond = Route::Respond;
        if let Method::Other(_) = head.method {
            return respond(Response::text(501, "method not implemented"));
        }
        let path = head.path.as_str();
        match path {
            "/" if get => respond(Response::fixed(200, "text/html; charset=utf-8", CHAT_PAGE)),
            "/healthz" if get => respond(Response::fixed(200, "text/plain; charset=utf-8", b"ok")),
            "/stats" if get => {
                // `?all=1`: every worker of `serve --workers N` summed.
                let all = head.query.as_deref().and_then(|q| query_param(q, "all"));
                Route::Stats {
                    all: all.as_deref() == Some("1"),
                }
            }
            "/metrics" if get => {
                let all = head.query.as_deref().and_then(|q| query_param(q, "all"));
                Route::Metrics {
                    all: all.as_deref() == Some("1"),
                }
            }
            "/" | "/healthz" | "/stats" | "/metrics" => {
                respond(Response::text(405, "method not allowed").header("Allow", "GET, HEAD"))
            }
            "/upload-file" if head.method == Method::Post => {
                Route::Upload(Upload::start(&mut self.uploads, head))
            }
            "/upload-file" => {
                respond(Response::text(405, "method not allowed").header("Allow", "POST"))
            }
            #[cfg(feature = "websocket")]
            "/ws" | "/echo" => Route::WebSocket,
            #[cfg(feature = "websocket")]
            "/loop/ws" if self.inspect => Route::WebSocket,
            #[cfg(feature = "websocket")]
            "/loop" if get && self.inspect => {
                respond(Response::fixed(200, "text/html; charset=utf-8", LOOP_PAGE))
            }
            _ => match path.strip_prefix("/tasks/") {
                Some(task) if get => {
                    let json = path_id(task).and_then(|t| self.uploads.task_json(t));
                    match json {
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

    fn on_body<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        ex: &mut Exchange,
        bytes: &[u8],
    ) -> Next {
        // Body bytes keep the request alive, but only real progress does: the deadline is pushed
        // back once per `MIN_BODY_PROGRESS` bytes, so a body trickling a byte at a time (the
        // slowloris of bodies) still times out.
        ex.body_progress += bytes.len();
        if ex.body_progress >= MIN_BODY_PROGRESS {
            ex.body_progress = 0;
            ex.rearm = true;
        }
        // A body nobody asked for is read and dropped.
        match ex.upload().map(|up| up.on_body(&mut self.uploads, bytes)) {
            Some(Flow::Pause) => self.pause(cx),
            Some(Flow::Wait(task)) => self.wait_for_verdict(cx, task),
            _ => Next::Parse,
        }
    }

    fn on_end<S, M>(&mut self, cx: &mut Context<'_, S, M>, ex: &mut Exchange) -> Next {
        match ex.upload().map(|up| up.on_end(&mut self.uploads)) {
            Some(Flow::Pause) => self.pause(cx),
            Some(Flow::Wait(task)) => self.wait_for_verdict(cx, task),
            _ => self.respond(cx, ex),
        }
    }

    /// An upload's task queue is full (or its task cannot begin yet): stop reading and try
    /// again shortly.
    fn pause<S, M>(&mut self, cx: &mut Context<'_, S, M>) -> Next {
        let id = cx.id();
        debug!(target: LOG, "conn {id}: task queue full, pausing reads");
        cx.pause_reading(id);
        cx.set_timer(id, STALL_RETRY);
        Next::Pause
    }

    /// The body is with the task thread: stop reading (a pipelined request waits its turn)
    /// until `task_update` brings the verdict.
    fn wait_for_verdict<S, M>(&mut self, cx: &mut Context<'_, S, M>, task: TaskId) -> Next {
        let id = cx.id();
        debug!(target: LOG, "conn {id}: body complete, waiting for task {task} to seal it");
        self.uploads.await_verdict(task, id);
        cx.pause_reading(id);
        cx.set_timer(id, VERDICT_POLL);
        Next::Pause
    }

    /// Sends the answer to the finished request and readies the connection for the next.
    fn respond<S, M>(&mut self, cx: &mut Context<'_, S, M>, ex: &mut Exchange) -> Next {
        let id = cx.id();
        let Some(request) = ex.request.take() else {
            return Next::Parse;
        };
        let close = !request.keep_alive || cx.shutting_down();
        let persist = match (close, request.announce_keep_alive) {
            (true, _) => Persist::Close,
            (false, true) => Persist::KeepAlive,
            (false, false) => Persist::Default,
        };
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        match request.answer {
            Answer::Respond(response) => response.write_to(&mut out, persist, request.head_only),
            Answer::Upload(up) => up.into_response().write_to(&mut out, persist, false),
            Answer::Delegated => {
                Response::text(500, "request not answered").write(&mut out, true, false)
            }
        }
        if out.len() <= COPY_LIMIT {
            cx.send_copy(id, &out);
            if out.capacity() <= COPY_LIMIT {
                self.out = out;
            }
        } else {
            cx.send(id, out);
        }
        if close {
            if request.keep_alive {
                // Shutdown cut a keep-alive connection short: the client may have more
                // requests on the way, so this close lingers rather than risk a reset.
                cx.close_mid_input(id);
            } else {
                cx.close(id);
            }
            return Next::Closed;
        }
        Next::Parse
    }

    /// The connection's deadline passed: the keep-alive timeout between requests, the request
    /// deadline (408), the retry of a stalled or starting upload, or the verdict (or its slow
    /// poll) of a sealing one.
    pub fn on_timer<S, M>(&mut self, cx: &mut Context<'_, S, M>, conn: &mut HttpConn) {
        let id = cx.id();
        let Some(ex) = conn else {
            debug!(target: LOG, "conn {id}: keep-alive timeout");
            cx.close(id);
            return;
        };
        let Some(up) = ex.upload().filter(|up| up.waits()) else {
            info!(target: LOG, "conn {id}: request timed out");
            self.fail_request(cx, ex, &HttpError::new(408, "request timed out"));
            return;
        };
        match up.retry(&mut self.uploads) {
            Flow::Pause => {
                cx.set_timer(id, STALL_RETRY);
                return;
            }
            Flow::Wait(task) => {
                self.wait_for_verdict(cx, task);
                return;
            }
            Flow::Go => {}
        }
        if up.is_decided() {
            // The body had ended: answer now.
            if let Next::Closed = self.respond(cx, ex) {
                return;
            }
        }
        debug!(target: LOG, "conn {id}: upload moved on, resuming reads");
        cx.set_timer(id, self.header_timeout);
        cx.resume_reading(id);
        // Parse on from where the pause stopped: the end of a body needs no bytes and may be
        // due now, and an idle connection settles under its keep-alive timeout. Bytes kept
        // while paused are offered again by the loop afterwards.
        let _ = self.on_data(cx, conn, &[]);
    }

    /// Graceful shutdown reached this connection. A request whose head is complete is
    /// answered first (the response closes the connection, so an upload in flight still gets
    /// its 202). One whose head is still arriving has been promised nothing: it gets `503` and
    /// a close now, instead of holding the exit until its header deadline (a slowloris would
    /// otherwise delay every shutdown by the full `--header-timeout`).
    pub fn on_shutdown<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        id: ConnId,
        conn: &mut HttpConn,
    ) {
        match conn {
            Some(ex) if ex.request.is_some() => {}
            Some(_) => {
                *conn = None;
                debug!(target: LOG, "conn {id}: shutting down with a request head half received");
                let mut out = Vec::new();
                write_error(&mut out, &HttpError::new(503, "server shutting down"));
                cx.send(id, out);
                cx.close_mid_input(id);
            }
            None => cx.close(id),
        }
    }

    /// The server's input budget is spent and this connection holds the most (a request head
    /// still arriving): 503, and a close.
    pub fn on_input_over_budget<S, M>(&mut self, cx: &mut Context<'_, S, M>, conn: &mut HttpConn) {
        let error = HttpError::new(503, "server input budget exceeded");
        match conn.as_mut() {
            Some(ex) => self.fail_request(cx, ex, &error),
            None => {
                let id = cx.id();
                let mut out = Vec::new();
                write_error(&mut out, &error);
                cx.send(id, out);
                cx.close_mid_input(id);
            }
        }
    }

    /// The client sent EOF: an upload it left unfinished is aborted.
    pub fn on_eof<S, M>(&mut self, cx: &mut Context<'_, S, M>, conn: &mut HttpConn) {
        let id = cx.id();
        if let Some(up) = conn.as_mut().and_then(|ex| ex.upload()) {
            debug!(target: LOG, "conn {id}: client left mid-upload");
            up.abort(&mut self.uploads);
        }
        cx.close(id);
    }

    /// The connection is gone.
    pub fn on_close(&mut self, id: ConnId, conn: HttpConn, why: CloseReason) {
        if let Some(mut up) =
            conn.and_then(|mut ex| ex.request.take())
                .and_then(|r| match r.answer {
                    Answer::Upload(up) => Some(up),
                    _ => None,
                })
        {
            debug!(target: LOG, "conn {id}: closed mid-upload ({why:?})");
            up.abort(&mut self.uploads);
        }
    }
}
