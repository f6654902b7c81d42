#!/usr/bin/python3
"""test_vectors.py: vector params (`size`) through the API, the binary endpoints,
gradient validation, and the sharing of identical vectors across trials.

Usage: test_vectors.py PATH/TO/hpod. Prints TAP.
"""

import os
import sqlite3
import struct
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Tap, check, exe_from_argv  # noqa: E402

tap = Tap()
N = 3000  # over the 1000-element JSON limit, so trials show the href form


def space(size):
    return [{"name": "wd", "type": "float", "low": 1e-6, "high": 1.0, "log": True, "size": size},
            {"name": "lr", "type": "float", "low": 1e-4, "high": 1.0, "log": True}]


def binary(d, path):
    r = d.get(path)
    check(r.status == 200, "GET %s: %d" % (path, r.status))
    return r.body


@tap.test
def small_vectors_are_json_arrays(exe):
    with Daemon(exe) as d:
        d.post("/v1/studies", {"name": "v", "params": space(5),
                               "sampler": {"type": "random", "seed": 1}}).expect(201)
        t = d.post("/v1/studies/v/ask").expect(201)
        wd = t["params"]["wd"]
        check(isinstance(wd, list) and len(wd) == 5, "wd is a 5-array: %r" % (wd,))
        check(all(1e-6 <= x <= 1.0 for x in wd), "in bounds: %r" % (wd,))
        raw = d.get("/v1/studies/v/trials/0/params/wd")
        raw.expect(200)
        check(raw.header("content-type") == "application/octet-stream", "binary type")
        check(list(struct.unpack("<5d", raw.body)) == wd, "binary equals JSON bit for bit")
        # A vector of the wrong size is rejected naming the param.
        d.post("/v1/studies/v/trials", {"params": {"wd": [0.1] * 4, "lr": 0.01}}).expect_error(
            400, "invalid_argument", "params.wd")
        d.post("/v1/studies/v/trials", {"params": {"wd": [0.1] * 4 + [2.0], "lr": 0.01}}
               ).expect_error(400, "invalid_argument", "params.wd[4]")


@tap.test
def large_vectors_use_href_and_binary(exe):
    with Daemon(exe) as d:
        d.post("/v1/studies", {"name": "big", "params": space(N),
                               "sampler": {"type": "random", "seed": 2}}).expect(201)
        t = d.post("/v1/studies/big/ask").expect(201)
        wd = t["params"]["wd"]
        check(wd == {"size": N, "href": "/v1/studies/big/trials/0/params/wd"}, "href form: %r" % wd)
        raw = binary(d, wd["href"])
        check(len(raw) == 8 * N, "8*N bytes, got %d" % len(raw))
        vals = struct.unpack("<%dd" % N, raw)
        check(all(1e-6 <= x <= 1.0 for x in vals), "every element in bounds")
        d.get("/v1/studies/big/trials/0/params/nope").expect_error(404, "not_found")
        d.get("/v1/studies/big/trials/9/params/wd").expect_error(404, "not_found")


@tap.test
def gradient_upload_is_validated(exe):
    with Daemon(exe) as d:
        d.post("/v1/studies", {"name": "r", "params": space(4),
                               "sampler": {"type": "random", "seed": 3}}).expect(201)
        d.post("/v1/studies/r/ask").expect(201)
        body = struct.pack("<4d", 1, 2, 3, 4)
        path = "/v1/studies/r/trials/0/gradient/wd"
        # Not octet-stream: 415.
        d.request("PUT", path, body=body, headers={"Content-Type": "application/json"}
                  ).expect_error(415, "unsupported_media_type")
        # The random sampler takes no gradients.
        d.request("PUT", path, body=body, headers={"Content-Type": "application/octet-stream"}
                  ).expect_error(400, "invalid_argument", "gradient")
        d.post("/v1/studies/r/trials/0/tell", {"value": 1.0, "gradient": {"lr": 0.5}}
               ).expect_error(400, "invalid_argument", "gradient")
        t = d.get("/v1/studies/r/trials/0").expect(200)
        check(t["state"] == "running", "nothing changed: %s" % t["state"])


@tap.test
def identical_vectors_are_stored_once_and_survive_restart(exe):
    with Daemon(exe) as d:
        d.post("/v1/studies", {"name": "s", "params": space(N),
                               "sampler": {"type": "random", "seed": 4}}).expect(201)
        vec = [min(1.0, 1e-6 * (1 + i)) for i in range(N)]
        for k in range(3):
            d.post("/v1/studies/s/trials", {"params": {"wd": vec, "lr": 0.01}, "value": float(k)}
                   ).expect(201)
        other = list(reversed(vec))
        d.post("/v1/studies/s/trials", {"params": {"wd": other, "lr": 0.01}, "value": 9.0}
               ).expect(201)
        d.stop()
        # Four trials, two distinct vectors: two BLOB rows, the others refer to them.
        db = sqlite3.connect(os.path.join(d.state_dir, "hpod.db"))
        blobs = db.execute("SELECT count(*) FROM params WHERE typeof(value) = 'blob'").fetchone()[0]
        db.close()
        check(blobs == 2, "vector rows stored as BLOBs: %d (want 2)" % blobs)
        d.start()
        for k, expect in ((0, vec), (1, vec), (2, vec), (3, other)):
            raw = binary(d, "/v1/studies/s/trials/%d/params/wd" % k)
            check(list(struct.unpack("<%dd" % N, raw)) == expect, "trial %d vector after restart" % k)
        d.kill()
        d.start()
        raw = binary(d, "/v1/studies/s/trials/2/params/wd")
        check(list(struct.unpack("<%dd" % N, raw)) == vec, "after SIGKILL")



@tap.test
def retain_vectors_keeps_newest_and_best(exe):
    with Daemon(exe) as d:
        d.post("/v1/studies", {"name": "g", "retain_vectors": 2,
                               "params": [{"name": "wd", "type": "float", "low": 1e-3,
                                           "high": 1e3, "log": True, "size": N}],
                               "sampler": {"type": "gradient", "optimizer": "sgd",
                                           "lr": 0.1}}).expect(201)
        for k in range(6):
            t = d.post("/v1/studies/g/ask").expect(201)
            check(t["number"] == k, "trial number %d" % t["number"])
            # Values rise, so trial 0 stays the best; every tell steps the optimizer.
            d.post("/v1/studies/g/trials/%d/tell" % k,
                   {"value": float(k), "gradient": {"wd": [0.01 * (k + 1)] * N}}).expect(200)

        def present(k):
            r = d.get("/v1/studies/g/trials/%d/params/wd" % k)
            check(r.status in (200, 404), "GET params of %d: %d" % (k, r.status))
            return r.status == 200

        check([present(k) for k in range(6)] == [True, False, False, False, True, True],
              "kept: %r" % [present(k) for k in range(6)])
        d.stop()
        db = sqlite3.connect(os.path.join(d.state_dir, "hpod.db"))
        rows = db.execute("SELECT number FROM params WHERE typeof(value) = 'blob'"
                          " ORDER BY number").fetchall()
        db.close()
        check([r[0] for r in rows] == [0, 4, 5], "stored vectors: %r" % rows)
        d.start()
        check([present(k) for k in range(6)] == [True, False, False, False, True, True],
              "after restart")


if __name__ == "__main__":
    sys.exit(tap.run(exe_from_argv()))
