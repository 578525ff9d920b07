#!/usr/bin/env python3
"""The socket's limit for bench:cluster's transfer line: reads the raw TCP payload of
bench/peer/data-peer.js (an 8-byte little-endian length, then the bytes) with recv_into straight
into one preallocated buffer, the fastest way a program reads a socket short of a C loop.

    /usr/bin/python3 bench/peer/tcp_recv_into.py --port P [--host 127.0.0.1] --repeats 5

Prints one JSON line: {"times_ms": [...], "bytes": N}.
"""
import argparse
import json
import socket
import sys
import time


def fetch_once(host, port):
    with socket.create_connection((host, port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        header = bytearray(8)
        view = memoryview(header)
        got = 0
        while got < 8:
            n = s.recv_into(view[got:])
            if n == 0:
                raise RuntimeError("short header")
            got += n
        size = int.from_bytes(header, "little")
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            n = s.recv_into(view[got:], min(size - got, 4 << 20))
            if n == 0:
                raise RuntimeError(f"short payload: {got} of {size}")
            got += n
        return size


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    times = []
    size = 0
    for i in range(args.repeats + 1):
        t0 = time.perf_counter()
        size = fetch_once(args.host, args.port)
        if i > 0:
            times.append((time.perf_counter() - t0) * 1000)
    sys.stdout.write(json.dumps({"times_ms": times, "bytes": size}) + "\n")


if __name__ == "__main__":
    main()
