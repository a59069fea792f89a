//! Our users' FastAPI program (`BackgroundTasks` + a WebSocket `ConnectionManager`), shrunk to
//! a line protocol on readyloop, to show the two mechanisms underneath it:
//!
//! - **Background work.** `upload NAME DATA` is answered at once with `queued NAME` (FastAPI's
//!   `{"message": "파일 업로드 중..."}`), and the file is written by a worker thread: the loop
//!   must never block on the disk. The worker reports back with `Handle::send`, which queues a
//!   message and wakes the loop's `poll` through its `Waker`; the loop then runs
//!   `Handler::on_message` on its own thread, where it may touch connections again.
//! - **Broadcast.** When a file is saved, `saved NAME (N bytes)` goes to every client, and
//!   `say TEXT` sends `📢 새로운 알림: TEXT` to every client: the `ConnectionManager`'s list
//!   is `clients`, its `disconnect` is `on_close`, and its `broadcast` is one `Rc<[u8]>`
//!   shared by every client's output queue (one allocation, however many clients).
//!
//! Run: `cargo run --example upload_and_broadcast -- 127.0.0.1:9000 --dir /tmp/up`, then in two
//! terminals `nc 127.0.0.1 9000`, and type `upload a.txt hello` or `say hi` in one.
//! (The real server does this over HTTP and WebSocket: `src/http_service.rs`,
//! `src/upload_store.rs`, `src/ws_service.rs`.)

use readyloop::codec::line::next_line;
use readyloop::{Addr, CloseReason, Config, ConnId, ContextOf, EventLoop, Handler, ListenerId};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;

/// Longest command line, in bytes (the upload's data included): 64 KiB.
const MAX_LINE: usize = 64 * 1024;

/// Work for the worker thread (`background_tasks.add_task(save_file, name, content)`).
struct Job {
    name: String,
    data: Vec<u8>,
}

/// What the worker sends back to the loop through its `Handle`.
enum Done {
    Saved { name: String, bytes: usize },
    Failed { name: String, error: String },
}

struct Uploads {
    /// The connected clients (`ConnectionManager.active_connections`).
    clients: Vec<ConnId>,
    /// The worker's queue. Sending never blocks (unbounded; a real server bounds it and
    /// pauses reading when it is full, see `src/upload_store.rs`).
    jobs: mpsc::Sender<Job>,
    /// Jobs handed to the worker and not reported back yet: shutdown waits for them.
    in_flight: usize,
}

impl Uploads {
    fn broadcast(&self, cx: &mut ContextOf<'_, Self>, text: String) {
        let bytes: Rc<[u8]> = format!("{text}\n").into_bytes().into();
        let n = cx.broadcast(&self.clients, bytes);
        println!("broadcast to {n} clients: {text}");
    }

    fn command(&mut self, cx: &mut ContextOf<'_, Self>, line: &str) {
        let id = cx.id();
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        match verb {
            "upload" => {
                let (name, data) = rest.split_once(' ').unwrap_or((rest, ""));
                if !valid_name(name) {
                    cx.send(id, "error: bad name\n");
                    return;
                }
                let job = Job {
                    name: name.to_string(),
                    data: data.as_bytes().to_vec(),
                };
                if self.jobs.send(job).is_err() {
                    cx.send(id, "error: worker gone\n");
                    return;
                }
                self.in_flight += 1;
                // Answered now; the save happens after this reply, on the worker.
                cx.send_copy(id, format!("queued {name}\n").as_bytes());
            }
            "say" => self.broadcast(cx, format!("📢 새로운 알림: {rest}")),
            "exit" => cx.close(id),
            _ => {
                cx.send(id, "error: upload NAME DATA | say TEXT | exit\n");
            }
        }
    }
}

impl Handler for Uploads {
    type Conn = ();
    type Message = Done;

    fn accept(&mut self, _: ListenerId, _: &Addr) -> Option<()> {
        Some(())
    }

    fn on_open(&mut self, cx: &mut ContextOf<'_, Self>, _: &mut ()) {
        self.clients.push(cx.id());
        println!("connected: {} clients", self.clients.len());
    }

    fn on_data(&mut self, cx: &mut ContextOf<'_, Self>, _: &mut (), data: &mut [u8]) -> usize {
        let mut used = 0;
        loop {
            match next_line(&data[used..], MAX_LINE) {
                Ok(Some((line, n))) => {
                    used += n;
                    let line = String::from_utf8_lossy(line).into_owned();
                    self.command(cx, &line);
                }
                Ok(None) => return used,
                Err(_) => {
                    let id = cx.id();
                    cx.send(id, "error: line too long\n");
                    cx.close(id);
                    return data.len();
                }
            }
        }
    }

    /// Runs on the loop thread, woken by the worker's `Handle::send`.
    fn on_message(&mut self, cx: &mut ContextOf<'_, Self>, done: Done) {
        self.in_flight -= 1;
        match done {
            Done::Saved { name, bytes } => {
                self.broadcast(cx, format!("saved {name} ({bytes} bytes)"))
            }
            Done::Failed { name, error } => self.broadcast(cx, format!("failed {name}: {error}")),
        }
    }

    /// `WebSocketDisconnect` → `manager.disconnect(websocket)`.
    fn on_close(&mut self, _: &mut ContextOf<'_, Self>, id: ConnId, _: (), why: CloseReason) {
        self.clients.retain(|&c| c != id);
        println!("disconnected ({why:?}): {} clients", self.clients.len());
    }

    /// Shutdown waits for saves in progress (FastAPI would lose them on a restart).
    fn has_pending_work(&self) -> bool {
        self.in_flight > 0
    }
}

/// A plain file name: no path separators, no leading dot, at most 64 bytes.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr: SocketAddr = "127.0.0.1:9000".parse().unwrap();
    let mut dir = std::env::temp_dir().join("readyloop-uploads");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir = PathBuf::from(args.next().unwrap_or_default()),
            a => addr = a.parse().map_err(std::io::Error::other)?,
        }
    }
    std::fs::create_dir_all(&dir)?;

    let (jobs, queue) = mpsc::channel::<Job>();
    let handler = Uploads {
        clients: Vec::new(),
        jobs,
        in_flight: 0,
    };
    let mut ev = EventLoop::new(handler, Config::default())?;
    let (_, local) = ev.listen("uploads", addr)?;
    println!("listening uploads {local}");

    // The worker: blocking file IO is fine here, this is not the loop's thread.
    let handle = ev.handle();
    let worker = std::thread::spawn(move || {
        for Job { name, data } in queue {
            let done = match std::fs::write(dir.join(&name), &data) {
                Ok(()) => Done::Saved {
                    name,
                    bytes: data.len(),
                },
                Err(e) => Done::Failed {
                    name,
                    error: e.to_string(),
                },
            };
            if handle.send(done).is_err() {
                break; // the loop has stopped
            }
        }
    });

    ev.handle_signals()?;
    ev.run()?;
    drop(ev); // drops the job sender: the worker's queue ends and the thread returns
    let _ = worker.join();
    println!("stopped");
    Ok(())
}
