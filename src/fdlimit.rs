//! The open-file limit: every WebSocket is a file descriptor, and the usual
//! soft limit (1024) is far below `HERALD_MAX_CONNECTIONS`. [`raise`] lifts
//! the soft limit to the hard one, as far as the process may without
//! privileges; the hard limit itself is the administrator's (`ulimit -Hn`,
//! systemd's `LimitNOFILE`).

/// The soft and hard limits on open files after raising the soft one to
/// the hard one (`None`: unlimited); an error if they could not be read or set.
#[cfg(unix)]
pub fn raise() -> std::io::Result<(Option<u64>, Option<u64>)> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    let now = getrlimit(Resource::Nofile);
    Ok((now.current, now.maximum))
}

/// Not unix: nothing to raise.
#[cfg(not(unix))]
pub fn raise() -> std::io::Result<(Option<u64>, Option<u64>)> {
    Ok((None, None))
}
