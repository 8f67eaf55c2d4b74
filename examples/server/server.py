#!/usr/bin/env python3
"""An HTTP inference service in three concurrency models, one model code path.

    server.py --mode threads|processes|asyncio [--port 0] [--workers N]

    threads    a pool of N threads, each accepting connections on the shared
               listening socket and running the request, inference included,
               itself (pre-threaded accept: idle threads wait in accept(), so
               the contact map tells idle time from GIL/futex waits)
    processes  a front end of --http-threads such threads that hand each
               request to one of N worker processes over a pipe
               (multiprocessing, fork start: the models, loaded before the
               fork, are shared copy-on-write) and wait for its reply
    asyncio    one event loop (asyncio streams) for all connections; inference
               runs off the loop in a pool of N threads (run_in_executor; idle
               threads wait in read() on a doorbell pipe, see PipeExecutor)

All three call models.infer(name, payload) for the model. Only 127.0.0.1 is
bound. API, HTTP/1.1, one request per connection:

    POST /infer/<mlp|cnn|lstm>  body: float32 input (see models.py) -> JSON
    GET  /healthz               -> ok
    GET  /stats                 -> JSON: requests, phase percentiles
    POST /stats/reset           -> the same, and starts them afresh

On start it prints one JSON line {"event": "ready", "port", "pid", "mode",
"worker_pids", ...}; on SIGINT/SIGTERM, after --max-seconds, or after
--max-requests requests it stops and prints {"event": "stopped", ...stats}.
Threads it starts are named (the comm contactmap shows): srv-<mode> (main
thread; the event loop in asyncio mode), http-<i>, infer-<i>, worker-<i>.
"""
import argparse
import asyncio
import collections
import concurrent.futures
import ctypes
import itertools
import json
import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import models  # noqa: E402
import contactmap_mark  # noqa: E402  (request markers: no-ops unless contactmap traces us)

REQUEST_IDS = itertools.count(1)     # next() is atomic under the GIL

MAX_HEAD = 16 << 10
MAX_BODY = 4 << 20
RECORD_MAX = 200_000          # per-request records kept for /stats percentiles


THREADS = {}          # native tid -> name of every thread this server named


def set_comm(name):
    """Names the calling OS thread (PR_SET_NAME; 15 bytes), as tools show it,
    and registers it (reported in the stop line: a tracer's report can then
    tell the server's threads from threads libraries start)."""
    THREADS[threading.get_native_id()] = name
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass


# --------------------------------------------------------------------------
# HTTP, the small part every mode shares

class BadRequest(Exception):
    def __init__(self, status, msg):
        super().__init__(msg)
        self.status = status


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


