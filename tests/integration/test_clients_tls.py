#!/usr/bin/python3
"""test_clients_tls.py: hpoctl (through libhpoclient) against hpod over https with tokens.

The CA file comes from HPOD_CACERT or --cacert, the token from HPOD_TOKEN or --token;
401 and 403 print a message that says what to do. Prints TAP.
"""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Tap, check  # noqa: E402
from test_tls import make_ca, make_server, mint  # noqa: E402

tap = Tap()
TMP = tempfile.TemporaryDirectory(prefix="hpod-clients-tls-")


def run(hpoctl, args, env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("HPOD_")}
    e.update(env)
    return subprocess.run([hpoctl] + args, capture_output=True, text=True, env=e, timeout=60)


@tap.test
def hpoctl_over_https(hpod, hpoctl):
    d0 = TMP.name
    ca = make_ca(d0)
    cert, key = make_server(d0, "server", ca)
    write, wline = mint(hpod, "ci:write")
    read, rline = mint(hpod, "viewer:read")
    tokens = os.path.join(d0, "tokens")
    with open(tokens, "w") as f:
        f.write(wline + "\n" + rline + "\n")
    spec = os.path.join(d0, "spec.json")
    with open(spec, "w") as f:
        json.dump({"name": "c", "params": [{"name": "x", "type": "float", "low": 0,
                                            "high": 1}]}, f)
    args = ["--tls-cert", cert, "--tls-key", key, "--tokens", tokens]
    with Daemon(hpod, extra_args=args) as d:
        url = "https://127.0.0.1:%d" % d.port
        env = {"HPOD_URL": url, "HPOD_CACERT": ca[0], "HPOD_TOKEN": write}
        r = run(hpoctl, ["study", "create", "-f", spec, "--json"], env)
        check(r.returncode == 0, "create: %d %s" % (r.returncode, r.stderr))
        check(json.loads(r.stdout)["name"] == "c", "create printed %r" % r.stdout)
        # The same through flags instead of the environment.
        r = run(hpoctl, ["--url", url, "--cacert", ca[0], "--token", write, "ask", "c", "--json"],
                {})
        check(r.returncode == 0 and json.loads(r.stdout)["number"] == 0,
              "ask: %d %s %s" % (r.returncode, r.stdout, r.stderr))
        # No token: 401 with a hint.
        r = run(hpoctl, ["studies"], {"HPOD_URL": url, "HPOD_CACERT": ca[0]})
        check(r.returncode == 1 and "unauthenticated" in r.stderr and
              "set HPOD_TOKEN or give --token" in r.stderr, "401: %d %r" % (r.returncode, r.stderr))
        # A read token may not delete: 403 with a hint; the study stays.
        r = run(hpoctl, ["study", "delete", "c"], dict(env, HPOD_TOKEN=read))
        check(r.returncode == 1 and "permission_denied" in r.stderr and
              "role or study prefix does not allow this" in r.stderr,
              "403: %d %r" % (r.returncode, r.stderr))
        r = run(hpoctl, ["studies", "--json"], dict(env, HPOD_TOKEN=read))
        check(r.returncode == 0 and [s["name"] for s in json.loads(r.stdout)["studies"]] == ["c"],
              "after the refused delete: %r %r" % (r.stdout, r.stderr))
        # Without the CA the certificate is not trusted: a transport error, exit 1.
        r = run(hpoctl, ["studies"], {"HPOD_URL": url, "HPOD_TOKEN": write})
        check(r.returncode == 1 and "transport" in r.stderr, "no CA: %d %r"
              % (r.returncode, r.stderr))


if __name__ == "__main__":
    try:
        rc = tap.run(sys.argv[1], sys.argv[2])
    finally:
        TMP.cleanup()
    sys.exit(rc)
