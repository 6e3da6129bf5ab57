//! Idle connections, per origin, of one runtime.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::global::{POOL_IDLE_TIMEOUT, POOL_MAX_IDLE_PER_ORIGIN};
/// How often idle connections are checked for a close from the server or their age, so that
/// a closed one does not linger as a socket in CLOSE_WAIT until the next request.
const REAP_EVERY: Duration = Duration::from_secs(10);

/// The HTTP/1.1 client of one runtime: its idle connections. Cloning shares them.
#[derive(Clone, Default)]
pub struct Http1(Arc<Pool>);

#[derive(Default)]
struct Pool {
    origins: Mutex<HashMap<Origin, Conns>>,
    /// A task checks the idle connections while there are any.
    reaping: AtomicBool,
    /// A caller runtime's client (one request at a time): connects are not raced against
    /// connections given back, which never come while its only request waits.
    alone: bool,
}

/// One origin's connections that no request holds.
#[derive(Default)]
struct Conns {
    /// Oldest first.
    idle: Vec<Idle>,
    /// Requests waiting for a connection while one is being opened for each, first come
    /// first served: a connection given back goes to the first still waiting.
    waiting: VecDeque<oneshot::Sender<TcpStream>>,
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
    /// The client of a caller runtime (see [`Pool::alone`]).
    pub fn alone() -> Http1 {
        Http1(Arc::new(Pool {
            alone: true,
            ..Pool::default()
        }))
    }

    fn origins(&self) -> MutexGuard<'_, HashMap<Origin, Conns>> {
        self.0.origins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest idle connection to `origin` that is still open, if any.
    pub(super) fn take(&self, origin: &Origin) -> Option<TcpStream> {
        let mut closed = Vec::new();
        let found = {
            let mut origins = self.origins();
            let list = &mut origins.get_mut(origin)?.idle;
            let mut found = None;
            while let Some(c) = list.pop() {
                if c.since.elapsed() >= POOL_IDLE_TIMEOUT {
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

    /// A new connection to `origin`, or a connection another request gives back before it is
    /// open, whichever comes first (as hyper's pool does: a connect the listener is slow to
    /// take — a full accept queue costs a second — does not hold up a request that could go out
    /// on a connection freed meanwhile). The connect goes on regardless; a connection the
    /// request did not need goes to the next one waiting, or to the idle ones.
    pub(super) async fn open(&self, origin: &Origin) -> Result<TcpStream, super::SendError> {
        if self.0.alone || tokio::runtime::Handle::try_current().is_err() {
            return super::connect(origin).await;
        }
        let (tx, mut given) = oneshot::channel();
        {
            let mut origins = self.origins();
            let waiting = &mut origins.entry(origin.clone()).or_default().waiting;
            // Requests served by their own connect leave their place behind; with a server
            // that closes every connection nothing is ever given back to clear them.
            waiting.retain(|w| !w.is_closed());
            waiting.push_back(tx);
        }
        let (pool, target) = (self.clone(), origin.clone());
        let (own_tx, own) = oneshot::channel();
        tokio::spawn(async move {
            match own_tx.send(super::connect(&target).await) {
                Ok(()) | Err(Err(_)) => {}
                // Served by another connection (or gone) meanwhile.
                Err(Ok(io)) => pool.give_back(target, io),
            }
        });
        tokio::select! {
            biased;
            io = &mut given => io.map_err(|_| super::SendError::Protocol("connection pool dropped")),
            opened = own => {
                // A connection given back at the same moment goes on to the next request.
                given.close();
                if let Ok(io) = given.try_recv() {
                    self.give_back(origin.clone(), io);
                }
                opened.unwrap_or(Err(super::SendError::Protocol("connect task dropped")))
            }
        }
    }

    /// A connection whose answer was read to its end (or one opened for a request that no longer
    /// needs it), for the next request to `origin`: the first one waiting, else the idle ones.
    pub(super) fn give_back(&self, origin: Origin, mut io: TcpStream) {
        let mut origins = self.origins();
        let conns = origins.entry(origin).or_default();
        while let Some(waiter) = conns.waiting.pop_front() {
            match waiter.send(io) {
                Ok(()) => return,
                // It stopped waiting (served by another connection, or gone).
                Err(back) => io = back,
            }
        }
        if conns.idle.len() >= POOL_MAX_IDLE_PER_ORIGIN {
            conns.idle.remove(0);
        }
        conns.idle.push(Idle {
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
        self.origins().values().map(|c| c.idle.len()).sum()
    }

    /// Places kept for requests waiting for a connection, all origins (those whose request
    /// has gone included, until they are cleared).
    pub fn waiting_count(&self) -> usize {
        self.origins().values().map(|c| c.waiting.len()).sum()
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
            let mut origins = p.origins.lock().unwrap_or_else(|e| e.into_inner());
            origins.retain(|_, conns| {
                let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut conns.idle)
                    .into_iter()
                    .partition(|c| c.since.elapsed() < POOL_IDLE_TIMEOUT && still_open(&c.io));
                conns.idle = keep;
                closed.extend(gone);
                conns.waiting.retain(|w| !w.is_closed());
                !conns.idle.is_empty() || !conns.waiting.is_empty()
            });
            if origins.values().all(|c| c.idle.is_empty()) {
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
