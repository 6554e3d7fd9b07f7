#!/usr/bin/env bash
# Interleaved latency-with-data runs: 0 / 10k / 100k stored users, twice.
cd /work/wt/h-data
export CHATGATE_CACHE_DIR=/tmp/hdata/cache EMBEDDED_DB_ENGINE=mongo-java-server BENCH_CONNECTIONS=1 BENCH_SECONDS=${BENCH_SECONDS:-3} BENCH_SCENARIOS=${BENCH_SCENARIOS:-otpRequest,login,refresh}
for round in ${ROUNDS:-1 2}; do
  for n in ${SIZES:-0 10000 100000}; do
    mkdir -p /tmp/hdata/bench$n
    s=$(date +%s)
    echo "=== round $round, $n stored users, $(date +%T), load $(cut -d' ' -f1 /proc/loadavg)"
    BENCH_DATA_DIR=/tmp/hdata/bench$n BENCH_STORED_USERS=$n npm run bench 2>&1 | grep -v "npm warn\|^> \|^$"
    echo "--- run took $(( $(date +%s) - s )) s"
  done
done
