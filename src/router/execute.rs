//! The retry / failover / context-window fallback loop, shared by completions and streams.
//!
//! One attempt at a time: pick a deployment (never one that failed this request while another
//! is healthy), try it, and on failure decide — fall back to a larger window (overflow), fail
//! over at once to another healthy deployment, wait and retry the same one when it is the only
//! one, or give up. Cooldowns follow from what each failure says.

use std::time::{Duration, Instant};

use super::backoff::wait_before_retry;
use super::deployment::{Deployment, InFlight};
use super::outcome::Outcome;
use super::select::{select, Needs, Selection};
use super::state::{now_ms, Cooldown, Timing};
use super::Router;
use crate::errors::{Error, Status};
use crate::log;
use crate::providers::BoxFuture;
use crate::types::{
    ChatChunk, ChatRequest, ChatResponse, StreamAssembler, Usage, MAX_ANSWER_BYTES,
};

/// Where a stream's chunks go. Returns `false` when the caller wants no more (cancel).
pub trait ChunkSink: Send {
    /// Takes one chunk. A sink may hold it to hand several over at once (one thread wake-up for
    /// all the chunks of one read); it hands over what it holds by `flush`.
    fn deliver<'a>(&'a mut self, chunk: &'a ChatChunk) -> BoxFuture<'a, bool>;
    /// Hands over every chunk held. Called before the stream waits for more, and at its end.
    fn flush(&mut self) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}

fn cancelled_by_callback() -> Failed {
    Failed {
        err: Error::new(
            Status::Cancelled,
            "the stream was cancelled by its callback",
        ),
        final_: true,
    }
}

/// The shortest wait for a cooldown to end: a cooldown ending within the millisecond is waited
/// for rather than spun on.
const MIN_COOLING_WAIT: Duration = Duration::from_millis(1);

/// A failed attempt: `final_` when it must not be retried anywhere (a stream that already
/// delivered chunks, or the caller cancelled).
struct Failed {
    err: Error,
    final_: bool,
}

type AttemptResult = Result<(ChatResponse, Timing), Failed>;

impl Router {
    /// A chat completion, routed.
    pub async fn complete(&self, req: &ChatRequest) -> Result<ChatResponse, Error> {
        self.run(req, None).await
    }

    /// A streamed chat completion, routed: chunks with content or tool-call deltas go to `sink`
    /// in order; the whole answer comes back assembled.
    pub async fn stream(
        &self,
        req: &ChatRequest,
        sink: &mut dyn ChunkSink,
    ) -> Result<ChatResponse, Error> {
        self.run(req, Some(sink)).await
    }

