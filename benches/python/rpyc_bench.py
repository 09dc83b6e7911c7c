"""The RPyC side of netref's benchmark harness (benches/src/bin/harness).

Run by the harness inside the venv it creates under target/:

    rpyc_bench.py server --transport tcp|unix [--path P] [--pin]
    rpyc_bench.py client --scenario S --addr tcp:H:P|unix:PATH --server-pid N --secs F [--pin] [...]

It speaks the harness's line protocol: a server prints ``READY <addr>``; a
client prints ``RESULT key=value ...``. Scenarios mirror the Rust ones:
latency (``--variant cached`` calls ``add = conn.root.add``; ``attr`` calls
``conn.root.add(...)`` each time), pipelined (1000 async calls in flight),
events (server-to-client callbacks delivered through a BgServingThread) and
payload (1 MiB echo).
"""

import collections
import glob
import os
import socket
import sys
import threading
import time

import rpyc
from rpyc.utils.server import ThreadedServer

WINDOW = 1000  # calls in flight; --window changes it (client and emit)


def opts(argv):
    out, i = {}, 0
    while i < len(argv):
        if argv[i].startswith("--"):
            key = argv[i][2:]
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                out[key] = argv[i + 1]
                i += 2
            else:
                out[key] = "1"
                i += 1
        else:
            i += 1
    return out


def cpu_ns(pid):
    """CPU time of every thread of pid, from /proc/PID/task/*/schedstat."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def result(**fields):
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)


def emit(callback, n, window=WINDOW):
    """Calls callback(i) n times, at most `window` calls in flight."""
    acb = rpyc.async_(callback)
    pending = collections.deque()
    for i in range(n):
        if len(pending) >= window:
            pending.popleft().wait()
        pending.append(acb(i))
    while pending:
        pending.popleft().wait()
    return n


class BenchService(rpyc.Service):
    def on_connect(self, conn):
        # TCP_NODELAY, as every other implementation in the harness uses.
        sock = conn._channel.stream.sock
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def exposed_add(self, a, b):
        return a + b

    def exposed_echo(self, data):
        return data

    def exposed_emit(self, callback, n, window=WINDOW):
        return emit(callback, n, window)


def server(o):
    config = {"allow_pickle": False, "sync_request_timeout": 60}
    if o["transport"] == "tcp":
        srv = ThreadedServer(BenchService, hostname="127.0.0.1", port=0, protocol_config=config)
        addr = f"tcp:127.0.0.1:{srv.port}"
    else:
        path = o["path"]
        if os.path.exists(path):
            os.unlink(path)
        srv = ThreadedServer(BenchService, socket_path=path, protocol_config=config)
        addr = f"unix:{path}"
    srv._listen()  # listen before announcing; start() would do it later
    print(f"READY {addr}", flush=True)
    srv.start()


def connect(addr):
    config = {"sync_request_timeout": 60}
    kind, rest = addr.split(":", 1)
    if kind == "tcp":
        host, port = rest.rsplit(":", 1)
        stream = rpyc.SocketStream.connect(host, int(port), nodelay=True)
        return rpyc.utils.factory.connect_stream(stream, config=config)
    return rpyc.utils.factory.unix_connect(rest, config=config)


def latency(o, conn):
    secs, server_pid = float(o["secs"]), int(o["server-pid"])
    if o.get("variant", "cached") == "cached":
        add = conn.root.add
        call = lambda: add(1, 2)  # noqa: E731
    else:
        root = conn.root
        call = lambda: root.add(1, 2)  # noqa: E731
    perf = time.perf_counter_ns
    end = time.monotonic() + secs / 5
    while time.monotonic() < end:
        call()
    samples = []
    me, srv = cpu_ns(os.getpid()), cpu_ns(server_pid)
    start = time.monotonic()
    while time.monotonic() - start < secs:
        t = perf()
        call()
        samples.append(perf() - t)
    me, srv = cpu_ns(os.getpid()) - me, cpu_ns(server_pid) - srv
    samples.sort()
    n = len(samples)
    q = lambda x: samples[min(n - 1, round((n - 1) * x))] / 1e3  # noqa: E731
    result(calls=n, p50_us=q(0.5), p99_us=q(0.99), client_cpu_us=me / 1e3 / n, server_cpu_us=srv / 1e3 / n)


def pipelined(o, conn):
    secs = float(o["secs"])
    window = int(o.get("window", WINDOW))
    aadd = rpyc.async_(conn.root.add)
    pending = collections.deque(aadd(i, 1) for i in range(window))
    for _ in range(window):  # warm-up
        pending.popleft().wait()
        pending.append(aadd(1, 1))
    done, start = 0, time.monotonic()
    while time.monotonic() - start < secs:
        for _ in range(100):
            pending.popleft().value
            pending.append(aadd(1, 1))
        done += 100
    while pending:
        pending.popleft().value
        done += 1
    result(calls_per_s=done / (time.monotonic() - start))


def events(o, conn):
    secs, batch = float(o["secs"]), int(o.get("batch", 20000))
    window = int(o.get("window", WINDOW))
    got = [0]
    want = [0]  # only reaching it wakes the waiter (as on the netref side)
    cond = threading.Condition()

    def on_event(i):
        with cond:
            got[0] += 1
            if got[0] >= want[0]:
                cond.notify_all()

    # RPyC's default sleep_interval (0.1 s after every served message) caps
    # events near 10/s; serve without sleeping to give RPyC its best case.
    bg = rpyc.BgServingThread(conn, serve_interval=1.0, sleep_interval=0)
    aemit = rpyc.async_(conn.root.emit)

    def round_(k):
        with cond:
            target = got[0] + k
            want[0] = target
        # The window only when asked for: netref's emit takes two arguments.
        res = aemit(on_event, k, window) if "window" in o else aemit(on_event, k)
        give_up = time.monotonic() + 20
        with cond:
            while got[0] < target:
                if time.monotonic() > give_up:
                    raise TimeoutError(f"only {got[0] - target + k} of {k} events arrived in 20 s")
                cond.wait(1)
        res.wait()

    round_(max(1, batch // 10))
    start, total = time.monotonic(), 0
    while time.monotonic() - start < secs:
        round_(batch)
        total += batch
    elapsed = time.monotonic() - start
    bg.stop()
    result(events_per_s=total / elapsed, events=total)


def payload(o, conn):
    secs, size = float(o["secs"]), int(o.get("size", 1 << 20))
    data = bytes(range(256)) * (size // 256)
    echo = conn.root.echo
    for _ in range(3):
        data = echo(data)
    start, n = time.monotonic(), 0
    while time.monotonic() - start < secs or n < 3:
        data = echo(data)
        n += 1
    assert len(data) == size
    result(echoes=n, mib_per_s=n * size / (1 << 20) / (time.monotonic() - start))


def client(o):
    conn = connect(o["addr"])
    {"latency": latency, "pipelined": pipelined, "events": events, "payload": payload}[o["scenario"]](o, conn)
    conn.close()


def main():
    o = opts(sys.argv[2:])
    if "pin" in o:
        os.sched_setaffinity(0, {0})
    {"server": server, "client": client}[sys.argv[1]](o)


if __name__ == "__main__":
    main()
