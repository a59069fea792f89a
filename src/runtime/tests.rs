//! The loop's rules, tested in process: a test `Handler`, real loopback sockets, and the loop
//! driven one `run_once` at a time so each test can look at the loop's own bookkeeping between
//! iterations (interest bits, slots, what was delivered in which iteration).

use super::connection::{Phase, READABLE, WRITABLE};
use super::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What the test handler saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Open(usize),
    Data(usize, usize),
    Close(usize, CloseReason),
}

/// A handler that records its callbacks and does what the test asks of it.
#[derive(Default)]
struct Probe {
    seen: Vec<Seen>,
    /// Bytes to queue for each connection when it opens.
    send_on_open: usize,
    /// Close each connection as soon as it opens (after queuing `send_on_open`), as hello does.
    close_on_open: bool,
    /// Abort every other open connection on the first data of any connection.
    abort_others: bool,
    /// Answer a connection's first data with 14 bytes and `close_mid_input`, as a protocol
    /// error does.
    fail_on_data: bool,
    /// The ids of the connections opened so far.
    ids: Vec<ConnId>,
}

impl Handler for Probe {
    type Conn = ();
    type Message = ();

    fn accept(&mut self, _: ListenerId, _: &Addr) -> Option<()> {
        Some(())
    }

    fn on_open(&mut self, cx: &mut ContextOf<'_, Self>, _: &mut ()) {
        let id = cx.id();
        self.ids.push(id);
        self.seen.push(Seen::Open(id.key()));
        if self.send_on_open > 0 {
            cx.send(id, vec![b'x'; self.send_on_open]);
        }
        if self.close_on_open {
            cx.close(id);
        }
    }

    fn on_data(&mut self, cx: &mut ContextOf<'_, Self>, _: &mut (), data: &mut [u8]) -> usize {
        let id = cx.id();
        self.seen.push(Seen::Data(id.key(), data.len()));
        if std::mem::take(&mut self.abort_others) {
            for other in cx.ids().into_iter().filter(|&o| o != id) {
                cx.abort(other);
            }
        }
        if self.fail_on_data {
            cx.send(id, vec![b'x'; 14]);
            cx.close_mid_input(id);
        }
        data.len()
    }

    fn on_close(&mut self, _: &mut ContextOf<'_, Self>, id: ConnId, _: (), why: CloseReason) {
        self.seen.push(Seen::Close(id.key(), why));
    }
}

fn serve(probe: Probe, config: Config) -> (EventLoop<Probe>, SocketAddr) {
    let mut ev = EventLoop::new(probe, config).unwrap();
    let (_, addr) = ev.listen("probe", "127.0.0.1:0".parse().unwrap()).unwrap();
    (ev, addr)
}

