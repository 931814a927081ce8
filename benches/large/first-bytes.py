#!/usr/bin/env python3
"""Cold-miss latency of a large object, head and first byte of content.

Usage: first-bytes.py HOST PORT PATH [MISSES] [PAUSE_S]

Each miss opens a new connection, asks for PATH with a new query string (a new cache key),
and records when the first byte of the response arrived (its head: what curl's
time_starttransfer measures) and when the first byte of its content did (what a video
player waits for). The connection is then closed; PAUSE_S (default 1.0) lets the fill of
the previous miss finish before the next. Prints the medians, minimum and maximum in ms.
"""
import random
import socket
import statistics
import sys
import time


def one(host, port, path):
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    target = f"{path}?first-bytes={random.getrandbits(48)}"
    start = time.perf_counter()
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
    received, head_at, content_at = b"", None, None
    while content_at is None:
        data = s.recv(65536)
        if not data:
            break
        now = time.perf_counter()
        head_at = head_at or now
        received += data
        end = received.find(b"\r\n\r\n")
        if end >= 0 and len(received) > end + 4:
            content_at = now
    s.close()
    if head_at is None or content_at is None:
        raise SystemExit(f"no content from {host}:{port}{target}")
    return (head_at - start) * 1000, (content_at - start) * 1000


def main():
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    misses = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    pause = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
    heads, contents = [], []
    for _ in range(misses):
        head, content = one(host, port, path)
        heads.append(head)
        contents.append(content)
        time.sleep(pause)
    print(
        f"head median {statistics.median(heads):.3f} ms (min {min(heads):.3f}, max {max(heads):.3f}); "
        f"first content byte median {statistics.median(contents):.3f} ms "
        f"(min {min(contents):.3f}, max {max(contents):.3f})"
    )


if __name__ == "__main__":
    main()
