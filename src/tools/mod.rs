//! The tools that come with the server: `readyloop client` and `readyloop load`, both on a loop
//! of the same kind (the client side of the runtime: non-blocking `connect`, the same
//! `Handler` API).

pub mod client;
#[cfg(feature = "load")]
pub mod load;
