//! Router state shared between processes through Redis (`router_settings.redis_url`).
//!
//! Every deployment keeps its in-process [`LocalState`]; [`SharedState`] wraps it and adds
//! Redis. The request path pays one round trip at most: the rpm/tpm reservation, one Lua
//! script that checks and counts atomically. Everything else is written fire-and-forget
//! through one background task (batched in pipelines) and read from a local view that the
//! same task refreshes every [`REFRESH_EVERY`]: cooldowns set by another process are merged
//! into the local store, so reading them costs no round trip.
//!
//! Redis down, or slower than `redis_timeout` (50 ms) for a reservation: the request goes on with the
//! local store, which then enforces this process's share of the limits (the limit divided by
//! the processes last seen alive); one warning is logged when shared state is lost, one info
//! when it is back. While it is lost the request path does not call Redis at all: the
//! background task probes it and brings it back.
//!
//! Keys (all under `{prefix}`, those of one deployment sharing the hash tag `{<id>}` so that
//! they live in one Redis Cluster slot; every key has a TTL):
//! `P:{id}:rpm:M`, `P:{id}:tpm:M` (requests, tokens of Unix minute M), `P:{id}:inflight`,
//! `P:{id}:fails`, `P:{id}:cooldown`, `P:{id}:latency`, and `P:procs` (heartbeats).

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use super::state::{
    ewma, now_ms, Cooldown, LatencyView, LiveState, LocalState, MinuteUsage, Timing, MINUTE_MS,
};
use crate::errors::Status;
use crate::log;
use crate::secret::Secret;

/// The longest a background call (refresh, writes, probe) waits.
const BACKGROUND_TIMEOUT: Duration = Duration::from_millis(500);
/// How often the local view of other processes' state is refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_millis(250);
/// A process whose heartbeat is older than this no longer counts among the live ones.
const HEARTBEAT_TTL_MS: u64 = 5_000;
/// Windows outlive their minute a little, so that late settles still find them.
const WINDOW_GRACE_MS: u64 = 5_000;
const FAILURES_TTL_MS: u64 = MINUTE_MS;
/// In-flight counts of a process that died mid-request fade after this.
const IN_FLIGHT_TTL_MS: u64 = 15 * MINUTE_MS;
const LATENCY_TTL_MS: u64 = 60 * MINUTE_MS;
const LATENCY_SAMPLES: isize = 50;
/// Writes waiting for the background task; past this they are dropped (Redis is too slow).
const WRITE_QUEUE: usize = 8192;

/// Checks and counts one request and its tokens against this minute's window, atomically.
/// Returns -1 when reserved, else the ms until the window frees. A request larger than the
/// whole tpm still goes alone in an empty window, like the local store does.
const RESERVE_LUA: &str = r"
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local r = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
if (rpm >= 0 and r + 1 > rpm) or (tpm >= 0 and t + n > tpm and t > 0) then
  return tonumber(ARGV[5])
end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('INCRBY', KEYS[2], n)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return -1
";

/// Adds a (possibly negative) amount to a counter, never below 0, and sets its TTL.
const ADD_LUA: &str = r"
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if v < 0 then redis.call('SET', KEYS[1], 0) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
";

/// Counts a failure; the count lives a minute from the first one.
const FAILURE_LUA: &str = r"
local v = redis.call('INCR', KEYS[1])
if v == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return v
";

/// Sets a cooldown unless a longer one is in force; a cooled-down deployment's failure count
/// starts afresh.
const COOLDOWN_LUA: &str = r"
local old = redis.call('GET', KEYS[1])
if old then
  local until_old = tonumber(string.match(old, '^(%d+)'))
  if until_old and until_old >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[1])
redis.call('DEL', KEYS[2])
return 1
";

/// Whether `url` is one llmr can use (the URL itself is never quoted in errors).
pub fn valid_url(url: &str) -> bool {
    (url.starts_with("redis://") || url.starts_with("rediss://"))
        && redis::Client::open(url).is_ok()
}

/// The password of a redis URL, to scrub from anything leaving the library.
pub fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let creds = &rest[..rest.rfind('@')?];
    let pass = &creds[creds.find(':')? + 1..];
    (!pass.is_empty()).then_some(pass)
}

const CONNECTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// One connection to Redis for the whole router, its health, and the background task.
pub struct Shared {
    url: Secret,
    prefix: Arc<str>,
    /// The longest a reservation waits for Redis before the request goes on with local state.
    call_timeout: Duration,
    /// The runtime, for the goodbye sent when the store is dropped (possibly off the runtime).
    runtime: tokio::runtime::Handle,
    /// This process in the heartbeat set.
    process: String,
    conn: ArcSwapOption<ConnectionManager>,
    health: AtomicU8,
    /// Processes seen alive at the last heartbeat (this one included).
    processes: AtomicU32,
    deployments: Mutex<Vec<Weak<SharedState>>>,
    writes: mpsc::Sender<Write>,
    reserve: redis::Script,
    /// Warns once when writes are dropped, until they flow again.
    dropping: std::sync::atomic::AtomicBool,
}

/// A fire-and-forget write.
enum Write {
    Add {
        key: String,
        by: i64,
        ttl_ms: u64,
    },
    Failure {
        key: String,
    },
    Cooldown {
        key: String,
        fails: String,
        value: String,
        until_ms: u64,
    },
    Latency {
        key: String,
        sample: String,
    },
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Starts the shared store and its background task (which connects, with backoff); must be
    /// called within the runtime. Never fails for Redis being down: requests then use local
    /// state until it is up.
    pub fn start(url: &Secret, prefix: &str, call_timeout: Duration) -> Arc<Shared> {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let shared = Arc::new(Shared {
            url: url.clone(),
            prefix: Arc::from(prefix),
            call_timeout,
            runtime: tokio::runtime::Handle::current(),
            process: format!("{}-{:016x}", std::process::id(), fastrand::u64(..)),
            conn: ArcSwapOption::const_empty(),
            health: AtomicU8::new(CONNECTING),
            processes: AtomicU32::new(1),
            deployments: Mutex::new(Vec::new()),
            writes: tx,
            reserve: redis::Script::new(RESERVE_LUA),
            dropping: false.into(),
        });
        tokio::spawn(background(Arc::downgrade(&shared), rx));
        shared
    }

    /// Whether this store serves the same Redis namespace (a reload keeps it then).
    pub fn same(&self, url: &Secret, prefix: &str, call_timeout: Duration) -> bool {
        self.url == *url && &*self.prefix == prefix && self.call_timeout == call_timeout
    }

    pub fn is_up(&self) -> bool {
        self.health.load(Ordering::Acquire) == UP
    }

    pub fn processes(&self) -> u32 {
        self.processes.load(Ordering::Relaxed).max(1)
    }

    /// The state of one deployment, registered for the background refresh.
    pub fn deployment(self: &Arc<Self>, id: &str) -> Arc<SharedState> {
        let s = Arc::new(SharedState {
            local: LocalState::default(),
            shared: self.clone(),
            base: format!("{}:{{{id}}}", self.prefix),
            view: Mutex::new(View::default()),
        });
        let mut list = lock(&self.deployments);
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&s));
        s
    }

    /// For `llmr_stats` / `llmr_router_info`: never the URL's password.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "enabled": true,
            "prefix": &*self.prefix,
            "redis_reachable": self.is_up(),
            "processes": self.processes(),
        })
    }

    fn scrub(&self, mut text: String) -> String {
        if let Some(p) = url_password(self.url.expose()) {
            text = text.replace(p, "[REDACTED]");
        }
        text
    }

    fn lost(&self, why: &str) {
        if self.health.swap(DOWN, Ordering::AcqRel) != DOWN {
            log::warn(
                "shared state lost: Redis is unreachable or slow; limits are enforced per process until it is back",
                &[
                    ("error", self.scrub(why.to_owned()).into()),
                    ("processes", self.processes().into()),
                ],
            );
            self.rescore_all();
        }
    }

    /// Every deployment's scores change with the source of its figures (Redis, or this process).
    fn rescore_all(&self) {
        let states: Vec<Arc<SharedState>> = lock(&self.deployments)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for s in states {
            s.local.changed();
        }
    }

    fn back(&self) {
        let was = self.health.swap(UP, Ordering::AcqRel);
        if was != UP {
            let msg = if was == DOWN {
                "shared state back: Redis is reachable again"
            } else {
                "shared state in use: connected to Redis"
            };
            log::info(msg, &[("prefix", (&*self.prefix).into())]);
            self.rescore_all();
        }
    }

    fn push(&self, w: Write) {
        if !self.is_up() {
            return; // local only while Redis is lost; the background task brings it back
        }
        match self.writes.try_send(w) {
            Ok(()) => {
                self.dropping.store(false, Ordering::Relaxed);
            }
            Err(_) => {
                if !self.dropping.swap(true, Ordering::Relaxed) {
                    log::warn("shared state: Redis is too slow, writes dropped", &[]);
                }
            }
        }
    }

    fn connection(&self) -> Option<ConnectionManager> {
        self.conn.load().as_deref().cloned()
    }
}

