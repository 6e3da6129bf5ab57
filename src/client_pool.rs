//! The shared runtime's HTTP clients, each carrying at most [`PER_CLIENT`] requests at once.
//!
//! Over HTTPS a provider usually negotiates HTTP/2, and a reqwest client then sends every
//! request to that host over one connection. A server allows only so many streams on a
//! connection (SETTINGS_MAX_CONCURRENT_STREAMS: 100 or a little more at the big API fronts)
//! and hyper queues the requests past that limit inside the client, by design, instead of
//! opening another connection: with 1,000 requests in flight, 900 would wait in a queue llmr
//! cannot see while their timeouts run. So requests are spread over several clients (each with
//! its own pool, so its own connection per host), none given more than 100 at once, the
//! smallest limit a server should set (RFC 9113, section 6.5.2). Over HTTP/1.1 nothing
//! changes: each client opens a connection per request in flight, as one client did.
//!
//! A request takes a [`Slot`] from the first client with room, and gives it back when its
//! answer has been read to the end (a stream holds it while it streams). Clients are added as
//! the number in flight grows and kept: one no request uses any more has closed its
//! connections after the idle timeout and holds nothing else of note.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

/// Requests in flight on one client at most.
pub const PER_CLIENT: usize = 100;

pub struct ClientPool {
    clients: ArcSwap<Vec<Arc<Client>>>,
    /// Serialises adding a client (two requests finding every client full add one, not two).
    grow: Mutex<()>,
    new_client: fn() -> reqwest::Client,
}

struct Client {
    http: reqwest::Client,
    in_flight: AtomicUsize,
}

/// One request's place on a client; gives it back when dropped. A clone is a second place
/// (`http::Extensions` wants `Clone` of what a response carries).
pub struct Slot(Arc<Client>);

impl Clone for Slot {
    fn clone(&self) -> Slot {
        self.0.in_flight.fetch_add(1, Ordering::Relaxed);
        Slot(self.0.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ClientPool {
    /// A pool whose first client is `first`; the ones added later come from `new_client`.
    pub fn new(first: reqwest::Client, new_client: fn() -> reqwest::Client) -> ClientPool {
        ClientPool {
            clients: ArcSwap::from_pointee(vec![Arc::new(Client {
                http: first,
                in_flight: AtomicUsize::new(0),
            })]),
            grow: Mutex::new(()),
            new_client,
        }
    }

    /// A client with room for one more request, and the request's place on it.
    pub fn take(&self) -> (reqwest::Client, Slot) {
        if let Some(taken) = first_with_room(&self.clients.load()) {
            return taken;
        }
        let _g = self.grow.lock().unwrap_or_else(|p| p.into_inner());
        let clients = self.clients.load_full();
        // Another request may have added one (or finished) while this one waited.
        if let Some(taken) = first_with_room(&clients) {
            return taken;
        }
        let added = Arc::new(Client {
            http: (self.new_client)(),
            in_flight: AtomicUsize::new(1),
        });
        let mut more = Vec::with_capacity(clients.len() + 1);
        more.extend(clients.iter().cloned());
        more.push(added.clone());
        self.clients.store(Arc::new(more));
        (added.http.clone(), Slot(added))
    }

    /// A client to build a request with (a request built is sent on the client `take` picks:
    /// reqwest applies a client's defaults when it sends, not when it builds).
    pub fn any(&self) -> reqwest::Client {
        self.clients.load()[0].http.clone()
    }

    /// How many clients the pool holds.
    pub fn clients(&self) -> usize {
        self.clients.load().len()
    }

    /// Requests in flight over all clients.
    pub fn in_flight(&self) -> usize {
        self.clients
            .load()
            .iter()
            .map(|c| c.in_flight.load(Ordering::Relaxed))
            .sum()
    }
}

fn first_with_room(clients: &[Arc<Client>]) -> Option<(reqwest::Client, Slot)> {
    clients.iter().find_map(|c| {
        if c.in_flight.fetch_add(1, Ordering::Relaxed) < PER_CLIENT {
            Some((c.http.clone(), Slot(c.clone())))
        } else {
            c.in_flight.fetch_sub(1, Ordering::Relaxed);
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    #[test]
    fn a_client_is_added_only_when_every_one_carries_the_limit() {
        let pool = ClientPool::new(client(), client);
        let mut slots: Vec<Slot> = (0..PER_CLIENT).map(|_| pool.take().1).collect();
        assert_eq!(pool.clients(), 1);
        slots.push(pool.take().1);
        assert_eq!(pool.clients(), 2);
        assert_eq!(pool.in_flight(), PER_CLIENT + 1);
        // A place given back on the first client is taken again before the second one.
        slots.swap_remove(0);
        let _again = pool.take().1;
        assert_eq!(
            pool.clients.load()[0].in_flight.load(Ordering::Relaxed),
            PER_CLIENT
        );
        assert_eq!(pool.clients.load()[1].in_flight.load(Ordering::Relaxed), 1);
        drop(slots);
        drop(_again);
        assert_eq!(pool.in_flight(), 0);
        assert_eq!(pool.clients(), 2, "clients are kept");
    }

    #[test]
    fn a_cloned_slot_is_a_second_place() {
        let pool = ClientPool::new(client(), client);
        let a = pool.take().1;
        let b = a.clone();
        assert_eq!(pool.in_flight(), 2);
        drop(a);
        assert_eq!(pool.in_flight(), 1);
        drop(b);
        assert_eq!(pool.in_flight(), 0);
    }

    #[test]
    fn many_threads_taking_at_once_never_overfill_a_client() {
        let pool = ClientPool::new(client(), client);
        let slots = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..(PER_CLIENT * 3 / 2) {
                        let slot = pool.take().1;
                        slots.lock().unwrap().push(slot);
                    }
                });
            }
        });
        let n = 8 * PER_CLIENT * 3 / 2;
        assert_eq!(pool.in_flight(), n);
        assert_eq!(pool.clients(), n.div_ceil(PER_CLIENT));
        for c in pool.clients.load().iter() {
            assert!(c.in_flight.load(Ordering::Relaxed) <= PER_CLIENT);
        }
    }
}
