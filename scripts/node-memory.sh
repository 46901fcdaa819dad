# Sourced by scripts/worker and scripts/bench: the memory settings the worker runs with, so the
# figures in the README (the large drill's peak) and the benchmarks are what production gets.
#   - MALLOC_ARENA_MAX=2: glibc gives each thread that allocates its own 64 MiB malloc arena, and
#     freed memory stays in them; the worker's threads (libuv's pool, the Temporal core's) made
#     that ~65 MiB of its peak at 100,000 objects.
#   - --heap-growing-percent=25: after each full collection V8 lets its heap grow to 1.25 × what
#     is alive, where it would otherwise grow it up to 4 × (338 MiB of heap for ~100 MiB alive
#     during a 100,000-object mirror). Unlike a --max-old-space-size cap, a worker whose live data
#     is big (a restore of millions of index entries) is not killed, only collected more often.
# An operator's own values win: MALLOC_ARENA_MAX from the environment, NODE_OPTIONS as usual.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
KOHAKKU_DR_NODE_MEMORY_FLAGS=(--heap-growing-percent=25)