impl Drop for Shared {
    /// Takes this process out of the heartbeat set at once, so that the others' share of the
    /// limits (should Redis be lost) counts it out without waiting for its heartbeat to age.
    fn drop(&mut self) {
        let Some(mut conn) = self.connection() else {
            return;
        };
        if !self.is_up() {
            return;
        }
        let procs = format!("{}:procs", self.prefix);
        let me = std::mem::take(&mut self.process);
        self.runtime.spawn(async move {
            let mut bye = redis::cmd("ZREM");
            bye.arg(procs).arg(me);
            let _ =
                tokio::time::timeout(BACKGROUND_TIMEOUT, bye.query_async::<()>(&mut conn)).await;
        });
    }
}

/// Connects (with backoff), then runs the writes as they come and refreshes the local views
/// every [`REFRESH_EVERY`]. Ends when the router's store is dropped (shutdown, or a reload to
/// another Redis); its connection goes with it.
async fn background(shared: Weak<Shared>, mut rx: mpsc::Receiver<Write>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(s) = shared.upgrade() else { return };
        let client = match redis::Client::open(s.url.expose()) {
            Ok(c) => c,
            Err(e) => {
                s.lost(&e.to_string());
                return;
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(BACKGROUND_TIMEOUT)
            .set_response_timeout(BACKGROUND_TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(2_000);
        let connected = tokio::time::timeout(
            BACKGROUND_TIMEOUT * 2,
            ConnectionManager::new_with_config(client, config),
        )
        .await;
        match connected {
            Ok(Ok(c)) => {
                s.conn.store(Some(Arc::new(c)));
                break;
            }
            Ok(Err(e)) => s.lost(&e.to_string()),
            Err(_) => s.lost("connecting timed out"),
        }
        drop(s);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    let mut ticks = 0u32;
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            w = rx.recv() => {
                let Some(w) = w else { return };
                let Some(s) = shared.upgrade() else { return };
                let mut batch = vec![w];
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(w) => batch.push(w),
                        Err(_) => break,
                    }
                }
                s.write(batch).await;
            }
            _ = tick.tick() => {
                let Some(s) = shared.upgrade() else { return };
                // Latency samples change the ranking slowly: read them every fourth time.
                s.refresh(ticks % 4 == 0).await;
                ticks = ticks.wrapping_add(1);
            }
        }
    }
}

impl Shared {
    async fn write(&self, batch: Vec<Write>) {
        let Some(mut conn) = self.connection() else {
            return;
        };
        let mut pipe = redis::pipe();
        for w in &batch {
            match w {
                Write::Add { key, by, ttl_ms } => {
                    pipe.cmd("EVAL")
                        .arg(ADD_LUA)
                        .arg(1)
                        .arg(key)
                        .arg(*by)
                        .arg(*ttl_ms)
                        .ignore();
                }
                Write::Failure { key } => {
                    pipe.cmd("EVAL")
                        .arg(FAILURE_LUA)
                        .arg(1)
                        .arg(key)
                        .arg(FAILURES_TTL_MS)
                        .ignore();
                }
                Write::Cooldown {
                    key,
                    fails,
                    value,
                    until_ms,
                } => {
                    pipe.cmd("EVAL")
                        .arg(COOLDOWN_LUA)
                        .arg(2)
                        .arg(key)
                        .arg(fails)
                        .arg(*until_ms)
                        .arg(value)
                        .ignore();
                }
                Write::Latency { key, sample } => {
                    pipe.cmd("LPUSH").arg(key).arg(sample).ignore();
                    pipe.cmd("LTRIM")
                        .arg(key)
                        .arg(0)
                        .arg(LATENCY_SAMPLES - 1)
                        .ignore();
                    pipe.cmd("PEXPIRE").arg(key).arg(LATENCY_TTL_MS).ignore();
                }
            }
        }
        match tokio::time::timeout(BACKGROUND_TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.lost(&e.to_string()),
            Err(_) => self.lost("a write timed out"),
        }
    }

