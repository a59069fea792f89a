//! `TimerWheel`: the loop's one timer structure, a hashed timing wheel.
//!
//! Every connection may own one deadline (an idle timeout, an HTTP header deadline, a WebSocket
//! ping, a lingering close). Those are armed and re-armed on almost every read, so arming and
//! cancelling must be O(1) and allocation-free in the steady state: a deadline is a node in a slab,
//! linked into the list of the wheel slot its tick falls in (`tick % SLOTS`). Expiry walks only the
//! slots whose tick has passed; a node whose tick is a later lap of the wheel stays where it is.
//! The poll timeout asks for the next non-empty slot: a bitmap of the non-empty slots makes that a
//! scan of at most `SLOTS / 64` words (it was a scan of the slots themselves, and with every
//! connection's deadline a keep-alive timeout away that walked thousands of them on every turn of
//! the loop: 28% of the loop's instructions per HTTP request).
//!
//! Deadlines are rounded *up* to the next tick, so a timer never fires early; it fires at most one
//! tick (`TICK`) late.

use slab::Slab;
use std::time::{Duration, Instant};

/// Resolution of the wheel: 10 ms is finer than any timeout a protocol here asks for
/// (the smallest is a second) and coarse enough that a busy loop rarely crosses a tick.
pub const TICK: Duration = Duration::from_millis(10);
/// Number of slots: 4096 ticks of 10 ms make one lap of ~41 s. Longer deadlines (a 75 s
/// keep-alive) simply stay in their slot for an extra lap.
const SLOTS: usize = 4096;
const NIL: u32 = u32::MAX;
/// Words of the occupancy bitmap, one bit per slot.
const WORDS: usize = SLOTS / 64;
/// Nanoseconds per tick.
const TICK_NANOS: u64 = TICK.as_nanos() as u64;

/// Handle to an armed deadline, valid until it fires or is cancelled. Non-zero (node index + 1)
/// so that `Option<TimerId>` takes 4 bytes in every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerId(std::num::NonZeroU32);

impl TimerId {
    fn from_node(node: u32) -> TimerId {
        TimerId(std::num::NonZeroU32::MIN.saturating_add(node))
    }

    fn node(self) -> usize {
        (self.0.get() - 1) as usize
    }
}

#[derive(Debug)]
struct Node {
    due_tick: u64,
    owner: (usize, u32),
    prev: u32,
    next: u32,
}

/// A hashed timing wheel of deadlines, each owned by a `(slab key, generation)` pair.
#[derive(Debug)]
pub struct TimerWheel {
    origin: Instant,
    slots: Box<[u32]>,
    /// Bit `slot % 64` of word `slot / 64` is set while `slots[slot]` is non-empty.
    occupied: Box<[u64; WORDS]>,
    nodes: Slab<Node>,
    /// The first tick not yet expired.
    cursor: u64,
}

impl TimerWheel {
    /// An empty wheel whose tick 0 starts at `origin`.
    pub fn new(origin: Instant) -> TimerWheel {
        TimerWheel {
            origin,
            slots: vec![NIL; SLOTS].into_boxed_slice(),
            occupied: Box::new([0; WORDS]),
            nodes: Slab::new(),
            cursor: 0,
        }
    }

