//! Process-level setup the loop needs from the OS: the descriptor limit.
//!
//! Every connection is a file descriptor, and the default soft limit (often 1024) is far below
//! what a server holding tens of thousands of idle connections needs. Like nginx'
//! `worker_rlimit_nofile`, we raise the soft limit to the hard limit at start-up; raising the
//! hard limit itself needs privileges and is the administrator's call.

use std::io;

/// Raises RLIMIT_NOFILE's soft limit to its hard limit. Returns `(before, after)`.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass; it has no other effects.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur))
}

/// Resident set size of process `pid` (or of this process with `None`), in bytes, from
/// `/proc/PID/statm`. Used by benchmarks and the load generator's `--server-pid`.
pub fn rss_bytes(pid: Option<u32>) -> io::Result<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/statm"),
        None => "/proc/self/statm".to_string(),
    };
    let text = std::fs::read_to_string(path)?;
    let resident: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("unexpected statm format"))?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Ok(resident * page)
}

#[cfg(test)]
mod tests {
    #[test]
    fn soft_limit_reaches_hard_limit() {
        let (_, after) = super::raise_nofile_limit().unwrap();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        assert_eq!(after, lim.rlim_max);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
    }

    #[test]
    fn rss_is_reported() {
        assert!(super::rss_bytes(None).unwrap() > 0);
    }
}