    /// Heartbeat, live process count, and every deployment's view, in one pipeline. Also the
    /// probe that brings shared state back after a loss.
    async fn refresh(&self, with_latency: bool) {
        let Some(mut conn) = self.connection() else {
            return;
        };
        let now = now_ms();
        let minute = now / MINUTE_MS;
        let states: Vec<Arc<SharedState>> = lock(&self.deployments)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let procs = format!("{}:procs", self.prefix);
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(&procs)
            .arg(now)
            .arg(&self.process)
            .ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&procs)
            .arg("-inf")
            .arg(now.saturating_sub(HEARTBEAT_TTL_MS))
            .ignore();
        pipe.cmd("PEXPIRE")
            .arg(&procs)
            .arg(HEARTBEAT_TTL_MS)
            .ignore();
        pipe.cmd("ZCARD").arg(&procs);
        for s in &states {
            pipe.cmd("GET").arg(s.key_minute("rpm", minute));
            pipe.cmd("GET").arg(s.key_minute("tpm", minute));
            pipe.cmd("GET").arg(s.key("inflight"));
            pipe.cmd("GET").arg(s.key("fails"));
            pipe.cmd("GET").arg(s.key("cooldown"));
            if with_latency {
                pipe.cmd("LRANGE").arg(s.key("latency")).arg(0).arg(-1);
            }
        }
        let answer = tokio::time::timeout(
            BACKGROUND_TIMEOUT,
            pipe.query_async::<Vec<redis::Value>>(&mut conn),
        )
        .await;
        let values = match answer {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return self.lost(&e.to_string()),
            Err(_) => return self.lost("a refresh timed out"),
        };
        self.back();
        let mut it = values.iter();
        let mut next = || it.next().cloned().unwrap_or(redis::Value::Nil);
        let num = |v: redis::Value| redis::from_redis_value::<Option<i64>>(&v).ok().flatten();
        if let Some(n) = num(next()) {
            self.processes
                .store(n.clamp(1, u32::MAX.into()) as u32, Ordering::Relaxed);
        }
        for s in &states {
            let rpm = num(next()).unwrap_or(0).max(0) as u64;
            let tpm = num(next()).unwrap_or(0).max(0) as u64;
            let in_flight = num(next()).unwrap_or(0).max(0) as u64;
            let fails = num(next()).unwrap_or(0).max(0) as u64;
            let cooldown = redis::from_redis_value::<Option<String>>(&next())
                .ok()
                .flatten();
            let samples = if with_latency {
                redis::from_redis_value::<Vec<String>>(&next()).unwrap_or_default()
            } else {
                Vec::new()
            };
            s.merge(
                minute,
                rpm,
                tpm,
                in_flight,
                fails,
                cooldown.as_deref(),
                &samples,
                now,
            );
        }
    }
}

/// What the last refresh saw of the other processes (Redis's figures less this process's).
#[derive(Clone, Copy, Default, PartialEq)]
struct View {
    minute: u64,
    others_usage: MinuteUsage,
    others_in_flight: u32,
    others_failures: u32,
    latency: Option<LatencyView>,
}

/// One deployment's state: the local store, plus Redis.
pub struct SharedState {
    local: LocalState,
    shared: Arc<Shared>,
    /// `prefix:{id}`, the start of every key of this deployment.
    base: String,
    view: Mutex<View>,
}

