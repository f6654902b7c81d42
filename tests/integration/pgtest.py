"""A throwaway PostgreSQL cluster for the tests (Debian's initdb/pg_ctl).

Cluster() runs initdb in a fresh temporary directory as an unprivileged
user (CI runs as root, and the server refuses to run as root: the data
directory then belongs to `nobody`), starts the server listening only on a
Unix socket in that directory (no TCP), and removes everything on close().
new_database() creates an empty database and returns its postgresql:// URI.
available() says why the cluster cannot be made (None when it can), so a
test skips with that reason instead of failing.
"""

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.parse

USER = "hpod"


def bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    return None


def available():
    if bindir() is None:
        return "PostgreSQL server binaries not found (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            return "running as root and there is no user 'nobody' to run PostgreSQL as"
        if shutil.which("setpriv") is None:
            return "running as root without setpriv to drop privileges"
    return None


class Cluster:
    def __init__(self, fsync=False):
        why = available()
        if why is not None:
            raise RuntimeError(why)
        self.bin = bindir()
        self.dir = tempfile.mkdtemp(prefix="hpod-pg-")
        self.data = os.path.join(self.dir, "data")
        self.sock = self.dir
        self.log = os.path.join(self.dir, "server.log")
        self.count = 0
        self.prefix = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.prefix = ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
                           "--clear-groups"]
        os.chmod(self.dir, 0o755)
        self._as_owner(["initdb", "-D", self.data, "-U", USER, "-A", "trust", "--no-sync",
                        "-E", "UTF8", "--locale=C"])
        self.options = ["-c", "listen_addresses=", "-c", "unix_socket_directories=" + self.sock,
                        "-c", "max_connections=200", "-c", "fsync=" + ("on" if fsync else "off"),
                        "-c", "shared_buffers=64MB"]
        self.start()
        atexit.register(self.close)

    def _as_owner(self, args, check=True, timeout=120):
        env = dict(os.environ, LC_ALL="C")
        return subprocess.run(self.prefix + [os.path.join(self.bin, args[0])] + args[1:],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=env, check=check, timeout=timeout, cwd=self.dir)

    def start(self):
        self._as_owner(["pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                        "-o", " ".join("'%s'" % o if o.startswith("unix") or o.endswith("=")
                                       else o for o in self.options), "start"])

    def stop(self, mode="fast"):
        self._as_owner(["pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop"],
                       check=False)

    def psql(self, sql, db="postgres"):
        r = subprocess.run([os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t", "-v",
                            "ON_ERROR_STOP=1", "-h", self.sock, "-U", USER, "-d", db, "-c", sql],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True,
                           timeout=60)
        return r.stdout

    def uri(self, db):
        return "postgresql://%s@%s/%s" % (USER, urllib.parse.quote(self.sock, safe=""), db)

    def new_database(self):
        self.count += 1
        name = "hpod_%d_%d" % (os.getpid(), self.count)
        self.psql("CREATE DATABASE %s" % name)
        return self.uri(name)

    def add_password_role(self, role, password, db):
        """A role that must give `password` (scram) on the socket, owning database `db`."""
        hba = os.path.join(self.data, "pg_hba.conf")
        with open(hba) as f:
            text = f.read()
        with open(hba, "w") as f:
            f.write("local all %s scram-sha-256\n" % role + text)
        self._as_owner(["pg_ctl", "-D", self.data, "reload"])
        self.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (role, password))
        self.psql("CREATE DATABASE %s OWNER %s" % (db, role))
        return "postgresql://%s@%s/%s" % (role, urllib.parse.quote(self.sock, safe=""), db)

    def close(self):
        if self.dir is None:
            return
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


_shared = None


def shared():
    """One cluster per test process, made on first use."""
    global _shared
    if _shared is None:
        _shared = Cluster()
    return _shared
