//! The Redis relay of one process: a subscriber and a publisher, both non-blocking connections
//! on the server's own loop, so a broadcast reaches the clients of every process (workers on
//! one machine, or several machines behind a load balancer).
//!
//! # Why two connections
//! Once a RESP2 connection has `SUBSCRIBE`d it may only (un)subscribe and ping, so publishing
//! needs a second one.
//!
//! # Never delivered twice: deliver locally now, skip our own echo
//! A broadcast a client sends here is delivered to this process' clients at once (as without
//! Redis), then `PUBLISH`ed with this process' origin id in front: `<16 hex digits> <message>`.
//! Redis sends it to every subscriber, this process included; a message that comes back with
//! our own origin is skipped, one with another origin is delivered to all local clients of its
//! group. So each client gets each message once: from its own process if the sender is local,
//! from the subscription otherwise. The alternative (deliver only what comes back from Redis)
//! would have stopped local delivery during an outage and added a Redis round trip to every
//! local message; this way the line rule "every client but the sender" also stays a local
//! decision (the sender is only ever a local client). Messages published by other tools
//! without an origin prefix (`redis-cli PUBLISH readyloop:ws hi`) are delivered as they are.
//!
//! # Outages
//! Nothing here blocks: the address is an IP (`localhost` is mapped to 127.0.0.1 by hand, no
//! DNS), the connects are non-blocking with a 2 s connect timeout, and a lost link is retried
//! after a backoff of 100 ms doubling to 5 s, on the loop's own timers (`set_loop_timer`).
//! Meanwhile local delivery goes on, and each message that could not be handed to Redis (the
//! publisher down, its queue over `MAX_PUBLISH_BACKLOG`, or in flight when the link dropped) is
//! counted in `redis_unrelayed` (`/stats`) and logged when the link comes back.

use crate::codec::escape::escaped;
use crate::codec::resp::{decode, encode_command, Value};
use crate::runtime::{CloseReason, ConnId, Context};
use log::{debug, info, warn};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const LOG: &str = "readyloop::redis";

/// First wait before reconnecting: 100 ms, short enough that a Redis restart costs little.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between attempts: 5 s, so a long outage costs one connect every 5 s.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connect that has not completed in 2 s (a dropped SYN) is given up and retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Publish queue (bytes not yet taken by Redis' socket) over which further messages are not
/// queued but counted unrelayed: 8 MiB, so a stalled Redis cannot grow our memory without bound
/// and does not reach the loop's 64 MiB slow-consumer limit, which would drop the link.
const MAX_PUBLISH_BACKLOG: usize = 8 << 20;
/// Length of the origin prefix of a published message: 16 hex digits and a space.
const ORIGIN_LEN: usize = 17;
/// Items of an array a log line shows (the rest are counted): 4, enough for any reply we
/// expect (`message`, channel, payload), and a bound on what a stray value puts in the log.
const SHOWN_ITEMS: usize = 4;

/// A RESP value as a log line shows it: strings escaped and cut (`codec::escape`), arrays to
/// their first `SHOWN_ITEMS` items. What Redis sends carries what other processes' clients sent.
struct Shown<'v, 'a>(&'v Value<'a>);

impl std::fmt::Display for Shown<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Value::Simple(s) => write!(f, "simple \"{}\"", escaped(s)),
            Value::Error(e) => write!(f, "error \"{}\"", escaped(e)),
            Value::Integer(n) => write!(f, "integer {n}"),
            Value::Bulk(b) => write!(f, "bulk \"{}\"", escaped(b)),
            Value::Nil => f.write_str("nil"),
            Value::Array(items) => {
                write!(f, "array of {} [", items.len())?;
                for (i, item) in items.iter().take(SHOWN_ITEMS).enumerate() {
                    let sep = if i > 0 { ", " } else { "" };
                    write!(f, "{sep}{}", Shown(item))?;
                }
                let more = if items.len() > SHOWN_ITEMS {
                    ", …"
                } else {
                    ""
                };
                write!(f, "{more}]")
            }
        }
    }
}

/// Where Redis is: `redis://HOST:PORT[/db]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// An IP address and port (a host name other than `localhost` is refused: no blocking DNS).
    pub addr: SocketAddr,
    /// The database number. Pub/sub ignores databases, so it namespaces the channel names
    /// instead: `readyloop:ws` for 0, `readyloop:3:ws` for 3.
    pub db: u32,
}