impl SharedState {
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.base)
    }

    fn key_minute(&self, what: &str, minute: u64) -> String {
        format!("{}:{what}:{minute}", self.base)
    }

    /// Reserves against the shared window: one round trip, bounded by `redis_timeout`; Redis
    /// lost or slower than `redis_timeout`, this process's share of the limits, locally.
    pub async fn reserve_shared(
        &self,
        rpm: Option<u64>,
        tpm: Option<u64>,
        tokens: u64,
        now: u64,
    ) -> Result<(), f64> {
        let s = &self.shared;
        if rpm.is_none() && tpm.is_none() {
            // Nothing to check: the usage is counted without waiting (usage-based routing).
            self.local.add(tokens, now);
            let minute = now / MINUTE_MS;
            let ttl_ms = (minute + 1) * MINUTE_MS - now + WINDOW_GRACE_MS;
            let by = tokens.min(i64::MAX as u64) as i64;
            s.push(Write::Add {
                key: self.key_minute("rpm", minute),
                by: 1,
                ttl_ms,
            });
            s.push(Write::Add {
                key: self.key_minute("tpm", minute),
                by,
                ttl_ms,
            });
            return Ok(());
        }
        if s.is_up() {
            if let Some(conn) = s.connection() {
                let minute = now / MINUTE_MS;
                let left_ms = (minute + 1) * MINUTE_MS - now;
                let keys = [
                    self.key_minute("rpm", minute),
                    self.key_minute("tpm", minute),
                ];
                let args = [
                    rpm.map_or(-1, |l| l.min(1 << 52) as i64),
                    tpm.map_or(-1, |l| l.min(1 << 52) as i64),
                    tokens.min(1 << 52) as i64,
                    (left_ms + WINDOW_GRACE_MS) as i64,
                    left_ms as i64,
                ];
                let call = reserve_call(s.clone(), conn, keys, args);
                // The connection (and a reconnect it starts) must stay on the shared runtime: a
                // blocking call's own runtime stops when the call returns.
                let answer = if crate::caller_runtime::is_driving() {
                    s.runtime.spawn(call).await.ok().flatten()
                } else {
                    call.await
                };
                match answer {
                    Some(Ok(-1)) => {
                        self.local.add(tokens, now);
                        return Ok(());
                    }
                    Some(Ok(ms)) => return Err(ms.max(0) as f64 / 1000.0),
                    Some(Err(e)) => s.lost(&e.to_string()),
                    None => s.lost("a reservation took longer than redis_timeout"),
                }
            }
        }
        let n = u64::from(s.processes());
        let share = |l: u64| (l / n).max(1);
        self.local
            .reserve(rpm.map(share), tpm.map(share), tokens, now)
    }

    #[allow(clippy::too_many_arguments)]
    fn merge(
        &self,
        minute: u64,
        rpm: u64,
        tpm: u64,
        in_flight: u64,
        fails: u64,
        cooldown: Option<&str>,
        samples: &[String],
        now: u64,
    ) {
        if let Some(c) = cooldown.and_then(parse_cooldown) {
            if c.until_ms > now {
                self.local.cool_down(c);
            }
        }
        let mine = self.local.usage(now);
        let latency = latency_of(samples);
        let mut v = lock(&self.view);
        let before = *v;
        v.minute = minute;
        v.others_usage = MinuteUsage {
            requests: rpm.saturating_sub(mine.requests),
            tokens: tpm.saturating_sub(mine.tokens),
        };
        v.others_in_flight = in_flight
            .saturating_sub(u64::from(self.local.in_flight()))
            .min(u32::MAX.into()) as u32;
        v.others_failures = fails.saturating_sub(u64::from(self.local.failures(now))) as u32;
        if latency.is_some() {
            v.latency = latency;
        }
        let changed = *v != before;
        drop(v);
        // Most refreshes see what the last one saw; only a changed view needs re-scoring.
        if changed {
            self.local.changed();
        }
    }
}

