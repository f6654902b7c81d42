#!/bin/sh
# Install what hpod needs from Debian's packages (Debian 12, as root).
#   scripts/deps.sh          build and run the daemon
#   scripts/deps.sh --test   also what the test suite, benchmarks and examples need
set -eu
# gcc with --no-install-recommends lacks the C library headers: libc6-dev is named.
# liblapacke-dev may be satisfied by OpenBLAS alone; liblapack-dev provides lapack.pc.
pkgs="gcc libc6-dev meson ninja-build pkg-config libmicrohttpd-dev libjansson-dev
libsqlite3-dev libuv1-dev libcurl4-openssl-dev liblapacke-dev liblapack-dev libopenblas-dev
libnlopt-dev libgnutls28-dev libpq-dev curl ca-certificates"
# The dashboard's chart library comes from npm (web/package-lock.json): Debian's npm,
# unless an npm is already there (a nodesource nodejs bundles its own and conflicts).
command -v npm >/dev/null 2>&1 || pkgs="$pkgs nodejs npm"
if [ "${1:-}" = "--test" ]; then
    # prometheus: for promtool (`promtool check metrics` on /metrics in test_observability.py).
    # postgresql: initdb/pg_ctl for the *-pg tests' throwaway cluster; python3-psycopg2: Optuna's
    # RDBStorage on PostgreSQL in bench/pg.
    pkgs="$pkgs libcmocka-dev python3 python3-numpy python3-optuna python3-sklearn systemd openssl
prometheus python3-pandas python3-pip python3-setuptools python3-wheel postgresql python3-psycopg2"
    # python3-cmaes: the library Optuna's CmaEsSampler runs; test_samplers_http.py replays into it.
    pkgs="$pkgs python3-cmaes"
    # The dashboard's browser test and benchmark (tests/integration/test_dashboard.py).
    pkgs="$pkgs chromium chromium-driver python3-selenium"
fi
# Skip apt entirely when everything is already installed.
if dpkg-query -W -f='${Status}\n' $pkgs 2>/dev/null | grep -v -q '^install ok installed$' ||
   [ "$(dpkg-query -W -f='${Status}\n' $pkgs 2>/dev/null | wc -l)" -ne "$(echo $pkgs | wc -w)" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Packages that ship a service (prometheus, postgresql) must not start it
    # here: policy-rc.d answering 101 tells invoke-rc.d not to (Debian policy).
    # Kept only when it did not exist before.
    rcd=/usr/sbin/policy-rc.d
    own_rcd=
    if [ ! -e $rcd ]; then
        printf '#!/bin/sh\nexit 101\n' > $rcd && chmod 755 $rcd && own_rcd=1
    fi
    status=0
    apt-get install -y -q --no-install-recommends $pkgs || status=$?
    [ -n "$own_rcd" ] && rm -f $rcd
    [ $status -eq 0 ] || exit $status
fi
# The dashboard's npm packages, exactly as locked (embedded into hpod at build time).
web="$(dirname "$0")/../web"
if [ ! -f "$web/node_modules/.package-lock.json" ] ||
   ! cmp -s "$web/package-lock.json" "$web/node_modules/.hpod-lock"; then
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error &&
        cp package-lock.json node_modules/.hpod-lock)
fi
