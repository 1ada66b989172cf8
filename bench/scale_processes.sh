#!/bin/bash
# processes 1 vs 2, unpinned (wrk shares the two cores), demo app: / (Python handler) and /health (static)
cd "$(dirname "$0")/.."
for procs in 1 2; do
  python -m fastcore --port 9300 --threads 1 --processes $procs --keepalive-timeout 75 > /tmp/scale-$procs.log 2>&1 &
  pid=$!
  for i in $(seq 1 50); do curl -s http://127.0.0.1:9300/health >/dev/null && break; sleep 0.1; done
  for path in health ""; do
    for round in 1 2; do
      r=$(wrk -t2 -c64 -d6s http://127.0.0.1:9300/$path | awk '/Requests\/sec/ {print $2}')
      echo "processes=$procs path=/$path round=$round req/s=$r"
    done
  done
  kill -TERM $pid; wait $pid
done