/// The reservation script's call: -1 when reserved, else the ms until the window frees; `None`
/// when it took longer than `redis_timeout`.
async fn reserve_call(
    s: Arc<Shared>,
    mut conn: ConnectionManager,
    keys: [String; 2],
    args: [i64; 5],
) -> Option<redis::RedisResult<i64>> {
    let mut call = s.reserve.key(&keys[0]);
    call.key(&keys[1]);
    for a in args {
        call.arg(a);
    }
    tokio::time::timeout(s.call_timeout, call.invoke_async::<i64>(&mut conn))
        .await
        .ok()
}

/// `until_ms|status code|http status|reason`.
fn cooldown_value(c: &Cooldown) -> String {
    format!(
        "{}|{}|{}|{}",
        c.until_ms,
        c.status.code(),
        c.http_status.map_or(0, u16::from),
        c.reason
    )
}

fn parse_cooldown(v: &str) -> Option<Cooldown> {
    let mut parts = v.splitn(4, '|');
    let until_ms = parts.next()?.parse().ok()?;
    let status = Status::from_code(parts.next()?.parse().ok()?)?;
    let http_status = parts.next()?.parse::<u16>().ok().filter(|s| *s != 0);
    Some(Cooldown {
        until_ms,
        status,
        http_status,
        reason: parts.next().unwrap_or("").to_owned(),
    })
}

/// The latency view of every process's recent samples (`total_ms,output_tokens,ttft_ms`,
/// newest first).
fn latency_of(samples: &[String]) -> Option<LatencyView> {
    let mut v = LatencyView::default();
    let (mut n, mut sum, mut tn, mut tsum) = (0u32, 0.0, 0u32, 0.0);
    for s in samples.iter().rev() {
        let mut p = s.split(',');
        let Some(total) = p.next().and_then(|x| x.parse::<f64>().ok()) else {
            continue;
        };
        let tokens = p.next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        let ttft = p.next().and_then(|x| x.parse::<f64>().ok());
        n += 1;
        sum += total;
        v.last_ms = Some(total);
        let per_token = total / tokens.max(1) as f64;
        v.per_token_ewma_ms = Some(ewma(v.per_token_ewma_ms, per_token));
        if let Some(t) = ttft {
            tn += 1;
            tsum += t;
            v.last_ttft_ms = Some(t);
            v.ttft_ewma_ms = Some(ewma(v.ttft_ewma_ms, t));
        }
    }
    if n == 0 {
        return None;
    }
    v.avg_ms = Some(sum / f64::from(n));
    v.avg_ttft_ms = (tn > 0).then(|| tsum / f64::from(tn));
    Some(v)
}

impl LiveState for SharedState {
    fn reserve(
        &self,
        rpm: Option<u64>,
        tpm: Option<u64>,
        tokens: u64,
        now: u64,
    ) -> Result<(), f64> {
        // Synchronous callers get this process's share; the router awaits `reserve_shared`.
        let n = u64::from(self.shared.processes());
        let share = |l: u64| (l / n).max(1);
        self.local
            .reserve(rpm.map(share), tpm.map(share), tokens, now)
    }

    fn settle(&self, reserved: u64, actual: u64, now: u64) {
        self.local.settle(reserved, actual, now);
        let by = actual.min(i64::MAX as u64) as i64 - reserved.min(i64::MAX as u64) as i64;
        if by != 0 {
            let minute = now / MINUTE_MS;
            self.shared.push(Write::Add {
                key: self.key_minute("tpm", minute),
                by,
                ttl_ms: (minute + 1) * MINUTE_MS - now + WINDOW_GRACE_MS,
            });
        }
    }

    fn release(&self, reserved: u64, now: u64) {
        self.local.release(reserved, now);
        let minute = now / MINUTE_MS;
        let ttl_ms = (minute + 1) * MINUTE_MS - now + WINDOW_GRACE_MS;
        let by = reserved.min(i64::MAX as u64) as i64;
        self.shared.push(Write::Add {
            key: self.key_minute("rpm", minute),
            by: -1,
            ttl_ms,
        });
        self.shared.push(Write::Add {
            key: self.key_minute("tpm", minute),
            by: -by,
            ttl_ms,
        });
    }

    fn usage(&self, now: u64) -> MinuteUsage {
        let mine = self.local.usage(now);
        let v = lock(&self.view);
        if v.minute != now / MINUTE_MS || !self.shared.is_up() {
            return mine;
        }
        MinuteUsage {
            requests: mine.requests.saturating_add(v.others_usage.requests),
            tokens: mine.tokens.saturating_add(v.others_usage.tokens),
        }
    }

