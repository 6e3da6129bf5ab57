"""One bench row through LiteLLM's Router (the Python library llmr replaces).

Usage: litellm_row.py NAME BASE CONCURRENCY REQUESTS WARMUP
Two deployments openai/... at the stand-in (BASE/d0/v1, BASE/d1/v1), usage-based routing v2,
`acompletion` with CONCURRENCY in flight (asyncio). Prints `RESULT {json}` like the Rust rows.
"""
import asyncio
import json
import os
import resource
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of the cost map
import litellm  # noqa: E402

litellm.telemetry = False
litellm.suppress_debug_info = True


def router(base):
    model_list = [
        {"model_name": "auto",
         "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-bench",
                            "api_base": f"{base}/d{i}/v1"}}
        for i in range(2)
    ]
    return litellm.Router(model_list=model_list, routing_strategy="usage-based-routing-v2")


async def batch(r, n, concurrency, latencies):
    next_i = 0
    failures = 0

    async def worker():
        nonlocal next_i, failures
        while next_i < n:
            next_i += 1
            t = time.perf_counter_ns()
            try:
                resp = await r.acompletion(model="auto",
                                           messages=[{"role": "user", "content": "Say hello"}])
                if not resp.choices[0].message.content:
                    failures += 1
            except Exception as e:  # a failure counts, the row goes on
                failures += 1
                if failures == 1:
                    print(f"litellm: {type(e).__name__}: {e}", file=sys.stderr)
            latencies.append(time.perf_counter_ns() - t)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    return failures


def cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def main():
    name, base, concurrency, n, warm = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    r = router(base)
    failures = await batch(r, warm, concurrency, [])
    lat = []
    c0, t0 = cpu_s(), time.perf_counter()
    failures += await batch(r, n, concurrency, lat)
    secs, cpu = time.perf_counter() - t0, cpu_s() - c0
    lat.sort()
    at = lambda q: lat[round((len(lat) - 1) * q)] / 1000.0
    print("RESULT " + json.dumps({
        "name": name, "requests": n, "secs": secs, "rps": n / secs, "chunks_per_s": 0,
        "p50_us": at(0.5), "p99_us": at(0.99), "cpu_s_per_1k": cpu * 1000 / n,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "allocs_per_req": None, "failures": failures}))


asyncio.run(main())
