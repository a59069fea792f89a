//! `Handle`: how other threads reach the loop (asyncio's `call_soon_threadsafe`).
//!
//! A message goes into a channel, then the loop is woken through a `mio::Waker` (an eventfd
//! registered with the poll), so the wake-up is just another readiness event. A burst of
//! messages costs one `write(eventfd)`: the `pending` flag stays set until the loop drains.

use log::warn;
use mio::Waker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

/// What travels through the channel to the loop.
pub(crate) enum Envelope<M> {
    /// For `Handler::on_message`.
    Message(M),
    /// Begin a graceful shutdown.
    Shutdown,
}

pub(crate) struct Wake {
    waker: Waker,
    /// True while a wake-up is on its way, so a burst of messages costs one `write(eventfd)`.
    pending: AtomicBool,
}

/// Lets other threads send messages to the loop and stop it. Cheap to clone; `Send + Sync`.
pub struct Handle<M> {
    tx: mpsc::Sender<Envelope<M>>,
    wake: Arc<Wake>,
}

impl<M> Clone for Handle<M> {
    fn clone(&self) -> Self {
        Handle {
            tx: self.tx.clone(),
            wake: self.wake.clone(),
        }
    }
}

impl<M> Handle<M> {
    /// A handle waking `waker`, and the receiving end the loop drains.
    pub(crate) fn new(waker: Waker) -> (Handle<M>, mpsc::Receiver<Envelope<M>>) {
        let (tx, rx) = mpsc::channel();
        let wake = Arc::new(Wake {
            waker,
            pending: AtomicBool::new(false),
        });
        (Handle { tx, wake }, rx)
    }

    /// Called by the loop before it drains the channel: a message sent after this point wakes
    /// it again.
    pub(crate) fn rearm(&self) {
        self.wake.pending.store(false, Ordering::Release);
    }
}

impl<M: Send> Handle<M> {
    /// Sends `msg` to the loop's `Handler::on_message`. Fails (returning it) once the loop is gone.
    pub fn send(&self, msg: M) -> Result<(), M> {
        match self.tx.send(Envelope::Message(msg)) {
            Ok(()) => {
                self.wake();
                Ok(())
            }
            Err(mpsc::SendError(Envelope::Message(m))) => Err(m),
            Err(mpsc::SendError(Envelope::Shutdown)) => unreachable!("sent a message"),
        }
    }

    /// Asks the loop to shut down gracefully, as SIGTERM does.
    pub fn shutdown(&self) {
        if self.tx.send(Envelope::Shutdown).is_ok() {
            self.wake();
        }
    }

    fn wake(&self) {
        if !self.wake.pending.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.wake.waker.wake() {
                warn!("waker failed: {e}");
            }
        }
    }
}
