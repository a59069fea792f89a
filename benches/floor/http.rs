//! The HTTP/1.1 keep-alive floor: find the end of each request head (`\r\n\r\n`) and answer
//! it with a fixed response (the bytes readyloop gave to the same request, captured by the
//! bench at start-up), all answers for one read in one `write`. No request line, header or
//! route is parsed; bodies are not supported.

use super::{Conns, Floor};
use std::os::fd::RawFd;

pub struct FixedResponse {
    response: Vec<u8>,
    out: Vec<u8>,
}

impl FixedResponse {
    pub fn new(response: Vec<u8>) -> FixedResponse {
        FixedResponse {
            response,
            out: Vec::new(),
        }
    }
}

/// Where the head that starts `input` ends (just past its `\r\n\r\n`).
fn head_end(input: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &input[from..]) {
        let nl = from + i;
        if nl >= 3 && &input[nl - 3..=nl] == b"\r\n\r\n" {
            return Some(nl + 1);
        }
        from = nl + 1;
    }
    None
}

impl Floor for FixedResponse {
    fn on_input(&mut self, conns: &mut Conns, fd: RawFd, input: &[u8]) -> usize {
        let mut used = 0;
        while let Some(end) = head_end(&input[used..]) {
            used += end;
            self.out.extend_from_slice(&self.response);
        }
        if !self.out.is_empty() {
            conns.send(fd, &self.out);
            self.out.clear();
        }
        used
    }
}
