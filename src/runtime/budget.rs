//! `InputBudget`: the memory all peers together can make us hold for input that is not a whole
//! message yet, and who holds how much of it.
//!
//! Per-connection limits (a 16 MiB WebSocket message, a 16 KiB HTTP head) bound one peer, not
//! a thousand: forty clients each sending fifteen 1 MiB fragments and never the last one hold
//! 600 MiB, and 1,500 of them exhaust a 24 GiB machine. So the loop counts what every
//! connection holds: the unfinished tail in its input buffer (the loop knows that one) plus
//! what its protocol reports holding itself (`Context::hold_input`: the assembled fragments of
//! a WebSocket message, say). When the total passes the budget, the connections holding the
//! most are told (`Handler::on_input_over_budget`: a WebSocket gets 1009, HTTP a 503) and
//! closed, until it is back under. Only holders are in the map, so an idle connection costs
//! nothing here.

use std::collections::HashMap;

/// What one connection holds.
#[derive(Debug, Clone, Copy, Default)]
struct Holding {
    /// Capacity of its input buffer (the loop's count).
    inbuf: usize,
    /// What its protocol reported.
    protocol: usize,
}

impl Holding {
    fn total(self) -> usize {
        self.inbuf + self.protocol
    }
}

/// Buffered input, per connection and in total, against a limit.
#[derive(Debug)]
pub(crate) struct InputBudget {
    limit: usize,
    total: usize,
    held: HashMap<usize, Holding>,
}

impl InputBudget {
    pub(crate) fn new(limit: usize) -> InputBudget {
        InputBudget {
            limit,
            total: 0,
            held: HashMap::new(),
        }
    }

    /// Bytes held by every connection together.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// True while the total is over the limit.
    pub(crate) fn over(&self) -> bool {
        self.total > self.limit
    }

    /// Records the capacity of `key`'s input buffer.
    pub(crate) fn set_inbuf(&mut self, key: usize, bytes: usize) {
        self.update(key, |h| h.inbuf = bytes);
    }

    /// Records what `key`'s protocol holds.
    pub(crate) fn set_protocol(&mut self, key: usize, bytes: usize) {
        self.update(key, |h| h.protocol = bytes);
    }

    /// What `key`'s protocol reported holding.
    pub(crate) fn protocol_of(&self, key: usize) -> usize {
        self.held.get(&key).map_or(0, |h| h.protocol)
    }

    /// `key` holds nothing any more (it closed).
    pub(crate) fn release(&mut self, key: usize) {
        if let Some(h) = self.held.remove(&key) {
            self.total -= h.total();
        }
    }

    /// The connection holding the most, and how much.
    pub(crate) fn largest(&self) -> Option<(usize, usize)> {
        self.held
            .iter()
            .map(|(&key, h)| (key, h.total()))
            .max_by_key(|&(_, bytes)| bytes)
    }

    fn update(&mut self, key: usize, change: impl FnOnce(&mut Holding)) {
        let h = self.held.entry(key).or_default();
        self.total -= h.total();
        change(h);
        self.total += h.total();
        if h.total() == 0 {
            self.held.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_counted_and_the_largest_found() {
        let mut b = InputBudget::new(100);
        b.set_inbuf(1, 30);
        b.set_protocol(1, 20);
        b.set_inbuf(2, 40);
        assert_eq!(b.total(), 90);
        assert!(!b.over());
        b.set_protocol(3, 11);
        assert!(b.over());
        assert_eq!(b.largest(), Some((1, 50)));
        b.release(1);
        assert_eq!(b.total(), 51);
        b.set_inbuf(2, 0);
        assert_eq!(b.largest(), Some((3, 11)));
        b.set_protocol(3, 0);
        assert_eq!(
            b.largest(),
            None,
            "a connection holding nothing is not in the map"
        );
        assert_eq!(b.total(), 0);
    }
}
