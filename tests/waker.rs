//! The library's cross-thread API, in process: a message sent through `Handle::send` from
//! another thread wakes the loop (through its `Waker`) and becomes output to a connected
//! client; `Handle::shutdown` from another thread makes `run()` return.

mod support;

use readyloop::{Addr, Config, ConnId, ContextOf, EventLoop, Handle, Handler, ListenerId};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use support::*;

/// Says `ready\n` to each new client and writes every message from other threads to all of
/// them.
struct Relay {
    clients: Vec<ConnId>,
    messages: usize,
}

impl Handler for Relay {
    type Conn = ();
    type Message = String;

    fn accept(&mut self, _: ListenerId, _: &Addr) -> Option<()> {
        Some(())
    }

    fn on_open(&mut self, cx: &mut ContextOf<'_, Self>, _: &mut ()) {
        let id = cx.id();
        self.clients.push(id);
        cx.send_copy(id, b"ready\n");
    }

    fn on_data(&mut self, _cx: &mut ContextOf<'_, Self>, _: &mut (), data: &mut [u8]) -> usize {
        data.len()
    }

    fn on_message(&mut self, cx: &mut ContextOf<'_, Self>, msg: String) {
        assert!(cx.current().is_none(), "on_message is about no connection");
        self.messages += 1;
        for &id in &self.clients {
            cx.send_copy(id, msg.as_bytes());
        }
    }

    fn on_close(
        &mut self,
        _: &mut ContextOf<'_, Self>,
        id: ConnId,
        _: (),
        _: readyloop::CloseReason,
    ) {
        self.clients.retain(|&c| c != id);
    }
}

/// Runs a `Relay` loop on its own thread (the loop is not `Send`: it is built there).
/// Returns its handle, its address, and a channel that reports `run()`'s end.
fn spawn_relay() -> (
    Handle<String>,
    SocketAddr,
    mpsc::Receiver<std::io::Result<usize>>,
) {
    let (setup_tx, setup_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut ev = EventLoop::new(
            Relay {
                clients: Vec::new(),
                messages: 0,
            },
            Config::default(),
        )
        .unwrap();
        let (_, addr) = ev.listen("relay", "127.0.0.1:0".parse().unwrap()).unwrap();
        setup_tx.send((ev.handle(), addr)).unwrap();
        let result = ev.run().map(|()| ev.handler().messages);
        // Drop the loop (and its receiving end) before reporting, so that "done" means gone.
        drop(ev);
        let _ = done_tx.send(result);
    });
    let (handle, addr) = setup_rx.recv_timeout(IO_TIMEOUT).expect("loop set up");
    (handle, addr, done_rx)
}

#[test]
fn message_from_another_thread_reaches_a_client() {
    let (handle, addr, done) = spawn_relay();
    let mut a = connect(addr);
    let mut b = connect(addr);
    assert_eq!(read_n(&mut a, 6), b"ready\n");
    assert_eq!(read_n(&mut b, 6), b"ready\n");
    // Sent from a thread that is not the loop's; the loop is asleep in poll with no timeout,
    // so only the waker can get the message in.
    let sender = {
        let handle = handle.clone();
        thread::spawn(move || {
            for i in 0..100 {
                handle.send(format!("msg {i:03}\n")).unwrap();
            }
        })
    };
    sender.join().unwrap();
    let want: String = (0..100).map(|i| format!("msg {i:03}\n")).collect();
    assert_eq!(String::from_utf8(read_n(&mut a, want.len())).unwrap(), want);
    assert_eq!(String::from_utf8(read_n(&mut b, want.len())).unwrap(), want);
    // A later, lone message after the loop went back to sleep.
    thread::sleep(Duration::from_millis(100));
    handle.send("late\n".into()).unwrap();
    assert_eq!(read_n(&mut a, 5), b"late\n");
    assert_eq!(read_n(&mut b, 5), b"late\n");

    // Shutdown from yet another thread: run() returns, clients get EOF.
    let stopper = {
        let handle = handle.clone();
        thread::spawn(move || handle.shutdown())
    };
    stopper.join().unwrap();
    expect_eof(&mut a);
    expect_eof(&mut b);
    drop((a, b));
    let messages = done
        .recv_timeout(Duration::from_secs(5))
        .expect("run() did not return after Handle::shutdown")
        .expect("run() failed");
    assert_eq!(messages, 101);
    // The loop is gone: sending fails and hands the message back.
    assert_eq!(handle.send("too late".into()), Err("too late".to_string()));
}

#[test]
fn shutdown_with_no_connections_stops_run() {
    let (handle, addr, done) = spawn_relay();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        handle.shutdown();
    });
    done.recv_timeout(Duration::from_secs(5))
        .expect("run() did not return after Handle::shutdown")
        .expect("run() failed");
    // The listener is closed.
    let err = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}