def parse_head(head):
    """(method, path, content_length) of a request head (bytes up to CRLFCRLF)."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
    except ValueError:
        raise BadRequest(400, "malformed request line")
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            try:
                length = int(v.strip())
            except ValueError:
                raise BadRequest(400, "bad Content-Length")
    if length < 0 or length > MAX_BODY:
        raise BadRequest(413, f"body over {MAX_BODY} bytes")
    return method, path, length


def response(status, body, ctype="application/json"):
    if isinstance(body, str):
        body = body.encode()
    return (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


def route(method, path):
    """('infer', model) | ('healthz',) | ('stats',); raises BadRequest."""
    if path.startswith("/infer/"):
        if method != "POST":
            raise BadRequest(405, "POST a float32 payload to /infer/<model>")
        name = path[len("/infer/"):]
        if name not in models.NAMES:
            raise BadRequest(404, f"no model {name!r}; models: {', '.join(models.NAMES)}")
        return ("infer", name)
    if path == "/healthz" and method == "GET":
        return ("healthz",)
    if path == "/stats" and method == "GET":
        return ("stats",)
    if path == "/stats/reset" and method == "POST":
        return ("reset",)
    raise BadRequest(404, f"no route {method} {path}")


class Stats:
    """Per-request phase times, as the server sees them (ns):
    server = connection accepted -> response sent; infer = inside
    models.infer (wall) and infer_cpu (that thread's CPU time); the rest of
    `server` is HTTP, queueing, IPC and GIL waits."""

    def __init__(self, mode):
        self.mode = mode
        self.lock = threading.Lock()
        self.t0 = time.monotonic_ns()
        self.requests = 0
        self.errors = 0
        self.by_model = {n: 0 for n in models.NAMES}
        self.rec = []           # (server_ns, infer_ns, infer_cpu_ns)
        self.loop_lag = []      # asyncio: event-loop lag samples (ns)

    def record(self, name, server_ns, res):
        with self.lock:
            self.requests += 1
            if res is None or "error" in res:
                self.errors += 1
                return
            self.by_model[name] += 1
            if len(self.rec) < RECORD_MAX:
                self.rec.append((server_ns, res["infer_ns"], res["infer_cpu_ns"]))

    def error(self):
        with self.lock:
            self.requests += 1
            self.errors += 1

    @staticmethod
    def pct(xs, qs=(50, 95, 99)):
        if not xs:
            return {}
        xs = sorted(xs)
        out = {f"p{q}_ms": round(xs[min(len(xs) - 1, len(xs) * q // 100)] / 1e6, 3) for q in qs}
        out["mean_ms"] = round(sum(xs) / len(xs) / 1e6, 3)
        out["max_ms"] = round(xs[-1] / 1e6, 3)
        return out

    def reset(self):
        """Starts the figures afresh (after a warm-up); returns the old ones."""
        old = self.snapshot()
        with self.lock:
            self.t0 = time.monotonic_ns()
            self.requests = self.errors = 0
            self.by_model = {n: 0 for n in models.NAMES}
            self.rec, self.loop_lag = [], []
        return old

    def snapshot(self):
        with self.lock:
            rec = list(self.rec)
            lag = list(self.loop_lag)
            out = {"mode": self.mode, "requests": self.requests, "errors": self.errors,
                   "by_model": dict(self.by_model),
                   "uptime_s": round((time.monotonic_ns() - self.t0) / 1e9, 3)}
        out["server"] = self.pct([r[0] for r in rec])
        out["infer"] = self.pct([r[1] for r in rec])
        out["infer_cpu"] = self.pct([r[2] for r in rec])
        out["outside_infer"] = self.pct([r[0] - r[1] for r in rec])
        if lag:
            out["loop_lag"] = self.pct(lag)
            out["loop_lag"]["samples"] = len(lag)
        return out


def answer(stats, kind, name, body, run_infer):
    """The application: returns (status, response body, infer result or None)."""
    if kind == "healthz":
        return 200, "ok\n", None
    if kind == "stats":
        return 200, json.dumps(stats.snapshot()), None
    if kind == "reset":
        return 200, json.dumps(stats.reset()), None
    try:
        res = run_infer(name, body)
    except ValueError as e:
        raise BadRequest(400, str(e))
    if "error" in res:
        return res.get("status", 500), json.dumps(res), res
    return 200, json.dumps(res), res


# --------------------------------------------------------------------------
# threads and processes: pre-threaded accept

def read_request(conn):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            raise BadRequest(400, "connection closed before the request head ended")
        buf += chunk
        if len(buf) > MAX_HEAD and b"\r\n\r\n" not in buf:
            raise BadRequest(400, "request head too long")
    head, _, body = buf.partition(b"\r\n\r\n")
    method, path, length = parse_head(head)
    parts = [body]
    have = len(body)
    while have < length:
        chunk = conn.recv(min(65536, length - have))
        if not chunk:
            raise BadRequest(400, "connection closed inside the body")
        parts.append(chunk)
        have += len(chunk)
    return method, path, b"".join(parts)[:length]


def serve_conn(conn, stats, run_infer, limit):
    with contactmap_mark.request(next(REQUEST_IDS)):
        serve_conn_marked(conn, stats, run_infer, limit)


def serve_conn_marked(conn, stats, run_infer, limit):
    t0 = time.monotonic_ns()
    res = None
    try:
        with conn:
            try:
                method, path, body = read_request(conn)
                kind, *rest = route(method, path)
                status, out, res = answer(stats, kind, rest[0] if rest else None, body, run_infer)
            except BadRequest as e:
                status, out = e.status, json.dumps({"error": str(e)})
                stats.error()
                kind = "bad"
            conn.sendall(response(status, out))
    except OSError:
        stats.error()
        return
    if kind == "infer":
        stats.record(rest[0], time.monotonic_ns() - t0, res)
        limit()


def acceptor(idx, sock, stats, run_infer, limit):
    set_comm(f"http-{idx}")
    models.thread_init()
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return      # the listening socket was shut down: stop
        serve_conn(conn, stats, run_infer, limit)


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1}


PR_SET_PDEATHSIG = 1


def worker_main(idx, conn, torch_threads, inherited):
    """A process-pool worker: requests in over its pipe, results out. It dies
    with the front end, however that ends: SIGKILL on the parent's death
    (PR_SET_PDEATHSIG), and EOF on its pipe once it has closed the front
    end's pipe ends it inherited through fork (INHERITED)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:       # the front end died before prctl: nobody will ask
        return
    for c in inherited:
        c.close()
    set_comm(f"worker-{idx}")
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # the front end stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    import torch
    torch.set_num_threads(torch_threads)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        name, payload = msg
        if name == "__ping__":
            conn.send({"pid": os.getpid()})
            continue
        try:
            res = models.infer(name, payload)
        except ValueError as e:     # a malformed payload: the client's error
            res = {"error": str(e), "status": 400}
        except Exception as e:      # reported to the client as a 500, never fatal
            res = {"error": f"{type(e).__name__}: {e}"}
        conn.send(res)


class ProcessPool:
    """N forked workers, each with its own duplex pipe; a request takes an idle
    worker (a queue of them), sends (name, payload), waits for the reply."""

    def __init__(self, n, torch_threads):
        ctx = multiprocessing.get_context("fork")
        self.idle = queue.Queue()
        self.procs, self.conns = [], []
        for i in range(n):
            parent, child = ctx.Pipe(duplex=True)
            p = ctx.Process(target=worker_main,
                            args=(i, child, torch_threads, self.conns + [parent]),
                            name=f"worker-{i}", daemon=True)
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)
        for c in self.conns:        # every worker up (and warm) before serving
            for name in models.NAMES:
                c.send((name, models.random_payload(name)))
                c.recv()
            c.send(("__ping__", b""))
            c.recv()
            self.idle.put(c)

    def pids(self):
        return [p.pid for p in self.procs]

    def infer(self, name, payload):
        conn = self.idle.get()
        try:
            conn.send((name, payload))
            return conn.recv()
        finally:
            self.idle.put(conn)

    def close(self):
        for c in self.conns:
            try:
                c.send(None)
            except OSError:
                pass
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)