impl std::str::FromStr for RedisUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<RedisUrl, String> {
        let rest = s
            .strip_prefix("redis://")
            .ok_or_else(|| format!("{s:?}: expected redis://HOST:PORT[/db]"))?;
        let (hostport, db) = match rest.split_once('/') {
            None | Some((_, "")) => (rest.trim_end_matches('/'), 0),
            Some((hp, db)) => (
                hp,
                db.parse()
                    .map_err(|_| format!("{s:?}: bad database number {db:?}"))?,
            ),
        };
        if hostport.contains('@') {
            return Err(format!("{s:?}: passwords are not supported"));
        }
        // `[::1]:6379`, `127.0.0.1:6379`, or a bare host with the default port.
        if let Ok(addr) = hostport.parse::<SocketAddr>() {
            return Ok(RedisUrl { addr, db });
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{s:?}: bad port {p:?}"))?,
            ),
            _ => (hostport, 6379),
        };
        let ip = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            h => h.trim_matches(|c| c == '[' || c == ']').parse().map_err(|_| {
                format!("{s:?}: {h:?} is not an IP address (name lookups would block the loop; only localhost is mapped)")
            })?,
        };
        Ok(RedisUrl {
            addr: SocketAddr::new(ip, port),
            db,
        })
    }
}

/// A broadcast group: one Redis channel each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// `/ws` messages (the raw text; each process applies its own `--broadcast-format`).
    Ws,
    /// Line-broadcast lines (without their `\n`).
    Line,
}

impl Group {
    const ALL: [Group; 2] = [Group::Ws, Group::Line];

    fn index(self) -> usize {
        self as usize
    }
}

/// Which of the two links a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `SUBSCRIBE`d to every group's channel; receives the messages.
    Subscriber,
    /// Sends `PUBLISH`es.
    Publisher,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Subscriber => "subscriber",
            Role::Publisher => "publisher",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_tag(tag: u32) -> Option<Role> {
        match tag {
            0 => Some(Role::Subscriber),
            1 => Some(Role::Publisher),
            _ => None,
        }
    }
}

/// Where one link is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No connection; a reconnect is armed on the loop's timer (or we are shutting down).
    Down,
    /// `connect` in progress (completion shows as WRITABLE).
    Connecting(ConnId),
    /// Connected; the subscriber waits for this many `subscribe` confirmations.
    Subscribing(ConnId, usize),
    /// Ready: the publisher may publish, the subscriber receives messages.
    Up(ConnId),
}

impl State {
    fn id(self) -> Option<ConnId> {
        match self {
            State::Down => None,
            State::Connecting(id) | State::Subscribing(id, _) | State::Up(id) => Some(id),
        }
    }
}

#[derive(Debug)]
struct Link {
    state: State,
    /// The wait before the next reconnect.
    backoff: Duration,
    /// When the current outage began and `unrelayed` then (`None` while up).
    outage: Option<(Instant, u64)>,
}

/// Both links of this process and their counters (`/stats`).
#[derive(Debug)]
pub struct RedisRelay {
    url: RedisUrl,
    /// This process' origin id, 16 lowercase hex digits.
    origin: [u8; 16],
    /// The channel of each `Group`.
    channels: [Vec<u8>; 2],
    links: [Link; 2],
    /// `PUBLISH`es sent on the current publisher connection and not yet answered.
    in_flight: u64,
    /// Shutting down: do not reconnect.
    stopping: bool,
    /// Messages handed to Redis (answered by it).
    pub published: u64,
    /// Messages that could not be relayed (see the module documentation).
    pub unrelayed: u64,
    /// Messages from other processes delivered here.
    pub received: u64,
}

impl RedisRelay {
    /// The links to `url`, not connected yet (`start` connects them).
    pub fn new(url: RedisUrl) -> RedisRelay {
        // A random 64-bit origin per process (std's hasher keys are random per process), mixed
        // with the pid so two processes started in the same instant still differ.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let origin = format!("{:016x}", h.finish());
        let ns = |g: &str| match url.db {
            0 => format!("readyloop:{g}").into_bytes(),
            db => format!("readyloop:{db}:{g}").into_bytes(),
        };
        let link = || Link {
            state: State::Down,
            backoff: BACKOFF_MIN,
            outage: None,
        };
        RedisRelay {
            channels: [ns("ws"), ns("line")],
            url,
            origin: origin.as_bytes().try_into().expect("16 hex digits"),
            links: [link(), link()],
            in_flight: 0,
            stopping: false,
            published: 0,
            unrelayed: 0,
            received: 0,
        }
    }

