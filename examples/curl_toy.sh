#!/bin/sh
# curl_toy.sh: tune a toy objective with hpod using nothing but curl, sed and awk.
#
#   hpod --listen 127.0.0.1:8080 --db /tmp/hpod.db &
#   HPOD_URL=http://127.0.0.1:8080 N_TRIALS=30 sh examples/curl_toy.sh
#
# The objective, f(x, y) = (x - 1)^2 + (y + 2)^2 + 0.1 * [kind = "b"], is
# smallest at x = 1, y = -2, kind = a. Each trial reports two intermediate
# values (a report is also a heartbeat) and then tells the final value.
set -eu

URL=${HPOD_URL:-http://127.0.0.1:8080}
STUDY=${STUDY:-curl-toy}
N=${N_TRIALS:-20}

# Creating the same study again answers 200 with it, so the script can be re-run.
curl -fsS -X POST "$URL/v1/studies" -d '{
  "name": "'"$STUDY"'",
  "direction": "minimize",
  "params": [
    {"name": "x", "type": "float", "low": -5, "high": 5},
    {"name": "y", "type": "int", "low": -4, "high": 4},
    {"name": "kind", "type": "categorical", "choices": ["a", "b"]}
  ],
  "sampler": {"type": "tpe", "n_startup_trials": 5, "seed": 1}
}' >/dev/null

# The daemon writes compact JSON ("key":value), which sed can pick apart.
field() { # JSON-TEXT KEY: the number or string after "KEY":
    printf '%s' "$1" | sed -n 's/.*"'"$2"'":"\{0,1\}\([^",}]*\).*/\1/p'
}

i=0
while [ "$i" -lt "$N" ]; do
    trial=$(curl -fsS -X POST "$URL/v1/studies/$STUDY/ask")
    number=$(field "$trial" number)
    x=$(field "$trial" x)
    y=$(field "$trial" y)
    kind=$(field "$trial" kind)
    for step in 1 2; do
        partial=$(awk -v x="$x" -v y="$y" -v s="$step" 'BEGIN { printf "%.17g", ((x - 1)^2 + (y + 2)^2) * (3 - s) }')
        curl -fsS -X POST "$URL/v1/studies/$STUDY/trials/$number/report" \
            -d "{\"step\": $step, \"value\": $partial}" >/dev/null
    done
    value=$(awk -v x="$x" -v y="$y" -v k="$kind" \
        'BEGIN { printf "%.17g", (x - 1)^2 + (y + 2)^2 + (k == "b" ? 0.1 : 0) }')
    curl -fsS -X POST "$URL/v1/studies/$STUDY/trials/$number/tell" -d "{\"value\": $value}" >/dev/null
    echo "trial $number: x=$x y=$y kind=$kind -> $value"
    i=$((i + 1))
done

echo "best:"
curl -fsS "$URL/v1/studies/$STUDY/best"
echo
