#!/usr/bin/env bash
# The Worker's Redis transports compared (issue 14): the latency of an L2 hit in a warm
# isolate under `wrangler dev`, one Worker reaching Redis over `connect()` sockets (RESP), one
# over `fetch` (Redis over HTTP, the Upstash REST protocol, through the test REST server in
# front of the same redis-server, as Upstash's REST front sits next to its Redis). Each goes
# through a delaying TCP proxy (tests/support/delay.rs) that adds a round trip to Redis (half
# each way, and one more before a new connection's first bytes, for the TCP handshake a
# remote server costs; TLS is not modelled), first none, then EDGECACHE_BENCH_RTT_MS.
# Objects are stored by an in-process `edgecache serve` first, so every measured request is an
# L1 miss and an L2 hit (asserted); requests alternate between the two Workers, one at a time.
#
# It is the ignored test `bench_l2_hit_latency_over_sockets_and_rest` in tests/worker.rs
# (which starts and stops everything it uses), and prints a markdown table and the round
# trips per L2 hit: (p50 with the added round trip − p50 without) ÷ the round trip.
#
# Usage: benches/redis_transport.sh         (a minute or two, plus the Worker build)
# Knobs: EDGECACHE_BENCH_RTT_MS=20  EDGECACHE_BENCH_HITS=30 (per transport and phase)
#        EDGECACHE_WORKER_PREBUILT=1 (use build/ as it is)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo test --features "server resp" --test worker -- --ignored --exact \
    bench_l2_hit_latency_over_sockets_and_rest --nocapture 2>&1 \
    | grep -E '^\||round trips per L2 hit|^test result|panicked|FAILED'
