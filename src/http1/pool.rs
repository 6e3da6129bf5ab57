//! Idle connections, per origin, of one runtime.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::net::TcpStream;

/// As reqwest's clients are set (`global::client_builder`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const MAX_IDLE_PER_ORIGIN: usize = 1024;
/// How often idle connections are checked for a close from the server or their age, so that
/// a closed one does not linger as a socket in CLOSE_WAIT until the next request.
const REAP_EVERY: Duration = Duration::from_secs(10);

/// The HTTP/1.1 client of one runtime: its idle connections. Cloning shares them.
#[derive(Clone, Default)]
pub struct Http1(Arc<Pool>);

#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<Origin, Vec<Idle>>>,
    /// A task checks the idle connections while there are any.
    reaping: AtomicBool,
}

struct Idle {
    io: TcpStream,
    since: Instant,
}

/// Where a connection goes: host (a name or an address, without brackets) and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    host: Box<str>,
    port: u16,
}

impl Origin {
    pub(crate) fn of(url: &Url) -> Option<Origin> {
        let host = url.host_str()?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Some(Origin {
            host: host.into(),
            port: url.port_or_known_default()?,
        })
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Http1 {
    fn idle(&self) -> MutexGuard<'_, HashMap<Origin, Vec<Idle>>> {
        self.0.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest idle connection to `origin` that is still open, if any.
    pub(super) fn take(&self, origin: &Origin) -> Option<TcpStream> {
        let mut closed = Vec::new();
        let found = {
            let mut idle = self.idle();
            let list = idle.get_mut(origin)?;
            let mut found = None;
            while let Some(c) = list.pop() {
                if c.since.elapsed() >= IDLE_TIMEOUT {
                    // The rest are older still.
                    closed.push(c);
                    closed.append(list);
                    break;
                }
                if still_open(&c.io) {
                    found = Some(c.io);
                    break;
                }
                closed.push(c);
            }
            found
        };
        // Closed (deregistered from the reactor) outside the lock.
        drop(closed);
        found
    }

    /// A connection whose answer was read to its end, for the next request to `origin`.
    pub(super) fn give_back(&self, origin: Origin, io: TcpStream) {
        let mut idle = self.idle();
        let list = idle.entry(origin).or_default();
        if list.len() >= MAX_IDLE_PER_ORIGIN {
            list.remove(0);
        }
        list.push(Idle {
            io,
            since: Instant::now(),
        });
        // Under the lock: the reaper decides to stop under it too.
        if !self.0.reaping.swap(true, Ordering::AcqRel) {
            start_reaper(Arc::downgrade(&self.0));
        }
    }

    /// Idle connections kept, all origins.
    pub fn idle_count(&self) -> usize {
        self.idle().values().map(Vec::len).sum()
    }
}

fn start_reaper(pool: Weak<Pool>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        if let Some(p) = pool.upgrade() {
            p.reaping.store(false, Ordering::Release);
        }
        return;
    };
    rt.spawn(async move {
        loop {
            tokio::time::sleep(REAP_EVERY).await;
            let Some(p) = pool.upgrade() else { return };
            let mut closed = Vec::new();
            let mut idle = p.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.retain(|_, list| {
                let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(list)
                    .into_iter()
                    .partition(|c| c.since.elapsed() < IDLE_TIMEOUT && still_open(&c.io));
                *list = keep;
                closed.extend(gone);
                !list.is_empty()
            });
            if idle.is_empty() {
                p.reaping.store(false, Ordering::Release);
                return;
            }
        }
    });
}

/// Whether an idle connection is still open: a server that closed it (or sent something
/// unasked, which makes it unusable) made it readable. Asked of the socket itself, not of the
/// runtime's last readiness event: a caller runtime between calls has seen none.
#[cfg(unix)]
fn still_open(io: &TcpStream) -> bool {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: the descriptor stays `io`'s: ManuallyDrop never closes it, and the borrow of `io`
    // outlives this use. It is non-blocking (tokio set it so): `peek` never waits.
    let socket =
        std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(io.as_raw_fd()) });
    let mut probe = [0u8; 1];
    matches!(socket.peek(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(not(unix))]
fn still_open(io: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