def run_threaded(args, stats, ready):
    """threads and processes modes."""
    pool = None
    if args.mode == "processes":
        pool = ProcessPool(args.workers, args.torch_threads)   # fork before any thread
        run_infer = pool.infer
        nthreads = args.http_threads
    else:
        run_infer = models.infer
        nthreads = args.workers
    # stop signals are taken by the main thread in sigtimedwait(): blocked
    # here, before any thread starts, so every thread inherits the mask
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(args.backlog)

    def limit():
        if stats.requests >= args.max_requests:
            os.kill(os.getpid(), signal.SIGUSR1)

    threads = [threading.Thread(target=acceptor, args=(i, sock, stats, run_infer, limit),
                                name=f"http-{i}", daemon=True) for i in range(nthreads)]
    try:
        for t in threads:
            t.start()
        ready(sock.getsockname()[1], pool.pids() if pool else [], nthreads)
        # the main thread only waits for a stop signal (in rt_sigtimedwait,
        # not a futex: the contact map shows it apart from the serving threads)
        deadline = time.monotonic() + args.max_seconds
        while time.monotonic() < deadline:
            if signal.sigtimedwait(STOP_SIGNALS, max(0.0, deadline - time.monotonic())):
                break
    finally:
        # shutdown() wakes every thread blocked in accept() (Linux); close() does not
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for t in threads:
            t.join(timeout=10)
        sock.close()
        if pool:
            pool.close()


# --------------------------------------------------------------------------
# asyncio

class PipeExecutor(concurrent.futures.Executor):
    """N threads that run submitted calls. An idle thread waits in read() on
    a pipe (one doorbell byte per job), not on a futex as ThreadPoolExecutor's
    queue does: the contact map then tells an idle inference thread (read)
    from one waiting for the GIL (futex). Jobs are taken in FIFO order."""

    def __init__(self, n, prefix="infer"):
        self._rfd, self._wfd = os.pipe()
        self._jobs = collections.deque()
        self._threads = [threading.Thread(target=self._run, args=(f"{prefix}-{i}",),
                                          name=f"{prefix}-{i}", daemon=True) for i in range(n)]
        for t in self._threads:
            t.start()

    def submit(self, fn, /, *args, **kwargs):
        fut = concurrent.futures.Future()
        self._jobs.append((fut, fn, args, kwargs))     # before its byte: a reader finds it
        os.write(self._wfd, b"j")
        return fut

    def _run(self, name):
        set_comm(name)
        models.thread_init()
        while True:
            os.read(self._rfd, 1)
            job = self._jobs.popleft()
            if job is None:
                return
            fut, fn, args, kwargs = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as e:
                fut.set_exception(e)

    def shutdown(self, wait=True, *, cancel_futures=False):
        for _ in self._threads:
            self._jobs.append(None)
            os.write(self._wfd, b"q")
        if wait:
            for t in self._threads:
                t.join()

