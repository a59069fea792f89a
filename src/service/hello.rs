//! The hello service (the asyncio server of the first seed): write a greeting, close once it is
//! flushed. Whatever the client sends is read and dropped.

use crate::runtime::{Chunk, Context};

/// The greeting, queued without a copy on every connection.
pub struct Hello {
    /// Leaked once per server: a `Chunk::Static` costs nothing to queue.
    greeting: &'static [u8],
}

impl Hello {
    /// A service greeting with `text` followed by `\n`.
    pub fn new(text: &str) -> Hello {
        Hello {
            greeting: Box::leak(format!("{text}\n").into_boxed_str()).as_bytes(),
        }
    }

    /// A client connected: greet it and close after the flush.
    pub fn on_open<S, M>(&self, cx: &mut Context<'_, S, M>) {
        let id = cx.id();
        cx.send(id, Chunk::Static(self.greeting));
        cx.close(id);
    }
}
