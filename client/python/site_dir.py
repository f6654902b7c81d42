"""site_dir.py PREFIX: print the site directory under PREFIX that this Python
reads (its site.getsitepackages()), or nothing. Used by client/meson.build."""

import os
import site
import sys


def main() -> int:
    prefix = os.path.normpath(sys.argv[1]) if len(sys.argv) > 1 else sys.prefix
    for path in site.getsitepackages():
        rel = os.path.relpath(os.path.normpath(path), prefix)
        # Directly under PREFIX/lib (so /usr/local/... does not count for prefix /usr).
        if rel.startswith("lib") and not rel.startswith(".."):
            print(path)
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
