//! A custom protocol on readyloop, for embedders: a tiny key-value store over lines.
//!
//! `SET key value`, `GET key`, `DEL key`, `STATS`; each answered with one line. It shows the
//! parts of the `Handler` API a protocol needs: per-connection state kept by the loop and
//! handed to every callback (`Session`: this client's command count and the keys it set),
//! parsing only complete lines and returning how many bytes were used (the loop keeps the
//! unfinished tail), queuing replies with `send_copy` while holding that state, an idle
//! deadline with `set_timer`/`on_timer`, and stopping the loop from another thread through a
//! `Handle` — the host keeps running its own code while the loop serves.
//!
//! Run: `cargo run --example custom_protocol`, then `nc 127.0.0.1 7000` and type `SET a 1`.
//! The example stops itself after `--secs N` (default 60) by calling `handle.shutdown()`.

use readyloop::codec::line::next_line;
use readyloop::{Addr, Config, Context, EventLoop, Handler, ListenerId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

const IDLE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Store {
    data: HashMap<String, String>,
}

/// Per-connection state: what this client did.
struct Session {
    commands: u32,
    /// Keys this client set (and has not deleted).
    keys_set: u32,
}

impl Store {
    fn execute(&mut self, session: &mut Session, line: &str) -> String {
        session.commands += 1;
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("SET"), Some(k), Some(v)) => {
                if self.data.insert(k.to_string(), v.to_string()).is_none() {
                    session.keys_set += 1;
                }
                "OK".to_string()
            }
            (Some("STATS"), None, None) => format!(
                "{} commands, {} keys set by you, {} keys in all",
                session.commands,
                session.keys_set,
                self.data.len()
            ),
            (Some("GET"), Some(k), None) => self.data.get(k).cloned().unwrap_or("(nil)".into()),
            (Some("DEL"), Some(k), None) => match self.data.remove(k) {
                Some(_) => "1".into(),
                None => "0".into(),
            },
            _ => "ERR unknown command".to_string(),
        }
    }
}

impl Handler for Store {
    type Conn = Session;
    type Message = ();

    fn accept(&mut self, _: ListenerId, _: &Addr) -> Option<Session> {
        Some(Session {
            commands: 0,
            keys_set: 0,
        })
    }

    fn on_open(&mut self, cx: &mut Context<'_, Session, ()>, _session: &mut Session) {
        let id = cx.id();
        cx.set_timer(id, IDLE);
    }

    fn on_data(
        &mut self,
        cx: &mut Context<'_, Session, ()>,
        session: &mut Session,
        data: &mut [u8],
    ) -> usize {
        let id = cx.id();
        cx.set_timer(id, IDLE); // activity pushes the idle deadline back (O(1))
        let mut used = 0;
        while let Ok(Some((line, n))) = next_line(&data[used..], 4096) {
            used += n;
            let reply = self.execute(session, &String::from_utf8_lossy(line));
            cx.send_copy(id, reply.as_bytes());
            cx.send_copy(id, b"\n");
        }
        if data.len() - used > 4096 {
            cx.send(id, "ERR line too long\n");
            cx.close(id);
            return data.len();
        }
        used
    }

    fn on_timer(&mut self, cx: &mut Context<'_, Session, ()>, session: &mut Session) {
        let id = cx.id();
        let n = session.commands;
        cx.send_copy(
            id,
            format!("idle for {IDLE:?} after {n} commands, bye\n").as_bytes(),
        );
        cx.close(id);
    }
}

/// `--addr ADDR`, default 127.0.0.1:7000 (port 0 picks a free port).
fn listen_addr() -> SocketAddr {
    std::env::args()
        .skip_while(|a| a != "--addr")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7000)))
}

fn main() -> std::io::Result<()> {
    let secs: u64 = std::env::args()
        .skip_while(|a| a != "--secs")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut ev = EventLoop::new(Store::default(), Config::default())?;
    let (_, addr) = ev.listen("kv", listen_addr())?;
    println!("listening kv {addr}");
    // The host's own thread decides when the server stops.
    let handle = ev.handle();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        handle.shutdown();
    });
    ev.run()?;
    println!("stopped, {} keys stored", ev.handler().data.len());
    Ok(())
}
