# Sourced by scripts/worker and scripts/bench: the memory settings the worker runs with, so the
# figures in the README (the large drill's peak) and the benchmarks are what production gets.
#   - MALLOC_ARENA_MAX=2: glibc gives each thread that allocates its own 64 MiB malloc arena, and
#     freed memory stays in them; the worker's threads (libuv's pool, the Temporal core's) made
#     that ~65 MiB of its peak at 100,000 objects.
#   - --heap-growing-percent=$WORKER_HEAP_GROWING_PERCENT (25 unless set; the worker checks the
#     setting like any other): after each full collection V8 lets its heap grow to 1.25 × what is
#     alive, where it would otherwise grow it up to 4 × (338 MiB of heap for ~100 MiB alive during
#     a 100,000-object mirror). Unlike a --max-old-space-size cap, a worker whose live data is big
#     (a restore of millions of index entries) is not killed, only collected more often — which
#     costs CPU: 100 spent ~35 % less user CPU in that mirror and peaked at 522 MiB instead of 452 MiB.
# An operator's own values win: MALLOC_ARENA_MAX from the environment, NODE_OPTIONS as usual.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
# Not a whole number: node would refuse the flag with its own message; this one names the setting
# as the worker does (its range is checked by the worker, exit 2 either way).
if ! [[ "${WORKER_HEAP_GROWING_PERCENT:-25}" =~ ^[0-9]+$ ]]; then
  echo "kohakku-dr: invalid setting WORKER_HEAP_GROWING_PERCENT: expected a whole number (got \"${WORKER_HEAP_GROWING_PERCENT}\")" >&2
  exit 2
fi
KOHAKKU_DR_NODE_MEMORY_FLAGS=("--heap-growing-percent=${WORKER_HEAP_GROWING_PERCENT:-25}")
