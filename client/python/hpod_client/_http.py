"""The transport: one persistent HTTP/1.1 connection per thread.

Each thread that uses a Client gets its own ``http.client`` connection (kept
in a ``threading.local``), reused for every request that thread makes, so a
worker does one TCP handshake for its whole run and leaves no TIME_WAIT
socket per request.

When a kept connection has been closed by the daemon while idle (a restart,
its idle timeout), that is noticed before sending: an idle connection that
has become readable has seen the daemon's FIN, so it is replaced by a fresh
one and the request goes out once on that. What may be sent again when a
reused connection fails anyway:

- a failure while *sending* means the daemon never got the whole request:
  any request is resent once on a fresh connection;
- a failure *after* sending (no answer, or a reset while reading it) is
  ambiguous: the daemon may have acted on the request. Only requests the
  caller marked ``retry_safe`` (GET, tell, report, heartbeat, gradient
  upload, PATCH of user attrs, create of an identical study: all idempotent
  in hpod) are resent; ``ask``, enqueue and delete are not (a resent ask
  would start a second trial), and the error goes up to the caller.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
import urllib.parse
import weakref
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

# A body's destination: given its length, a writable buffer of that many bytes (or None).
Sink = Callable[[int], Any]

# Failures that show the request never left in full (safe to resend).
_SEND_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
# Failures while reading the answer on a reused connection.
_READ_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, ConnectionAbortedError,
                BrokenPipeError, http.client.BadStatusLine)


class TransportError(Exception):
    """A request could not be completed.

    sent: whether the request may have reached the daemon (False: it
    certainly did not, so resending it is always safe).
    """

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class _Holder:
    """A thread's connection. When the thread ends, the holder is collected
    with the thread's local storage and a finalizer closes the socket."""

    __slots__ = ("conn", "pid", "__weakref__")

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn
        self.pid = os.getpid()


