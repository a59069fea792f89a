//! `States<S>`: each connection's protocol state, one slot per slab key, kept beside the loop's
//! `Connection`s rather than inside them.
//!
//! Why apart: a callback gets its own connection's state as `&mut S` *and* a `Context` through
//! which it sends, closes and arms timers, for this connection too. If the state sat inside the
//! `Connection` in the slab, the two borrows would overlap (Rust cannot lend one field of a slab
//! entry while the whole slab is lent), and every protocol would have to take its state out and
//! put it back around each `send`. Kept in a vector of its own, the slot of the current
//! connection is lent to the callback and the `Context` gets a view of all the *other* slots
//! (`split_at_mut`): both borrows are checked by the compiler, with no unsafe code and no
//! take-and-put-back.
//!
//! Slot `key` holds a state exactly while slab key `key` holds a connection. `Option` marks the
//! empty slots; for most state types `None` costs nothing (Rust stores it in a niche of `S`), so
//! a connection's memory is `Connection` plus `S`, as if the state were inline. A connection
//! opened from inside a callback (`Context::connect`) cannot take its slot while the vector is
//! split: its state waits in `born` until the callback returns (`settle`).

/// Every connection's protocol state, indexed by slab key.
pub(crate) struct States<S> {
    slots: Vec<Option<S>>,
    /// States of connections opened during the current callback, placed by `settle`.
    born: Vec<(usize, S)>,
}

impl<S> States<S> {
    /// Room for `n` connections up front (address space only, like the slab's reservation).
    pub(crate) fn with_capacity(n: usize) -> States<S> {
        States {
            slots: Vec::with_capacity(n),
            born: Vec::new(),
        }
    }

    /// Gives slab key `key` its state.
    pub(crate) fn insert(&mut self, key: usize, state: S) {
        if key >= self.slots.len() {
            self.slots.resize_with(key + 1, || None);
        }
        self.slots[key] = Some(state);
    }

    /// Takes the state of a connection that is being freed.
    pub(crate) fn take(&mut self, key: usize) -> Option<S> {
        self.slots.get_mut(key).and_then(Option::take)
    }

    /// Lends the state of `key` and a view of every other slot.
    pub(crate) fn lend(&mut self, key: usize) -> Option<(&mut S, Others<'_, S>)> {
        if key >= self.slots.len() {
            return None;
        }
        let (before, rest) = self.slots.split_at_mut(key);
        let (lent, after) = rest.split_first_mut()?;
        let others = Others {
            before,
            after,
            lent: key,
            born: &mut self.born,
        };
        Some((lent.as_mut()?, others))
    }

    /// A view of every slot, for callbacks that are about no one connection.
    pub(crate) fn all(&mut self) -> Others<'_, S> {
        Others {
            before: &mut self.slots,
            after: &mut [],
            lent: usize::MAX,
            born: &mut self.born,
        }
    }

    /// Places the states of connections opened during the last callback.
    pub(crate) fn settle(&mut self) {
        while let Some((key, state)) = self.born.pop() {
            self.insert(key, state);
        }
    }
}

/// The slots a `Context` may reach: all but the one lent to the running callback.
pub(crate) struct Others<'a, S> {
    before: &'a mut [Option<S>],
    after: &'a mut [Option<S>],
    /// The key whose state the callback holds (`usize::MAX`: none).
    lent: usize,
    born: &'a mut Vec<(usize, S)>,
}

impl<S> Others<'_, S> {
    /// The slot of `key` in the view (`None` for the lent one, or past the end).
    fn slot(&mut self, key: usize) -> Option<&mut Option<S>> {
        use std::cmp::Ordering::*;
        match key.cmp(&self.lent) {
            Less => self.before.get_mut(key),
            Equal => None,
            Greater => self.after.get_mut(key - self.lent - 1),
        }
    }

    /// The state of `key`, unless it is the one the callback already holds.
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut S> {
        if matches!(self.slot(key), Some(Some(_))) {
            return self.slot(key).and_then(|slot| slot.as_mut());
        }
        self.born
            .iter_mut()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| s)
    }

    /// Takes the state of `key` out for a moment (`Context::with_state`); `put` returns it.
    pub(crate) fn take(&mut self, key: usize) -> Option<S> {
        if let Some(state) = self.slot(key).and_then(Option::take) {
            return Some(state);
        }
        let i = self.born.iter().position(|(k, _)| *k == key)?;
        Some(self.born.swap_remove(i).1)
    }

    /// Returns a state taken with `take`.
    pub(crate) fn put(&mut self, key: usize, state: S) {
        match self.slot(key) {
            Some(slot) => *slot = Some(state),
            None => self.born.push((key, state)),
        }
    }

    /// Records the state of a connection opened during this callback.
    pub(crate) fn insert(&mut self, key: usize, state: S) {
        self.born.push((key, state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lent_slot_is_out_of_the_views_reach() {
        let mut states = States::with_capacity(4);
        for k in 0..4 {
            states.insert(k, k * 10);
        }
        let (mine, mut others) = states.lend(2).unwrap();
        *mine += 1;
        assert_eq!(others.get_mut(2), None, "the callback already holds it");
        assert_eq!(others.get_mut(0).copied(), Some(0));
        assert_eq!(others.get_mut(3).copied(), Some(30));
        others.insert(7, 70);
        assert_eq!(
            others.get_mut(7).copied(),
            Some(70),
            "born in this callback"
        );
        states.settle();
        assert_eq!(states.all().get_mut(2).copied(), Some(21));
        assert_eq!(states.take(7), Some(70));
        assert_eq!(states.take(7), None);
        assert!(states.lend(9).is_none());
    }

    #[test]
    fn no_state_costs_nothing_for_a_state_with_a_niche() {
        // The server's state is an enum with a pointer in it: `None` takes its niche.
        assert_eq!(
            std::mem::size_of::<Option<Box<u8>>>(),
            std::mem::size_of::<Box<u8>>()
        );
    }
}
