"""The WebSocket echo load generator: N picows connections, each doing request/response round trips
(send one binary message, wait for its whole echo, send the next) for a duration; prints one JSON
line with messages/s and latency percentiles.

    python bench/ws_client.py --port P [--path /ws] [-c 64] [--size 64] [--duration 5] [--warmup 1]

picows (Cython, its own frame parser on asyncio, with uvloop when installed) so that the client costs
less per message than the servers measured; bench/ws_run.py starts it in its own process, pinned to
the core the server is not on. One asyncio loop drives every connection: a frame callback records
the round trip and sends the next message at once, so the client never waits on its own scheduling.

A round trip counts when the echo's last frame arrives (an echo may come in several frames) and its
length is the message's; a wrong length is an error. Latencies are sampled from the measured window
only (after the warm-up); p50/p99 are over every round trip in it.

Output fields: connections, size, seconds (measured), messages (round trips in the window),
messages_per_s, p50_ms, p99_ms, max_ms, errors, connect_failures, client_cpu_s (this process's CPU in
the window), and error (a text) when nothing could be measured.
"""
import argparse
import asyncio
import json
import os
import resource
import sys
import time


def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(args):
    from picows import WSListener, WSMsgType, ws_connect

    message = os.urandom(args.size)
    state = {"measuring": False, "stopping": False}
    latencies = []                 # seconds, measured window only
    errors = [0]

    class Echo(WSListener):
        def on_ws_connected(self, transport):
            self.transport = transport
            self.received = 0
            self.sent_at = time.perf_counter()
            transport.send(WSMsgType.BINARY, message)

        def on_ws_frame(self, transport, frame):
            if frame.msg_type == WSMsgType.CLOSE or frame.msg_type == WSMsgType.PING:
                return                  # picows answers pings itself (enable_auto_pong)
            self.received += frame.payload_size
            if not frame.fin:
                return
            now = time.perf_counter()
            if self.received != len(message):
                errors[0] += 1
            elif state["measuring"]:
                latencies.append(now - self.sent_at)
            self.received = 0
            if not state["stopping"]:
                self.sent_at = now
                transport.send(WSMsgType.BINARY, message)

    url = f"ws://127.0.0.1:{args.port}{args.path}"
    results = await asyncio.gather(*(ws_connect(Echo, url, max_frame_size=max(args.size * 2, 1 << 20))
                                     for _ in range(args.connections)), return_exceptions=True)
    transports = [result[0] for result in results if not isinstance(result, BaseException)]
    failures = [result for result in results if isinstance(result, BaseException)]
    if not transports:
        return {"error": f"no connection: {failures[0]!r}"[:300], "connect_failures": len(failures)}
    await asyncio.sleep(args.warmup)
    state["measuring"], started, cpu_started = True, time.perf_counter(), cpu_seconds()
    await asyncio.sleep(args.duration)
    state["measuring"], state["stopping"] = False, True
    seconds, client_cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    for transport in transports:
        transport.send_close()
    try:
        await asyncio.wait_for(asyncio.gather(*(t.wait_disconnected() for t in transports)), 5)
    except asyncio.TimeoutError:
        for transport in transports:
            transport.disconnect()
    latencies.sort()
    ms = 1000.0
    return {"connections": len(transports), "size": args.size, "seconds": round(seconds, 3),
            "messages": len(latencies), "messages_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": percentile(latencies, 0.50) and round(percentile(latencies, 0.50) * ms, 3),
            "p99_ms": percentile(latencies, 0.99) and round(percentile(latencies, 0.99) * ms, 3),
            "max_ms": latencies and round(latencies[-1] * ms, 3),
            "errors": errors[0], "connect_failures": len(failures), "client_cpu_s": round(client_cpu, 3)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/ws")
    parser.add_argument("-c", "--connections", type=int, default=64)
    parser.add_argument("--size", type=int, default=64, help="message size in bytes (binary)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of round trips before measuring")
    args = parser.parse_args(argv)
    try:
        from uvloop import run as run_loop          # uvloop, as picows recommends, when installed
    except ImportError:
        run_loop = asyncio.run
    print(json.dumps(run_loop(run(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
