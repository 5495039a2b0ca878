"""Loaded by every Python process of a test server (``PYTHONPATH``): a connection that would
leave this machine is refused and reported as ``NETWORK-GUARD`` in the server log."""

import socket
import sys

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host = str(address[0])
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            sys.stderr.write(f"NETWORK-GUARD: blocked a connection to {address}\n")
            sys.stderr.flush()
            raise OSError(f"the test network guard blocked a connection to {address}")


def _guarded_connect(self, address):
    _check(self, address)
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