/// Runs iterations until `done` holds (or fails the test after 5 s).
fn run_until(ev: &mut EventLoop<Probe>, mut done: impl FnMut(&EventLoop<Probe>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(ev) {
        assert!(
            Instant::now() < deadline,
            "timed out; saw {:?}",
            ev.handler().seen
        );
        ev.run_once(Some(Duration::from_millis(10))).unwrap();
    }
}

fn opened(ev: &EventLoop<Probe>) -> usize {
    ev.handler().ids.len()
}

#[test]
fn a_short_write_arms_writable_and_a_drained_queue_drops_it() {
    let probe = Probe {
        send_on_open: 16 << 20, // far more than the two socket buffers hold
        ..Probe::default()
    };
    let (mut ev, addr) = serve(probe, Config::default());
    let mut client = TcpStream::connect(addr).unwrap();
    run_until(&mut ev, |ev| opened(ev) == 1);
    let key = ev.handler().ids[0].key();
    // The flush came up short: WRITABLE is armed, and stays armed while nobody reads.
    run_until(&mut ev, |ev| {
        ev.core.conns[key].interest == READABLE | WRITABLE
    });
    ev.run_once(Some(Duration::from_millis(20))).unwrap();
    assert_eq!(ev.core.conns[key].interest, READABLE | WRITABLE);
    assert!(ev.core.conns[key].pending() > 0);
    // The client reads everything: the queue drains and the interest drops back to R.
    let reader = std::thread::spawn(move || {
        let mut got = 0;
        let mut buf = vec![0; 1 << 16];
        while got < 16 << 20 {
            got += client.read(&mut buf).unwrap();
        }
        got
    });
    run_until(&mut ev, |ev| ev.core.conns[key].pending() == 0);
    assert_eq!(ev.core.conns[key].interest, READABLE);
    assert!(
        ev.core.conns[key].bufs.is_none(),
        "drained buffers go back to the pool"
    );
    assert_eq!(reader.join().unwrap(), 16 << 20);
}

#[test]
fn an_event_for_a_connection_closed_earlier_in_the_batch_is_ignored() {
    let probe = Probe {
        abort_others: true,
        ..Probe::default()
    };
    let (mut ev, addr) = serve(probe, Config::default());
    let mut a = TcpStream::connect(addr).unwrap();
    let mut b = TcpStream::connect(addr).unwrap();
    run_until(&mut ev, |ev| opened(ev) == 2);
    // Both sockets are readable before the next poll, so one batch holds both events; the
    // first delivery aborts the other connection, whose event then finds it closed.
    a.write_all(b"a").unwrap();
    b.write_all(b"b").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    ev.run_once(Some(Duration::from_millis(100))).unwrap();
    let seen = &ev.handler().seen;
    let data: Vec<_> = seen
        .iter()
        .filter(|s| matches!(s, Seen::Data(..)))
        .collect();
    assert_eq!(
        data.len(),
        1,
        "the aborted connection got no data: {seen:?}"
    );
    let Seen::Data(first, _) = *data[0] else {
        unreachable!()
    };
    let other = ev
        .handler()
        .ids
        .iter()
        .find(|id| id.key() != first)
        .unwrap();
    assert!(
        seen.contains(&Seen::Close(other.key(), CloseReason::Aborted)),
        "{seen:?}"
    );
}

#[test]
fn an_id_kept_past_its_close_never_reaches_the_next_connection_in_its_slot() {
    let (mut ev, addr) = serve(Probe::default(), Config::default());
    let first = TcpStream::connect(addr).unwrap();
    run_until(&mut ev, |ev| opened(ev) == 1);
    let old = ev.handler().ids[0];
    drop(first);
    run_until(&mut ev, |ev| {
        ev.handler()
            .seen
            .iter()
            .any(|s| matches!(s, Seen::Close(k, _) if *k == old.key()))
    });
    let mut second = TcpStream::connect(addr).unwrap();
    run_until(&mut ev, |ev| opened(ev) == 2);
    let new = ev.handler().ids[1];
    assert_eq!(new.key(), old.key(), "the slab reuses the freed slot");
    assert_ne!(new, old);
    let sent_old = ev.with_context(|_, cx| cx.send(old, &b"stale\n"[..]));
    assert!(!sent_old, "a stale id is refused");
    assert!(ev.with_context(|_, cx| cx.send(new, &b"fresh\n"[..])));
    ev.run_once(Some(Duration::from_millis(10))).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = [0u8; 6];
    second.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"fresh\n");
}