    /// True while both links are up (subscribed, and able to publish).
    pub fn connected(&self) -> bool {
        self.links.iter().all(|l| matches!(l.state, State::Up(_)))
    }

    /// The channel name of `group`.
    pub fn channel(&self, group: Group) -> &[u8] {
        &self.channels[group.index()]
    }

    /// This process' origin id.
    pub fn origin(&self) -> &str {
        std::str::from_utf8(&self.origin).expect("hex")
    }

    fn link(&mut self, role: Role) -> &mut Link {
        &mut self.links[role.index()]
    }

    /// `PUBLISH channel "<origin> <msg>"`.
    fn publish_command(&self, group: Group, msg: &[u8]) -> Vec<u8> {
        let mut payload = Vec::with_capacity(ORIGIN_LEN + msg.len());
        payload.extend_from_slice(&self.origin);
        payload.push(b' ');
        payload.extend_from_slice(msg);
        let mut out = Vec::with_capacity(payload.len() + 64);
        encode_command(&mut out, &[b"PUBLISH", self.channel(group), &payload]);
        out
    }

    fn subscribe_command(&self) -> Vec<u8> {
        let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
        args.extend(self.channels.iter().map(|c| c.as_slice()));
        let mut out = Vec::new();
        encode_command(&mut out, &args);
        out
    }
}

/// Splits `<origin> <message>`; `None` when the payload carries no origin prefix.
fn split_origin(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let (origin, rest) = payload.split_at_checked(ORIGIN_LEN - 1)?;
    let is_hex = origin
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    match rest.split_first() {
        Some((b' ', msg)) if is_hex => Some((origin, msg)),
        _ => None,
    }
}

