#!/usr/bin/env bash
# Two checkouts of smppd, each with its own venv, measured in turns through the HTTP edge:
#   bench/ab.sh OLD_CHECKOUT NEW_CHECKOUT [ROUNDS] [REQUESTS]
# e.g. git worktree add /tmp/old e7121cf && python3 -m venv /tmp/old/.venv &&
#      /tmp/old/.venv/bin/pip install -q -e '/tmp/old[test]' && bench/ab.sh /tmp/old .
# Each round runs the single and receipts workloads on the old, then the new checkout
# (its own bench/bench_http.py with its own .venv/bin/python, so each side starts its
# own daemon), and prints one JSON line per run after a line naming side, workload and
# the load average. Alternating in one round is what makes the two sides comparable on
# a shared machine.
set -euo pipefail
old=$(cd "$1" && pwd); new=$(cd "$2" && pwd); rounds=${3:-3}; requests=${4:-20000}
for round in $(seq "$rounds"); do
  for side in old new; do
    dir=$old; [ "$side" = new ] && dir=$new
    for workload in single receipts; do
      echo "== round $round $side $workload load $(cut -d' ' -f1 /proc/loadavg)"
      (cd "$dir" && .venv/bin/python bench/bench_http.py --workload "$workload" \
          --requests "$requests" | tail -1)
    done
  done
done