    fn in_flight(&self) -> u32 {
        let others = if self.shared.is_up() {
            lock(&self.view).others_in_flight
        } else {
            0
        };
        self.local.in_flight().saturating_add(others)
    }

    fn enter(&self) {
        self.local.enter();
        self.shared.push(Write::Add {
            key: self.key("inflight"),
            by: 1,
            ttl_ms: IN_FLIGHT_TTL_MS,
        });
    }

    fn leave(&self) {
        self.local.leave();
        self.shared.push(Write::Add {
            key: self.key("inflight"),
            by: -1,
            ttl_ms: IN_FLIGHT_TTL_MS,
        });
    }

    fn note_failure(&self, now: u64) -> u32 {
        let mine = self.local.note_failure(now);
        self.shared.push(Write::Failure {
            key: self.key("fails"),
        });
        let others = if self.shared.is_up() {
            lock(&self.view).others_failures
        } else {
            0
        };
        mine.saturating_add(others)
    }

    fn cool_down(&self, c: Cooldown) {
        self.shared.push(Write::Cooldown {
            key: self.key("cooldown"),
            fails: self.key("fails"),
            value: cooldown_value(&c),
            until_ms: c.until_ms,
        });
        lock(&self.view).others_failures = 0;
        self.local.cool_down(c);
    }

    fn cooldown(&self, now: u64) -> Option<Cooldown> {
        self.local.cooldown(now)
    }

    fn is_cooling(&self, now: u64) -> bool {
        self.local.is_cooling(now)
    }

    fn record_timing(&self, t: Timing) {
        self.local.record_timing(t);
        let sample = match t.ttft_ms {
            Some(ttft) => format!("{:.3},{},{ttft:.3}", t.total_ms, t.output_tokens),
            None => format!("{:.3},{}", t.total_ms, t.output_tokens),
        };
        self.shared.push(Write::Latency {
            key: self.key("latency"),
            sample,
        });
    }

    fn latency(&self) -> LatencyView {
        let mine = self.local.latency();
        match lock(&self.view).latency.filter(|_| self.shared.is_up()) {
            Some(mut all) => {
                all.last_connect_ms = mine.last_connect_ms;
                all
            }
            None => mine,
        }
    }

    fn watch(&self, watch: super::index::Watch) {
        self.local.watch(watch);
    }

    fn as_shared(&self) -> Option<&SharedState> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_found_for_scrubbing() {
        assert_eq!(url_password("redis://u:pw-123@h:6379/0"), Some("pw-123"));
        assert_eq!(url_password("rediss://:pw@h:1"), Some("pw"));
        assert_eq!(url_password("redis://h:6379"), None);
        assert_eq!(url_password("redis://user@h"), None);
    }

    #[test]
    fn urls_are_checked() {
        assert!(valid_url("redis://127.0.0.1:6379/2"));
        assert!(valid_url("rediss://u:p@example.com:6380"));
        assert!(!valid_url("http://h:1"));
        assert!(!valid_url("redis://h:notaport"));
    }

    #[test]
    fn cooldowns_round_trip_through_their_value() {
        let c = Cooldown {
            until_ms: 123_456,
            status: Status::RateLimited,
            http_status: Some(429),
            reason: "rate_limited (HTTP 429) | with a bar".into(),
        };
        assert_eq!(parse_cooldown(&cooldown_value(&c)), Some(c));
        assert_eq!(parse_cooldown("garbage"), None);
    }

    #[test]
    fn latency_of_samples_oldest_first() {
        let l = latency_of(&["200,10".into(), "100,10,20".into()]).unwrap();
        assert_eq!(l.avg_ms, Some(150.0));
        assert_eq!(l.last_ms, Some(200.0), "the newest is first in the list");
        assert!((l.per_token_ewma_ms.unwrap() - 13.0).abs() < 1e-9);
        assert_eq!(l.avg_ttft_ms, Some(20.0));
        assert!(latency_of(&[]).is_none());
    }
}
