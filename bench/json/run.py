#!/usr/bin/python3
"""run.py: build and run bench-json.c (reply serialization: jansson %.17g vs hpo_json_dumps).

Usage: /usr/bin/python3 bench/json/run.py [objects] [rounds]

Compiles bench/json/bench-json.c with core/jsonw.c at -O2 into a temporary
directory and runs it. A 2-core machine shared with others is noisy: compare
within one run, and run it twice.
"""

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def main():
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "jansson"], check=True,
                           capture_output=True, text=True).stdout.split()
    with tempfile.TemporaryDirectory(prefix="hpod-bench-json-") as tmp:
        exe = os.path.join(tmp, "bench-json")
        subprocess.run(["cc", "-std=gnu17", "-O2", "-Wall", "-o", exe,
                        os.path.join(HERE, "bench-json.c"), os.path.join(ROOT, "core", "jsonw.c"),
                        "-I" + os.path.join(ROOT, "core")] + flags + ["-lm"], check=True)
        sys.exit(subprocess.run([exe] + sys.argv[1:]).returncode)


if __name__ == "__main__":
    main()