#[test]
fn the_read_budget_lets_another_connection_in() {
    // A 1 KiB read buffer: the 16-read budget is 16 KiB per event.
    let config = Config {
        read_buffer: 1024,
        ..Config::default()
    };
    let (mut ev, addr) = serve(Probe::default(), config);
    let mut big = TcpStream::connect(addr).unwrap();
    run_until(&mut ev, |ev| opened(ev) == 1);
    let mut small = TcpStream::connect(addr).unwrap();
    run_until(&mut ev, |ev| opened(ev) == 2);
    let (big_key, small_key) = (ev.handler().ids[0].key(), ev.handler().ids[1].key());
    big.write_all(&[b'x'; 64 * 1024]).unwrap();
    small.write_all(b"hi\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    ev.run_once(Some(Duration::from_millis(100))).unwrap();
    let delivered = |ev: &EventLoop<Probe>, key: usize| -> usize {
        ev.handler()
            .seen
            .iter()
            .map(|s| match s {
                Seen::Data(k, n) if *k == key => *n,
                _ => 0,
            })
            .sum()
    };
    // The small connection's line was delivered before the big one had had more than one
    // budget's worth (its event came first, or between the budget and the deferred read).
    let seen = &ev.handler().seen;
    let at = seen
        .iter()
        .position(|s| matches!(s, Seen::Data(k, _) if *k == small_key))
        .expect("the other connection was served in the same iteration");
    let big_before: usize = seen[..at]
        .iter()
        .map(|s| match s {
            Seen::Data(k, n) if *k == big_key => *n,
            _ => 0,
        })
        .sum();
    assert!(
        big_before <= conn_io::READS_PER_EVENT * 1024,
        "{big_before} bytes of the big sender went first: {seen:?}"
    );
    assert!(
        delivered(&ev, big_key) < 64 * 1024,
        "one iteration read everything"
    );
    // The rest is read in the following iterations, without a new event.
    run_until(&mut ev, |ev| delivered(ev, big_key) == 64 * 1024);
}

fn closed(ev: &EventLoop<Probe>) -> Vec<CloseReason> {
    ev.handler()
        .seen
        .iter()
        .filter_map(|s| match s {
            Seen::Close(_, why) => Some(*why),
            _ => None,
        })
        .collect()
}

/// Reads until EOF; the bytes, or the error that ended the read instead (a reset).
fn read_to_eof(client: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut got = Vec::new();
    client.read_to_end(&mut got)?;
    Ok(got)
}

/// A loop whose handler greets each connection with 14 bytes and closes it, as hello does.
fn greet_and_close() -> (EventLoop<Probe>, SocketAddr) {
    let probe = Probe {
        send_on_open: 14,
        close_on_open: true,
        ..Probe::default()
    };
    serve(probe, Config::default())
}

#[test]
fn a_close_with_nothing_unread_is_immediate_and_delivers_the_reply() {
    let (mut ev, addr) = greet_and_close();
    // A silent client that never closes its side: no lingering waits for its EOF.
    let mut client = TcpStream::connect(addr).unwrap();
    run_until(&mut ev, |ev| !closed(ev).is_empty());
    assert_eq!(closed(&ev), [CloseReason::Done]);
    assert!(ev.core.conns.is_empty());
    assert_eq!(read_to_eof(&mut client).unwrap(), vec![b'x'; 14]);
}

/// The client of a lingering connection sends its EOF: the server closes (`Done`), and the
/// client reads the 14-byte reply whole, then the FIN, no reset.
fn finish_lingering(ev: &mut EventLoop<Probe>, mut client: TcpStream) {
    client.shutdown(std::net::Shutdown::Write).ok();
    let reader = std::thread::spawn(move || {
        let got = read_to_eof(&mut client);
        (client, got)
    });
    run_until(ev, |ev| !closed(ev).is_empty());
    assert_eq!(closed(ev), [CloseReason::Done]);
    let (_client, got) = reader.join().unwrap();
    assert_eq!(
        got.expect("no reset: the reply arrives whole"),
        vec![b'x'; 14]
    );
}

#[test]
fn a_close_with_input_waiting_lingers_until_the_peer_is_done() {
    let (mut ev, addr) = greet_and_close();
    let mut client = TcpStream::connect(addr).unwrap();
    // Input the server will never read, there before it accepts: closing now would reset.
    client.write_all(b"typed ahead\n").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    run_until(&mut ev, |ev| opened(ev) == 1);
    let key = ev.handler().ids[0].key();
    run_until(&mut ev, |ev| ev.core.conns[key].phase == Phase::Lingering);
    // The FIN came after the reply, and the server still reads (and drops) what comes.
    finish_lingering(&mut ev, client);
}

#[test]
fn a_close_mid_input_lingers_even_when_nothing_is_unread_at_that_moment() {
    let probe = Probe {
        fail_on_data: true,
        ..Probe::default()
    };
    let (mut ev, addr) = serve(probe, Config::default());
    let mut client = TcpStream::connect(addr).unwrap();
    // The start of a message the server rejects; it reads all of it, so when its reply is
    // flushed nothing is unread, yet the peer is still sending.
    client.write_all(&[b'a'; 1024]).unwrap();
    run_until(&mut ev, |ev| opened(ev) == 1);
    let key = ev.handler().ids[0].key();
    run_until(&mut ev, |ev| ev.core.conns[key].phase == Phase::Lingering);
    // More of the message: to a closed socket it would be answered with a reset, and the
    // reset would destroy the reply before the client reads it.
    client.write_all(&[b'b'; 1024]).unwrap();
    for _ in 0..5 {
        ev.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    assert!(
        closed(&ev).is_empty(),
        "still lingering: the peer has not finished"
    );
    finish_lingering(&mut ev, client);
}