def run_asyncio(args, stats, ready):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    executor = PipeExecutor(args.workers, "infer")
    stop = asyncio.Event()

    async def handle(reader, writer):
        # the requests overlap on the loop's thread: begin and end by id
        rid = next(REQUEST_IDS)
        contactmap_mark.begin(rid)
        try:
            await handle_marked(reader, writer)
        finally:
            contactmap_mark.end(rid)

    async def handle_marked(reader, writer):
        t0 = time.monotonic_ns()
        res, kind, name = None, "bad", None
        try:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path, length = parse_head(head[:-4])
                body = await reader.readexactly(length) if length else b""
                kind, *rest = route(method, path)
                name = rest[0] if rest else None
                if kind == "infer":
                    res = await loop.run_in_executor(executor, models.infer, name, body)
                    status, out = (500 if "error" in res else 200), json.dumps(res)
                else:
                    status, out, _ = answer(stats, kind, None, body, None)
            except BadRequest as e:
                status, out, kind = e.status, json.dumps({"error": str(e)}), "bad"
                stats.error()
            except ValueError as e:   # models.infer: malformed payload
                status, out, kind = 400, json.dumps({"error": str(e)}), "bad"
                stats.error()
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                stats.error()
                return
            writer.write(response(status, out))
            await writer.drain()
        except OSError:
            stats.error()
            return
        finally:
            writer.close()
        if kind == "infer":
            stats.record(name, time.monotonic_ns() - t0, res)
            if stats.requests >= args.max_requests:
                stop.set()

    async def lag_monitor(interval=0.005):
        """How late the loop wakes a 5 ms timer: the event-loop stall."""
        while True:
            t = time.monotonic_ns()
            await asyncio.sleep(interval)
            lag = time.monotonic_ns() - t - int(interval * 1e9)
            with stats.lock:
                if len(stats.loop_lag) < RECORD_MAX:
                    stats.loop_lag.append(max(0, lag))

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", args.port,
                                            backlog=args.backlog, limit=MAX_BODY + MAX_HEAD)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            loop.add_signal_handler(sig, stop.set)
        loop.call_later(args.max_seconds, stop.set)
        mon = asyncio.ensure_future(lag_monitor())
        ready(server.sockets[0].getsockname()[1], [], args.workers)
        await stop.wait()
        mon.cancel()
        server.close()
        await server.wait_closed()

    try:
        loop.run_until_complete(main())
    finally:
        executor.shutdown(wait=True)
        loop.close()


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("threads", "processes", "asyncio"), required=True)
    ap.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    ap.add_argument("--workers", type=int, default=None,
                    help="inference concurrency: threads (threads, asyncio; default 4) "
                         "or worker processes (processes; default 2)")
    ap.add_argument("--http-threads", type=int, default=4,
                    help="processes mode: front-end threads (default 4)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch threads per inference (set in every thread that runs "
                         "one; default 1)")
    ap.add_argument("--backlog", type=int, default=512)
    ap.add_argument("--max-seconds", type=float, default=900,
                    help="stop by itself after this long (default 900)")
    ap.add_argument("--max-requests", type=int, default=1_000_000)
    args = ap.parse_args()
    if args.workers is None:
        args.workers = 2 if args.mode == "processes" else 4
    if args.workers < 1 or args.http_threads < 1:
        ap.error("--workers and --http-threads must be at least 1")

    set_comm(f"srv-{args.mode}"[:15])
    models.load(torch_threads=args.torch_threads)
    if args.mode != "processes":        # the pool's workers warm themselves
        for name in models.NAMES:
            models.infer(name, models.random_payload(name))
    stats = Stats(args.mode)

    def ready(port, worker_pids, nthreads):
        print(json.dumps({"event": "ready", "mode": args.mode, "port": port, "pid": os.getpid(),
                          "worker_pids": worker_pids, "workers": args.workers,
                          "serving_threads": nthreads, "torch_threads": args.torch_threads}),
              flush=True)

    if args.mode == "asyncio":
        run_asyncio(args, stats, ready)
    else:
        run_threaded(args, stats, ready)
    print(json.dumps({"event": "stopped", **stats.snapshot(),
                      "threads": {str(k): v for k, v in sorted(THREADS.items())}}), flush=True)


if __name__ == "__main__":
    main()
