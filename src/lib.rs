//! readyloop: placeholder