    async fn attempt(
        &self,
        d: &Deployment,
        req: &ChatRequest,
        prompt_tokens: u64,
        timeout: Duration,
        // The request's whole time: a stream that goes on past it ends as a timeout.
        deadline: Instant,
        sink: Option<&mut (dyn ChunkSink + '_)>,
    ) -> AttemptResult {
        let started = Instant::now();
        let Some(sink) = sink else {
            return match d.client.complete(req, timeout).await {
                Ok(mut resp) => {
                    fill_usage(&mut resp, prompt_tokens);
                    let out = resp.usage.map_or(0, |u| u.completion_tokens);
                    let total_ms = ms_since(started);
                    Ok((
                        resp,
                        Timing {
                            total_ms,
                            output_tokens: out,
                            ttft_ms: None,
                            connect_ms: None,
                        },
                    ))
                }
                Err(err) => Err(Failed { err, final_: false }),
            };
        };
        let mut stream = d
            .client
            .open_stream(req, timeout)
            .await
            .map_err(|err| Failed { err, final_: false })?;
        let connect_ms = ms_since(started);
        let mut assembler = StreamAssembler::default();
        let mut ttft_ms = None;
        loop {
            // What the sink holds goes out before the stream waits for the network.
            if !stream.has_ready() && !sink.flush().await {
                return Err(cancelled_by_callback());
            }
            // `stream_timeout` bounds each idle gap; this bounds the whole length, so that a
            // provider trickling (or sending only keep-alives) cannot hold a stream forever.
            let next = match tokio::time::timeout_at(deadline.into(), stream.next_chunk()).await {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(_) => {
                    sink.flush().await;
                    return Err(Failed {
                        err: Error::new(
                            Status::Timeout,
                            format!(
                                "stream from deployment {} ran past the request's `timeout` \
                                 (`stream_timeout` bounds only its idle gaps)",
                                d.cfg.id
                            ),
                        ),
                        final_: ttft_ms.is_some(),
                    });
                }
            };
            let chunk = match next {
                Ok(c) => c,
                Err(mut err) => {
                    let delivered = ttft_ms.is_some();
                    if delivered && err.status != Status::Timeout {
                        // What was delivered stays delivered; the rest is lost upstream.
                        err.status = Status::Upstream;
                        err.message = format!("stream broke after it began: {}", err.message);
                    }
                    return Err(Failed {
                        err,
                        final_: delivered,
                    });
                }
            };
            assembler.push(&chunk);
            if assembler.kept_bytes() > MAX_ANSWER_BYTES {
                // An endless stream would otherwise grow the answer without bound.
                sink.flush().await;
                let delivered = ttft_ms.is_some();
                return Err(Failed {
                    err: Error::upstream(format!(
                        "the streamed answer of deployment {} is larger than {} MiB",
                        d.cfg.id,
                        MAX_ANSWER_BYTES >> 20
                    )),
                    final_: delivered,
                });
            }
            if chunk.has_payload() {
                if ttft_ms.is_none() {
                    ttft_ms = Some(ms_since(started));
                }
                if !sink.deliver(&chunk).await {
                    return Err(cancelled_by_callback());
                }
            }
        }
        let mut resp = assembler.into_response();
        fill_usage(&mut resp, prompt_tokens);
        let out = resp.usage.map_or(0, |u| u.completion_tokens);
        Ok((
            resp,
            Timing {
                total_ms: ms_since(started),
                output_tokens: out,
                ttft_ms,
                connect_ms: Some(connect_ms),
            },
        ))
    }

    async fn run(
        &self,
        req: &ChatRequest,
        mut sink: Option<&mut (dyn ChunkSink + '_)>,
    ) -> Result<ChatResponse, Error> {
        let stream = sink.is_some();
        let mut outcome = Outcome::new(self, stream);
        let started = outcome.started();
        let group_name = req.group();
        let Some((g, members)) = self.group(group_name) else {
            let known: Vec<&str> = self.groups.iter().map(|(n, _)| *n).collect();
            let e = Error::invalid(format!(
                "unknown model group `{}`: use one of {}",
                crate::errors::excerpt(group_name, crate::errors::MAX_QUOTED),
                known.join(", ")
            ));
            return Err(outcome.failed(e, None));
        };
        let overall = req
            .timeout
            .map_or(self.settings.timeout, Duration::from_secs_f64);
        let deadline = started + overall;
        let tokens = req.estimate_prompt_tokens();
        let mut failed: Vec<usize> = Vec::new();
        let mut refused: Vec<usize> = Vec::new();
        let mut window_above: Option<u64> = None;
        let mut retries = 0u32;
        let mut last: Option<(Error, usize)> = None;
        // Time spent waiting for cooled-down deployments, against `max_wait_when_cooling`.
        let mut waited_cooling = Duration::ZERO;
        // Set after such a wait: the cooldown was the wait, no backoff is added to it.
        let mut cooled_off = false;

        loop {
            let now = now_ms();
            let needs = Needs {
                tokens,
                window_above,
                failed: &failed,
                refused: &refused,
                stream,
            };
            let mut candidates = |n| self.index.candidates(g, &self.deployments, stream, now, n);
            let i = match select(
                self.settings.routing_strategy,
                &self.deployments,
                members,
                &mut candidates,
                &needs,
                now,
            )
            .await
            {
                Selection::Picked(i) => i,
                Selection::AllCooling(secs) => {
                    // Wait out the cooldown when the settings allow that long; the caller's
                    // cancellation drops this future, sleep included.
                    let back_in = Duration::from_secs_f64(secs.max(0.0)).max(MIN_COOLING_WAIT);
                    let allowed = self
                        .settings
                        .max_wait_when_cooling
                        .saturating_sub(waited_cooling);
                    if !self.settings.max_wait_when_cooling.is_zero() && back_in <= allowed {
                        let wake = Instant::now() + back_in;
                        if wake > deadline {
                            tokio::time::sleep_until(deadline.into()).await;
                            let e = Error::new(
                                Status::Timeout,
                                format!(
                                    "request timed out after {:.3}s while every deployment of `{group_name}` was cooling down",
                                    overall.as_secs_f64()
                                ),
                            );
                            return Err(outcome.failed(e, last.map(|l| l.1)));
                        }
                        if log::enabled(log::Level::Debug) {
                            log::debug(
                                "waiting for a deployment to come back from its cooldown",
                                &[
                                    ("group", group_name.into()),
                                    ("seconds", back_in.as_secs_f64().into()),
                                ],
                            );
                        }
                        tokio::time::sleep_until(wake.into()).await;
                        waited_cooling += back_in;
                        cooled_off = true;
                        continue;
                    }
                    let mut e = Error::new(
                        Status::RateLimited,
                        format!("every deployment of `{group_name}` is cooling down; the first is back in {secs:.1}s"),
                    )
                    .with_retry_after(Some(secs));
                    if !self.settings.max_wait_when_cooling.is_zero() {
                        e.message.push_str(&format!(
                            ", longer than the {:.1}s left of max_wait_when_cooling",
                            allowed.as_secs_f64()
                        ));
                    }
                    if let Some((l, _)) = &last {
                        e.message.push_str(&format!(" (last error: {})", l.message));
                    }
                    return Err(outcome.failed(e, last.map(|l| l.1)));
                }
                Selection::AllAtLimit(secs) => {
                    let e = Error::new(
                        Status::RateLimited,
                        format!("every deployment of `{group_name}` is at its rpm/tpm limit for this minute; the window frees up in {secs:.1}s"),
                    )
                    .with_retry_after(Some(secs));
                    return Err(outcome.failed(e, last.map(|l| l.1)));
                }
                Selection::AllRefused => {
                    let e = match last {
                        Some((e, i)) => return Err(outcome.failed(e, Some(i))),
                        None => Error::new(
                            Status::Auth,
                            format!("every deployment of `{group_name}` refused the request"),
                        ),
                    };
                    return Err(outcome.failed(e, None));
                }
                Selection::NoWindow => {
                    let e = match last {
                        Some((mut e, i)) if e.status == Status::ContextOverflow => {
                            e.message.push_str(" (no deployment with a larger context window is left)");
                            return Err(outcome.failed(e, Some(i)));
                        }
                        _ => Error::new(
                            Status::ContextOverflow,
                            format!("no deployment of `{group_name}` has a context window for about {tokens} prompt tokens"),
                        ),
                    };
                    return Err(outcome.failed(e, None));
                }
            };
            let d = &self.deployments[i];

            // Only when no other healthy deployment is left does the same one get retried: wait first.
            let waited = std::mem::take(&mut cooled_off);
            if let Some((e, _)) = last.as_ref().filter(|_| failed.contains(&i) && !waited) {
                let wait = wait_before_retry(
                    retries.saturating_sub(1),
                    e.retry_after,
                    self.settings.retry_after,
                );
                if Instant::now() + wait >= deadline {
                    d.state.release(tokens, now_ms());
                    let (e, li) = last.expect("checked above");
                    return Err(outcome.failed(e, Some(li)));
                }
                tokio::time::sleep(wait).await;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                d.state.release(tokens, now_ms());
                let e = Error::new(
                    Status::Timeout,
                    format!("request timed out after {:.3}s", overall.as_secs_f64()),
                );
                return Err(outcome.failed(e, last.map(|l| l.1)));
            }
            let own = if stream {
                d.cfg.stream_timeout.or(d.cfg.timeout)
            } else {
                d.cfg.timeout
            };
            let timeout = own.map_or(remaining, |t| t.min(remaining));

            outcome.attempt(i, last.as_ref());
            #[cfg(test)]
            crate::fault::inject(req, "router", &d.cfg);
            let attempt_started = Instant::now();
            let in_flight = InFlight::enter(&*d.state);
            let result = self
                .attempt(d, req, tokens, timeout, deadline, sink.as_deref_mut())
                .await;
            drop(in_flight);

            match result {
                Ok((mut resp, timing)) => {
                    let usage = resp.usage.unwrap_or_default();
                    let now = now_ms();
                    #[cfg(test)]
                    crate::fault::arm_state(req);
                    d.state
                        .settle(tokens, usage.total_tokens.max(usage.prompt_tokens), now);
                    d.state.record_timing(timing);
                    outcome.answered(i, &mut resp, &timing, req);
                    if resp.model.is_empty() {
                        resp.model.clone_from(&d.cfg.model);
                    }
                    return Ok(resp);
                }
                Err(Failed { mut err, final_ }) => {
                    d.state.settle(tokens, 0, now_ms());
                    d.counters
                        .failure(err.status, attempt_started.elapsed().as_secs_f64());
                    self.note_failure(i, &err, members.len());
                    if err.deployment_id.is_none() {
                        err.deployment_id = Some(d.cfg.id.clone());
                    }
                    if final_ {
                        return Err(outcome.failed(err, Some(i)));
                    }
                    let give_up = match err.status {
                        Status::ContextOverflow => {
                            let w = d
                                .max_input_tokens
                                .unwrap_or(0)
                                .max(window_above.unwrap_or(0));
                            window_above = Some(w);
                            outcome
                                .fallbacks
                                .push(format!("context_window:{}", d.cfg.id));
                            false
                        }
                        _ if err.status == Status::Auth || err.quota => {
                            // Only another deployment can help: another key, another account.
                            if !failed.contains(&i) {
                                failed.push(i);
                            }
                            if !refused.contains(&i) {
                                refused.push(i);
                            }
                            let other = members.iter().any(|m| {
                                !refused.contains(m)
                                    && !self.deployments[*m].state.is_cooling(now_ms())
                            });
                            if other && retries < self.settings.num_retries {
                                retries += 1;
                                outcome.fallbacks.push(format!("failover:{}", d.cfg.id));
                                false
                            } else {
                                true
                            }
                        }
                        _ if is_retryable(&err) && retries < self.settings.num_retries => {
                            retries += 1;
                            if !failed.contains(&i) {
                                failed.push(i);
                            }
                            outcome.fallbacks.push(format!("retry:{}", d.cfg.id));
                            false
                        }
                        _ => true,
                    };
                    if give_up {
                        return Err(outcome.failed(err, Some(i)));
                    }
                    last = Some((err, i));
                }
            }
        }
    }

    /// Counts a failure and applies the cooldown rules: at once on 429, 401, 404 or a quota
    /// refusal when the group has another deployment; after more than `allowed_fails` failures
    /// within a minute otherwise. A group's only deployment is never cooled down.
    fn note_failure(&self, i: usize, e: &Error, group_size: usize) {
        let d = &self.deployments[i];
        if group_size <= 1 {
            return;
        }
        let now = now_ms();
        let immediate = matches!(e.http_status, Some(429 | 401 | 404)) || e.quota;
        let counts = is_retryable(e) || e.status == Status::Auth;
        let why = if immediate {
            format!(
                "{} ({})",
                e.status.name(),
                e.http_status
                    .map_or_else(|| "no HTTP status".into(), |s| format!("HTTP {s}"))
            )
        } else if counts {
            let n = d.state.note_failure(now);
            if n <= self.settings.allowed_fails {
                return;
            }
            format!(
                "{n} failures within a minute (allowed_fails {}), last: {}",
                self.settings.allowed_fails,
                e.status.name()
            )
        } else {
            return;
        };
        let secs = match e.retry_after {
            Some(r) if immediate && r > 0.0 && r.is_finite() => r.min(86_400.0),
            _ => d.cooldown_time.as_secs_f64(),
        };
        if secs <= 0.0 {
            return;
        }
        let until_ms = now + (secs * 1000.0) as u64;
        log::warn(
            "deployment cooling down",
            &[
                ("deployment_id", (&*d.cfg.id).into()),
                ("provider", (&*d.cfg.prefix).into()),
                ("seconds", secs.into()),
                ("reason", why.as_str().into()),
            ],
        );
        d.counters
            .cooldowns
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        d.state.cool_down(Cooldown {
            until_ms,
            status: e.status,
            http_status: e.http_status,
            reason: why,
        });
    }
}

/// Whether a failure may be retried (on another deployment, or on the same one after a wait):
/// 408, 409, 429, 5xx, timeouts and connection errors. A 409 (a conflict, often a concurrent
/// request on the provider's side) keeps its `bad_request` status if it is the last word.
fn is_retryable(e: &Error) -> bool {
    matches!(
        e.status,
        Status::RateLimited | Status::Upstream | Status::Timeout
    ) || (e.status == Status::BadRequest && e.http_status == Some(409))
}

/// Some hosts send no usage (streams not asked for it, lax servers). The answer still carries
/// one, estimated like the prompt (about 4 bytes a token), so that callers, stats, tpm and
/// latency per token see what was used.
fn fill_usage(resp: &mut ChatResponse, prompt_tokens: u64) {
    if resp.usage.is_some() {
        return;
    }
    let mut bytes = 0usize;
    for c in &resp.choices {
        let m = &c.message;
        bytes += m.content.as_deref().map_or(0, str::len);
        bytes += m.reasoning_content.as_deref().map_or(0, str::len);
        for t in m.tool_calls.iter().flatten() {
            bytes += t.function.name.len() + t.function.arguments.len();
        }
    }
    resp.usage = Some(Usage::new(prompt_tokens, (bytes as u64).div_ceil(4)));
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
