#!/bin/sh
# Install, build with warnings as errors under ASan+UBSan, and run the whole
# test suite. Ends with a line "N passed, M failed"; exits non-zero on failure.
set -u
cd "$(dirname "$0")/.."
sh scripts/deps.sh --test || exit 1
dir=build-ci
if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug \
        -Dwarning_level=3 -Dwerror=true -Dtests=enabled || { echo "0 passed, 1 failed"; exit 1; }
fi
ninja -C "$dir" || { echo "0 passed, 1 failed"; exit 1; }
meson test -C "$dir" --print-errorlogs --num-processes 2
status=$?
/usr/bin/python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
ok = bad = 0
try:
    for line in open(sys.argv[1]):
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL", "SKIP"):
            ok += 1
        else:
            bad += 1
except OSError:
    bad += 1
print(f"{ok} passed, {bad} failed")
sys.exit(1 if bad else 0)
PY
summary=$?
[ $status -eq 0 ] && [ $summary -eq 0 ]