    /// Number of armed deadlines.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no deadline is armed.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn tick_of(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin);
        // u64 nanoseconds last 584 years, and spare the 128-bit division of `as_nanos`.
        let ns = since
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(since.subsec_nanos()));
        // Round up: a deadline inside a tick belongs to the end of that tick.
        ns.div_ceil(TICK_NANOS)
    }

    /// Arms a deadline at `at` for `owner`. O(1).
    pub fn insert(&mut self, at: Instant, owner: (usize, u32)) -> TimerId {
        // A deadline in the past (or in an already expired tick) fires on the next expiry.
        let due_tick = self.tick_of(at).max(self.cursor);
        let slot = (due_tick % SLOTS as u64) as usize;
        let head = self.slots[slot];
        let id = self.nodes.insert(Node {
            due_tick,
            owner,
            prev: NIL,
            next: head,
        }) as u32;
        if head != NIL {
            self.nodes[head as usize].prev = id;
        }
        self.slots[slot] = id;
        self.occupied[slot / 64] |= 1 << (slot % 64);
        TimerId::from_node(id)
    }

    /// Disarms a deadline. O(1). Cancelling an id that already fired is a caller bug, so ids
    /// must be forgotten when they fire (the loop clears the connection's slot first).
    pub fn cancel(&mut self, id: TimerId) {
        let Some(node) = self.nodes.try_remove(id.node()) else {
            return;
        };
        if node.prev != NIL {
            self.nodes[node.prev as usize].next = node.next;
        } else {
            let slot = (node.due_tick % SLOTS as u64) as usize;
            self.slots[slot] = node.next;
            if node.next == NIL {
                self.occupied[slot / 64] &= !(1 << (slot % 64));
            }
        }
        if node.next != NIL {
            self.nodes[node.next as usize].prev = node.prev;
        }
    }

    /// The instant of the next non-empty slot, or `None` when nothing is armed. The slot's
    /// nodes may belong to a later lap; waking up for them is harmless and rare.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.nodes.is_empty() {
            return None;
        }
        let start = (self.cursor % SLOTS as u64) as usize;
        // The words from the cursor's on, wrapping; the first is looked at twice, its bits before
        // the cursor last (they are the slots one lap ahead).
        for i in 0..=WORDS {
            let w = (start / 64 + i) % WORDS;
            let mut bits = self.occupied[w];
            if i == 0 {
                bits &= u64::MAX << (start % 64);
            }
            if bits != 0 {
                let slot = w * 64 + bits.trailing_zeros() as usize;
                let step = (slot + SLOTS - start) % SLOTS;
                return Some(self.instant_for_tick(self.cursor + step as u64));
            }
        }
        None
    }

    fn instant_for_tick(&self, tick: u64) -> Instant {
        let nanos = tick.saturating_mul(TICK_NANOS);
        self.origin + Duration::from_nanos(nanos)
    }

    /// Removes every deadline due at or before `now` and appends its owner to `fired`.
    pub fn expire(&mut self, now: Instant, fired: &mut Vec<(usize, u32)>) {
        let now_tick = self.tick_of(now);
        // `tick_of` rounds up; only ticks that have fully passed are due.
        let now_tick = if self.instant_for_tick(now_tick) > now {
            now_tick.saturating_sub(1)
        } else {
            now_tick
        };
        if now_tick < self.cursor {
            return;
        }
        let span = (now_tick - self.cursor + 1).min(SLOTS as u64);
        for step in 0..span {
            let slot = ((self.cursor + step) % SLOTS as u64) as usize;
            let mut at = self.slots[slot];
            while at != NIL {
                let node = &self.nodes[at as usize];
                let next = node.next;
                if node.due_tick <= now_tick {
                    fired.push(node.owner);
                    self.cancel(TimerId::from_node(at));
                }
                at = next;
            }
        }
        self.cursor = now_tick + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_order_never_early() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        w.insert(t0 + Duration::from_millis(25), (1, 0));
        w.insert(t0 + Duration::from_millis(5), (2, 0));
        let mut fired = Vec::new();
        w.expire(t0 + Duration::from_millis(4), &mut fired);
        assert!(fired.is_empty());
        w.expire(t0 + Duration::from_millis(10), &mut fired);
        assert_eq!(fired, vec![(2, 0)]);
        fired.clear();
        w.expire(t0 + Duration::from_millis(29), &mut fired);
        assert!(fired.is_empty(), "25 ms rounds up to tick 3 (30 ms)");
        w.expire(t0 + Duration::from_millis(30), &mut fired);
        assert_eq!(fired, vec![(1, 0)]);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_unlinks_anywhere_in_a_slot() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let at = t0 + Duration::from_millis(100);
        let a = w.insert(at, (1, 0));
        let b = w.insert(at, (2, 0));
        let c = w.insert(at, (3, 0));
        w.cancel(b);
        w.cancel(c);
        let mut fired = Vec::new();
        w.expire(at, &mut fired);
        assert_eq!(fired, vec![(1, 0)]);
        w.cancel(a); // already fired: a no-op on an empty slot
        assert!(w.is_empty());
    }

    #[test]
    fn deadlines_beyond_one_lap_wait_for_their_lap() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let lap = TICK * SLOTS as u32;
        w.insert(t0 + lap + Duration::from_millis(20), (7, 1));
        w.insert(t0 + Duration::from_millis(20), (8, 1));
        let mut fired = Vec::new();
        w.expire(t0 + Duration::from_millis(20), &mut fired);
        assert_eq!(fired, vec![(8, 1)]);
        fired.clear();
        w.expire(t0 + lap, &mut fired);
        assert!(fired.is_empty());
        assert_eq!(w.len(), 1);
        w.expire(t0 + lap + Duration::from_millis(20), &mut fired);
        assert_eq!(fired, vec![(7, 1)]);
    }

    #[test]
    fn long_sleep_expires_everything_due_once() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        for i in 0..1000u64 {
            w.insert(t0 + Duration::from_millis(i * 37), (i as usize, 0));
        }
        let mut fired = Vec::new();
        w.expire(t0 + Duration::from_secs(3600), &mut fired);
        assert_eq!(fired.len(), 1000);
        assert!(w.is_empty());
    }

    #[test]
    fn next_deadline_is_the_earliest_slot() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        assert_eq!(w.next_deadline(), None);
        w.insert(t0 + Duration::from_millis(500), (1, 0));
        w.insert(t0 + Duration::from_millis(45), (2, 0));
        assert_eq!(w.next_deadline(), Some(t0 + Duration::from_millis(50)));
        let past = w.insert(t0, (3, 0));
        assert_eq!(w.next_deadline(), Some(t0));
        w.cancel(past);
        assert_eq!(w.next_deadline(), Some(t0 + Duration::from_millis(50)));
    }

    /// The bitmap scan agrees with a walk of the slots from the cursor, wherever the cursor is
    /// (slots before it in its own word are a lap ahead) and across the wrap of the wheel.
    #[test]
    fn next_deadline_matches_a_walk_of_the_slots() {
        let t0 = Instant::now();
        let walk = |w: &TimerWheel| {
            (0..SLOTS as u64)
                .map(|step| w.cursor + step)
                .find(|&tick| w.slots[(tick % SLOTS as u64) as usize] != NIL)
                .map(|tick| w.instant_for_tick(tick))
        };
        let mut w = TimerWheel::new(t0);
        let mut fired = Vec::new();
        for (now_ms, due_ms) in [(0, 75_000), (630, 640), (700, 69_990), (41_000, 41_950)] {
            w.expire(t0 + Duration::from_millis(now_ms), &mut fired);
            let id = w.insert(t0 + Duration::from_millis(due_ms), (1, 0));
            assert_eq!(
                w.next_deadline(),
                walk(&w),
                "now {now_ms} ms, due {due_ms} ms"
            );
            w.insert(t0 + Duration::from_millis(now_ms + 80_000), (2, 0));
            assert_eq!(
                w.next_deadline(),
                walk(&w),
                "now {now_ms} ms, two deadlines"
            );
            w.cancel(id);
            assert_eq!(
                w.next_deadline(),
                walk(&w),
                "now {now_ms} ms, one cancelled"
            );
        }
        w.expire(t0 + Duration::from_secs(3600), &mut fired);
        assert!(w.is_empty());
        assert_eq!(w.occupied.iter().sum::<u64>(), 0, "every bit cleared");
    }
}