/// What a message from another process is for: `deliver(cx, group, message)`.
pub type Deliver<'d, S, M> = &'d mut dyn FnMut(&mut Context<'_, S, M>, Group, &[u8]);

impl RedisRelay {
    /// Connects both links (called once the loop exists). `S: From<Role>` builds the state of
    /// the new connections.
    pub fn start<S: From<Role>, M>(&mut self, cx: &mut Context<'_, S, M>) {
        info!(target: LOG, "redis {}: origin {}, channels {} and {}", self.url.addr, self.origin(),
            String::from_utf8_lossy(self.channel(Group::Ws)),
            String::from_utf8_lossy(self.channel(Group::Line)));
        self.connect(cx, Role::Subscriber);
        self.connect(cx, Role::Publisher);
    }

    fn connect<S: From<Role>, M>(&mut self, cx: &mut Context<'_, S, M>, role: Role) {
        if self.stopping || cx.shutting_down() || self.link(role).state != State::Down {
            return;
        }
        let addr = self.url.addr;
        match cx.connect(addr, S::from(role)) {
            Ok(id) => {
                debug!(target: LOG, "conn {id}: redis {} connecting to {addr}", role.name());
                cx.set_timer(id, CONNECT_TIMEOUT);
                self.link(role).state = State::Connecting(id);
            }
            Err(e) => {
                debug!(target: LOG, "redis {} connect to {addr} failed at once: {e}", role.name());
                self.retry_later(cx, role, &format!("connect failed: {e}"));
            }
        }
    }

    /// The link is down: log the outage if it just began, and arm the reconnect.
    fn retry_later<S, M>(&mut self, cx: &mut Context<'_, S, M>, role: Role, why: &str) {
        let addr = self.url.addr;
        let unrelayed = self.unrelayed;
        let stopping = self.stopping || cx.shutting_down();
        let link = self.link(role);
        link.state = State::Down;
        if stopping {
            return;
        }
        let wait = link.backoff;
        link.backoff = (link.backoff * 2).min(BACKOFF_MAX);
        match link.outage {
            None => {
                link.outage = Some((cx.now(), unrelayed));
                warn!(target: LOG, "redis {addr}: {} link down ({why}); local clients are still served, \
                    cross-process broadcast is paused; reconnecting in {wait:?}", role.name());
            }
            Some((since, _)) => {
                let log_level = if wait == BACKOFF_MAX {
                    log::Level::Info
                } else {
                    log::Level::Debug
                };
                log::log!(target: LOG, log_level, "redis {addr}: {} still down after {:.1} s ({why}); next attempt in {wait:?}",
                    role.name(), cx.now().saturating_duration_since(since).as_secs_f64());
            }
        }
        cx.set_loop_timer(wait, role.index() as u32);
    }

    /// The link is ready: reset the backoff and report the end of an outage.
    fn up<S, M>(&mut self, cx: &mut Context<'_, S, M>, role: Role, id: ConnId) {
        let addr = self.url.addr;
        let unrelayed = self.unrelayed;
        let link = self.link(role);
        link.state = State::Up(id);
        link.backoff = BACKOFF_MIN;
        match link.outage.take() {
            Some((since, before)) => {
                let secs = cx.now().saturating_duration_since(since).as_secs_f64();
                match role {
                    Role::Publisher => {
                        info!(target: LOG, "conn {id}: redis {addr} publisher link back after {secs:.1} s; \
                        {} messages could not be relayed meanwhile ({unrelayed} in all)", unrelayed - before)
                    }
                    Role::Subscriber => {
                        info!(target: LOG, "conn {id}: redis {addr} subscriber link back after {secs:.1} s \
                        (what other processes sent meanwhile did not reach this one)")
                    }
                }
            }
            None => info!(target: LOG, "conn {id}: redis {addr} {} link up", role.name()),
        }
    }

    /// Hands a broadcast message that a local client sent to Redis, for the other processes.
    /// Counted unrelayed when the publisher is not up or too far behind.
    pub fn publish<S, M>(&mut self, cx: &mut Context<'_, S, M>, group: Group, msg: &[u8]) {
        let State::Up(id) = self.link(Role::Publisher).state else {
            self.unrelayed += 1;
            debug!(target: LOG, "publisher down: message not relayed ({} in all)", self.unrelayed);
            return;
        };
        if cx.pending_output(id) > MAX_PUBLISH_BACKLOG {
            self.unrelayed += 1;
            debug!(target: LOG, "conn {id}: publish backlog over {MAX_PUBLISH_BACKLOG} bytes: message not relayed");
            return;
        }
        let command = self.publish_command(group, msg);
        if cx.send(id, command) {
            self.in_flight += 1;
        } else {
            self.unrelayed += 1;
        }
    }

    /// A link's connect completed.
    pub fn on_open<S, M>(&mut self, cx: &mut Context<'_, S, M>, role: Role) {
        let id = cx.id();
        cx.cancel_timer(id);
        if self.link(role).state != State::Connecting(id) {
            cx.abort(id);
            return;
        }
        match role {
            Role::Publisher => {
                self.in_flight = 0;
                self.up(cx, role, id);
            }
            Role::Subscriber => {
                debug!(target: LOG, "conn {id}: redis subscriber connected, subscribing");
                let command = self.subscribe_command();
                self.link(role).state = State::Subscribing(id, self.channels.len());
                cx.send(id, command);
            }
        }
    }

    /// Replies from Redis: confirmations and messages on the subscriber (a message from another
    /// process goes to `deliver`), `PUBLISH` counts on the publisher.
    pub fn on_data<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        role: Role,
        data: &[u8],
        deliver: Deliver<'_, S, M>,
    ) -> usize {
        let id = cx.id();
        let mut used = 0;
        loop {
            let (value, n) = match decode(&data[used..]) {
                Ok(Some(v)) => v,
                Ok(None) => return used,
                Err(e) => {
                    warn!(target: LOG, "conn {id}: redis {}: {e}; dropping the link", role.name());
                    cx.abort(id);
                    return data.len();
                }
            };
            used += n;
            let ok = match role {
                Role::Publisher => self.publish_reply(id, value),
                Role::Subscriber => self.push(cx, id, value, deliver),
            };
            if !ok {
                cx.abort(id);
                return data.len();
            }
        }
    }

    fn publish_reply(&mut self, id: ConnId, value: Value<'_>) -> bool {
        self.in_flight = self.in_flight.saturating_sub(1);
        match value {
            Value::Integer(_) => {
                self.published += 1;
                true
            }
            Value::Error(e) => {
                self.unrelayed += 1;
                warn!(target: LOG, "conn {id}: redis refused PUBLISH: {}", escaped(e));
                true
            }
            other => {
                warn!(target: LOG, "conn {id}: unexpected reply to PUBLISH: {}", Shown(&other));
                false
            }
        }
    }

    /// One value on the subscriber: a `subscribe` confirmation or a `message`.
    fn push<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        id: ConnId,
        value: Value<'_>,
        deliver: Deliver<'_, S, M>,
    ) -> bool {
        let items = match value {
            Value::Array(items) => items,
            Value::Error(e) => {
                warn!(target: LOG, "conn {id}: redis refused SUBSCRIBE: {}", escaped(e));
                return false;
            }
            other => {
                warn!(target: LOG, "conn {id}: unexpected value on the subscription: {}", Shown(&other));
                return false;
            }
        };
        match (
            items.first().and_then(Value::as_bytes),
            items.get(1).and_then(Value::as_bytes),
            items.get(2),
        ) {
            (Some(b"message"), Some(channel), Some(Value::Bulk(payload))) => {
                let Some(group) = Group::ALL.into_iter().find(|&g| self.channel(g) == channel)
                else {
                    debug!(target: LOG, "conn {id}: message on unknown channel {}", escaped(channel));
                    return true;
                };
                let msg = match split_origin(payload) {
                    Some((origin, _)) if origin == self.origin => return true,
                    Some((_, msg)) => msg,
                    None => payload,
                };
                self.received += 1;
                deliver(cx, group, msg);
                true
            }
            (Some(b"subscribe"), Some(channel), Some(Value::Integer(_))) => {
                debug!(target: LOG, "conn {id}: subscribed to {}", escaped(channel));
                match self.link(Role::Subscriber).state {
                    State::Subscribing(sid, 1) if sid == id => self.up(cx, Role::Subscriber, id),
                    State::Subscribing(sid, left) if sid == id => {
                        self.link(Role::Subscriber).state = State::Subscribing(id, left - 1);
                    }
                    _ => {}
                }
                true
            }
            _ => {
                let items = Value::Array(items);
                debug!(target: LOG, "conn {id}: ignoring {} on the subscription", Shown(&items));
                true
            }
        }
    }

    /// A connect did not complete within `CONNECT_TIMEOUT`.
    pub fn on_timer<S, M>(&mut self, cx: &mut Context<'_, S, M>, role: Role) {
        let id = cx.id();
        debug!(target: LOG, "conn {id}: redis {} connect timed out", role.name());
        cx.abort(id);
    }

    /// A link's connection is gone: count what it left unconfirmed, and reconnect later.
    pub fn on_close<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        id: ConnId,
        role: Role,
        why: CloseReason,
    ) {
        if self.link(role).state.id() != Some(id) {
            return;
        }
        if role == Role::Publisher {
            // Sent, but never confirmed: Redis may or may not have relayed them.
            self.unrelayed += self.in_flight;
            self.in_flight = 0;
        }
        let why = match why {
            CloseReason::Done | CloseReason::PeerGone(_) => "connection closed".to_string(),
            CloseReason::ConnectFailed(kind) => format!("connect failed: {kind}"),
            CloseReason::Aborted => "aborted".to_string(),
            other => format!("{other:?}"),
        };
        self.retry_later(cx, role, &why);
    }

    /// The backoff of `tag`'s link ran out: try again.
    pub fn on_loop_timer<S: From<Role>, M>(&mut self, cx: &mut Context<'_, S, M>, tag: u32) {
        if let Some(role) = Role::from_tag(tag) {
            self.connect(cx, role);
        }
    }

    /// Shutdown: flush what the publisher has queued, drop the subscriber, reconnect no more.
    pub fn on_shutdown<S, M>(&mut self, cx: &mut Context<'_, S, M>, id: ConnId, role: Role) {
        self.stopping = true;
        match self.link(role).state {
            State::Up(_) if role == Role::Publisher => cx.close(id),
            _ => cx.abort(id),
        }
    }

    /// Where each link is, as an index into `LINK_STATES`: the subscriber's, then the
    /// publisher's (the order of `LINKS`).
    pub fn link_states(&self) -> [usize; 2] {
        [Role::Subscriber, Role::Publisher].map(|role| match self.links[role.index()].state {
            State::Down => 0,
            State::Connecting(_) => 1,
            State::Subscribing(..) => 2,
            State::Up(_) => 3,
        })
    }

    /// `PUBLISH`es sent and not yet answered.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// The relay's counters for `/stats`.
    pub fn counters(&self) -> RelayCounters {
        RelayCounters {
            connected: self.connected(),
            published: self.published,
            received: self.received,
            unrelayed: self.unrelayed,
        }
    }
}