class Transport:
    """Sends requests to one daemon over per-thread keep-alive connections.

    keep_alive=False opens a new connection for every request and asks the
    daemon to close it (``Connection: close``), as the client did before 0.2;
    kept for comparisons (bench/pyclient) and for proxies that mishandle
    persistent connections.
    """

    def __init__(self, url: str, timeout: float, cafile: Optional[str] = None,
                 keep_alive: bool = True) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the URL must be http://HOST[:PORT] or https://HOST[:PORT], got %r" % url)
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.timeout = timeout
        self.keep_alive = keep_alive
        self._ssl: Optional[ssl.SSLContext] = None
        if self.scheme == "https":
            self._ssl = ssl.create_default_context(cafile=cafile)
        elif cafile:
            raise ValueError("cafile is only used with an https:// URL")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._holders: "weakref.WeakSet[_Holder]" = weakref.WeakSet()
        #: TCP connections opened so far (all threads); tests and benchmarks read it.
        self.connections_opened = 0

    # -- connections ------------------------------------------------------

    def _new_conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._ssl is not None:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=self._ssl)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.connect()
        except OSError as e:
            conn.close()
            raise TransportError("connecting to %s://%s:%d: %s" % (self.scheme, self.host,
                                                                  self.port, e), sent=False) from e
        if conn.sock is not None:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self.connections_opened += 1
        return conn

    def _take(self) -> Tuple[http.client.HTTPConnection, bool]:
        """This thread's connection and whether it was just opened."""
        if not self.keep_alive:
            return self._new_conn(), True
        holder: Optional[_Holder] = getattr(self._local, "holder", None)
        if holder is not None and holder.pid != os.getpid():
            # A child after fork(): the socket is the parent's; leave it to it.
            holder.conn.sock = None
            holder = self._local.holder = None
        if holder is not None and holder.conn.sock is not None and not _stale(holder.conn.sock):
            return holder.conn, False
        if holder is not None:
            self._drop()
        conn = self._new_conn()
        holder = _Holder(conn)
        weakref.finalize(holder, conn.close)
        self._local.holder = holder
        with self._lock:
            self._holders.add(holder)
        return conn, True

    def _drop(self) -> None:
        holder: Optional[_Holder] = getattr(self._local, "holder", None)
        if holder is not None:
            holder.conn.close()
            self._local.holder = None

    def local_socket(self) -> Optional[socket.socket]:
        """The calling thread's kept socket (None when there is none)."""
        holder: Optional[_Holder] = getattr(self._local, "holder", None)
        return holder.conn.sock if holder is not None else None

    def close(self) -> None:
        """Close every thread's kept connection. Call it when no other thread
        is in a request; a later request opens a new connection."""
        with self._lock:
            holders = list(self._holders)
        for h in holders:
            h.conn.close()
        self._local.holder = None

    # -- requests ---------------------------------------------------------

    def send(self, method: str, path: str, headers: Mapping[str, str],
             body: Optional[Union[bytes, memoryview]], retry_safe: bool,
             sink: Optional[Sink] = None) -> Tuple[int, Dict[str, str], Any]:
        """One request; returns (status, headers with lower-case names, body).

        sink: for a big body, called with a 2xx answer's Content-Length; the
        writable buffer of that size it returns is filled straight from the
        socket and returned as the body (None: bytes as usual).

        Raises TransportError (with .sent) when no answer came.
        """
        hdrs = dict(headers)
        if not self.keep_alive:
            hdrs["Connection"] = "close"
        target = self.base_path + path
        conn, fresh = self._take()
        try:
            return self._once(conn, method, target, hdrs, body, sink)
        except TransportError as e:
            # A kept connection that failed: once more on a fresh one, when
            # the first try cannot have been acted on or acting twice is fine.
            if fresh or (e.sent and not retry_safe):
                raise
        conn, _ = self._take()
        return self._once(conn, method, target, hdrs, body, sink)

    def _once(self, conn: http.client.HTTPConnection, method: str, target: str,
              headers: Dict[str, str], body: Optional[Union[bytes, memoryview]],
              sink: Optional[Sink] = None) -> Tuple[int, Dict[str, str], Any]:
        where = "%s %s://%s:%d%s" % (method, self.scheme, self.host, self.port, target)
        try:
            conn.request(method, target, body=body, headers=headers)
        except (_SEND_ERRORS + (http.client.HTTPException,)) as e:
            self._discard(conn)
            raise TransportError("%s: %s (while sending)" % (where, e), sent=False) from e
        except OSError as e:  # a timeout while sending: part of it may have arrived
            self._discard(conn)
            raise TransportError("%s: %s" % (where, e), sent=True) from e
        try:
            resp = conn.getresponse()
            payload = _read_body(resp, sink)
        except (_READ_ERRORS + (OSError, http.client.HTTPException)) as e:
            self._discard(conn)
            raise TransportError("%s: %s" % (where, e or type(e).__name__), sent=True) from e
        out_headers = {k.lower(): v for k, v in resp.getheaders()}
        if resp.will_close or not self.keep_alive:
            self._discard(conn)
        return resp.status, out_headers, payload

    def stream(self, path: str, headers: Mapping[str, str], out: Any,
               chunk: int = 1 << 16) -> Tuple[int, Dict[str, str], bytes, int]:
        """GET on a connection of its own; a 2xx body is copied to the binary file
        `out` chunk by chunk (never held whole). Returns (status, headers, error
        body or b"", bytes written). Raises TransportError (sent=True once any
        byte was written, so the caller does not retry into the same file)."""
        target = self.base_path + path
        where = "GET %s://%s:%d%s" % (self.scheme, self.host, self.port, target)
        conn = self._new_conn()
        written = 0
        try:
            try:
                conn.request("GET", target, headers=dict(headers))
                resp = conn.getresponse()
                out_headers = {k.lower(): v for k, v in resp.getheaders()}
                if not 200 <= resp.status <= 299:
                    return resp.status, out_headers, resp.read(), 0
                while True:
                    data = resp.read(chunk)
                    if not data:
                        break
                    out.write(data)
                    written += len(data)
                length = out_headers.get("content-length")
                if length is not None and int(length) != written:
                    raise TransportError("%s: %d of %s bytes arrived" % (where, written, length),
                                         sent=True)
                return resp.status, out_headers, b"", written
            except (OSError, http.client.HTTPException) as e:
                raise TransportError("%s: %s" % (where, e or type(e).__name__),
                                     sent=written > 0) from e
        finally:
            conn.close()

    def _discard(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        holder: Optional[_Holder] = getattr(self._local, "holder", None)
        if holder is not None and holder.conn is conn:
            self._local.holder = None


def _read_body(resp: http.client.HTTPResponse, sink: Optional[Sink]) -> Any:
    """The answer's body: into sink's buffer for a 2xx one of known length, else bytes."""
    length = resp.length
    buf = sink(length) if sink is not None and length and 200 <= resp.status <= 299 else None
    if buf is None:
        return resp.read()
    view = memoryview(buf).cast("B")
    got = 0
    while got < length:
        n = resp.readinto(view[got:])
        if not n:
            raise http.client.IncompleteRead(bytes(view[:got]), length - got)
        got += n
    return buf


def _stale(sock: socket.socket) -> bool:
    """Whether an idle kept connection has been closed by the daemon: between
    requests nothing may arrive, so a readable socket means EOF or garbage."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def env_cafile(cafile: Optional[str]) -> Optional[str]:
    """cafile, else $HPOD_CACERT (empty means unset)."""
    return cafile if cafile else (os.environ.get("HPOD_CACERT") or None)

