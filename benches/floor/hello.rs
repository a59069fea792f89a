//! The hello floor: accept, write the greeting, close. The accepted socket is never
//! registered with epoll (a greeting fits any fresh socket's send buffer) and never read.

use super::{accept, announce, close, listener, write, Epoll};
use std::io;

pub fn run(greeting: &[u8]) -> io::Result<()> {
    let (listen_fd, addr) = listener()?;
    let ep = Epoll::new()?;
    ep.add(listen_fd, 0, libc::EPOLLIN as u32)?;
    announce("hello", addr);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1];
    loop {
        ep.wait(&mut events)?;
        while let Some(fd) = accept(listen_fd) {
            let _ = write(fd, greeting);
            close(fd);
        }
    }
}