/// The two links, in the order of `RedisRelay::link_states`.
pub const LINKS: [&str; 2] = ["subscriber", "publisher"];
/// A link's states, as `RedisRelay::link_states` numbers them.
pub const LINK_STATES: [&str; 4] = ["down", "connecting", "subscribing", "up"];

/// The relay's counters, for `/stats`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayCounters {
    /// Both links up.
    pub connected: bool,
    /// Messages handed to Redis (answered by it).
    pub published: u64,
    /// Messages from other processes delivered here.
    pub received: u64,
    /// Messages that could not be relayed.
    pub unrelayed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_the_log_are_escaped_and_cut() {
        let v = Value::Array(vec![
            Value::Bulk(b"message"),
            Value::Bulk(b"readyloop:ws"),
            Value::Bulk(b"\x1b[2Jhi\r\n"),
            Value::Integer(1),
            Value::Nil,
        ]);
        assert_eq!(
            Shown(&v).to_string(),
            "array of 5 [bulk \"message\", bulk \"readyloop:ws\", bulk \"\\u{1b}[2Jhi\\r\\n\", integer 1, …]"
        );
        assert_eq!(
            Shown(&Value::Error(b"ERR \x7f")).to_string(),
            "error \"ERR \\u{7f}\""
        );
    }

    #[test]
    fn parses_redis_urls() {
        let url = |s: &str| s.parse::<RedisUrl>();
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            url("redis://127.0.0.1:6380").unwrap(),
            RedisUrl {
                addr: addr("127.0.0.1:6380"),
                db: 0
            }
        );
        assert_eq!(
            url("redis://localhost:7000/3").unwrap(),
            RedisUrl {
                addr: addr("127.0.0.1:7000"),
                db: 3
            }
        );
        assert_eq!(
            url("redis://localhost").unwrap().addr,
            addr("127.0.0.1:6379")
        );
        assert_eq!(
            url("redis://10.0.0.5/").unwrap().addr,
            addr("10.0.0.5:6379")
        );
        assert_eq!(
            url("redis://[::1]:6379/1").unwrap(),
            RedisUrl {
                addr: addr("[::1]:6379"),
                db: 1
            }
        );
        assert!(url("redis://redis.internal:6379")
            .unwrap_err()
            .contains("not an IP"));
        assert!(url("127.0.0.1:6379").is_err());
        assert!(url("redis://127.0.0.1:99999").is_err());
        assert!(url("redis://127.0.0.1:6379/x").is_err());
        assert!(url("redis://:secret@127.0.0.1:6379").is_err());
    }

    #[test]
    fn origins_split_and_differ() {
        let a = RedisRelay::new("redis://127.0.0.1:1".parse().unwrap());
        let b = RedisRelay::new("redis://127.0.0.1:1".parse().unwrap());
        assert_ne!(a.origin, b.origin, "two links never share an origin");
        let cmd = a.publish_command(Group::Line, b"hi there");
        let (v, _) = decode(&cmd).unwrap().unwrap();
        let Value::Array(items) = v else { panic!() };
        assert_eq!(items[1], Value::Bulk(b"readyloop:line"));
        let payload = items[2].as_bytes().unwrap();
        assert_eq!(
            split_origin(payload),
            Some((&a.origin[..], &b"hi there"[..]))
        );
        assert_eq!(split_origin(b"hello"), None);
        assert_eq!(split_origin(b"0123456789abcdefXhi"), None);
        assert_eq!(split_origin(b"0123456789ABCDEF hi"), None);
        assert_eq!(
            split_origin(b"0123456789abcdef "),
            Some((&b"0123456789abcdef"[..], &b""[..]))
        );
    }

    #[test]
    fn databases_namespace_the_channels() {
        let r = RedisRelay::new("redis://127.0.0.1:1/4".parse().unwrap());
        assert_eq!(r.channel(Group::Ws), b"readyloop:4:ws");
        assert_eq!(
            r.subscribe_command(),
            b"*3\r\n$9\r\nSUBSCRIBE\r\n$14\r\nreadyloop:4:ws\r\n$16\r\nreadyloop:4:line\r\n"
                .to_vec()
        );
    }
}
