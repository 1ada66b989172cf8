"""Counters across processes: with processes > 1, every child's server.stats() in one block of
shared memory, so that any child can report them all (the metrics route, Server.process_stats()).

Theory of operation. The supervisor creates a SharedStats before it forks: an anonymous shared
mapping (mmap.mmap(-1, size), MAP_SHARED), which every child inherits at the same address. It holds
SUBSLOTS slots per process index 0..processes-1: a replacement child takes the index of the child
it replaces, and a free slot of that index (two suffice: during a rolling restart the new child
and the old one it replaces are both alive, never three). Each slot is written by one process at a
time: its child while that child lives, then the parent once (retire), then the next child.

A child's ChildStats copies server.stats() into its slot every PUBLISH_INTERVAL from a small
thread, at each scrape (its own numbers are then current; the others' are at most
PUBLISH_INTERVAL old) and once more with the numbers of its final stop. The request path is
untouched: the engine counts as it always does, nothing here runs per request.

A slot is two buffers, each [crc32, version, pid, generation, ended, live fields, retired fields]
as unsigned 64-bit words. A writer fills the buffer that does not hold the newest version with the
next version, crc32 over everything after the crc word; a reader copies the slot and takes the
newest buffer whose crc matches. A reader racing a write therefore sees the previous complete
snapshot, and a child killed in the middle of a write leaves its previous one intact: no lock is
shared between processes and nothing relies on the CPU's memory ordering (a torn copy fails its
crc; the reader copies again).

Counter resets. The index is stable, so Prometheus sees the same series across a child's
replacement. When the parent reaps a dead child it retires the child's slot: the last live
counters are added to the slot's retired counters (gauges such as open connections are dropped),
in one write, so no reader counts them twice or not at all. The next child of that index starts
its live counters at 0 and publishes them beside the retired ones, so the per-process and total
`_total` counters never go backwards: nothing resets while the supervisor runs. What a child
counted after its last publish is lost when it is killed (at most PUBLISH_INTERVAL of traffic on
SIGKILL; nothing on a graceful exit, which publishes its final numbers). A child also never
publishes a counter lower than it published before.

A leaf module: it imports only the standard library.
"""
import mmap
import os
import struct
import threading
import zlib

PUBLISH_INTERVAL = 0.5            # seconds between a child's publications of its own numbers
SUBSLOTS = 2                      # slots per process index: the child and its rolling replacement
READ_ATTEMPTS = 100               # copies of a slot tried before a reader falls back to its last good one

RESPONSE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
# The numbers of server.stats() that add up across processes; accept_exhaustion_errno (the errno
# of the latest episode) does not, and stays per process.
COUNTERS = ("requests", "accepted", "bytes_received", "bytes_sent", "sendfile_bytes",
            "rejected_queue_full", "rejected_connection_limit", "accept_pauses", "accept_exhaustions",
            "handlers_over_timeout", "handlers_past_deadline", "header_timeouts", "body_timeouts",
            "body_rate_timeouts", "queue_expired", "requests_cut_at_stop", "worker_gil_batches")
GAUGES = ("open_connections", "handler_threads")
WORKER_COUNTERS = ("requests", "bytes_received", "bytes_sent")
WORKER_GAUGES = ("open_connections",)

_HEADER = 5                       # crc, version, pid, generation, ended
_CRC, _VERSION, _PID, _GENERATION, _ENDED = range(_HEADER)


def _fields(threads):
    """[(path into a stats() dict, is_counter)], in slot order."""
    fields = [((name,), True) for name in COUNTERS]
    fields += [(("responses", name), True) for name in RESPONSE_CLASSES]
    fields += [((name,), False) for name in GAUGES]
    for index in range(threads):
        fields += [(("workers", index, name), True) for name in WORKER_COUNTERS]
        fields += [(("workers", index, "responses", name), True) for name in RESPONSE_CLASSES]
        fields += [(("workers", index, name), False) for name in WORKER_GAUGES]
    return fields


def _lookup(stats, path):
    value = stats
    for key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return 0
    return value if isinstance(value, int) and value > 0 else 0


class SharedStats:
    """The shared block of one supervisor: created in the parent before the first fork."""

    def __init__(self, processes, threads):
        self.processes = processes
        self.threads = threads
        self._fields = _fields(threads)
        self._is_counter = [is_counter for _, is_counter in self._fields]
        self._count = len(self._fields)
        self._words = _HEADER + 2 * self._count
        self._buffer = struct.Struct(f"<{self._words}Q")
        self._slot_bytes = 2 * self._buffer.size
        self._memory = mmap.mmap(-1, processes * SUBSLOTS * self._slot_bytes)
        self._last_good = {}          # (index, subslot) -> words: this process's fallback

    def close(self):
        self._memory.close()

    # -- the slot format -------------------------------------------------------------------------

    def _offset(self, index, subslot):
        return (index * SUBSLOTS + subslot) * self._slot_bytes

    def _read(self, index, subslot):
        """The newest complete snapshot of a slot as a list of words, or None if never written."""
        offset = self._offset(index, subslot)
        size = self._buffer.size
        for _ in range(READ_ATTEMPTS):
            raw = self._memory[offset:offset + self._slot_bytes]
            best = None
            for start in (0, size):
                words = self._buffer.unpack_from(raw, start)
                if words[_CRC] == zlib.crc32(memoryview(raw)[start + 8:start + size]):
                    if best is None or words[_VERSION] > best[_VERSION]:
                        best = words
            if best is not None:
                self._last_good[(index, subslot)] = best
                return list(best)
            if not any(raw):
                return None
        last = self._last_good.get((index, subslot))        # written through every copy: rare
        return list(last) if last is not None else None

    def _write(self, index, subslot, words):
        """Write `words` (crc and version filled in here) as the slot's next version. Only the one
        process that owns the slot now calls this."""
        offset = self._offset(index, subslot)
        size = self._buffer.size
        raw = self._memory[offset:offset + self._slot_bytes]
        versions = []
        for start in (0, size):
            current = self._buffer.unpack_from(raw, start)
            valid = current[_CRC] == zlib.crc32(memoryview(raw)[start + 8:start + size])
            versions.append(current[_VERSION] if valid else -1)
        target = 0 if versions[0] <= versions[1] else 1        # overwrite the older one
        words[_VERSION] = max(versions) + 1
        words[_CRC] = 0
        data = bytearray(self._buffer.pack(*words))
        struct.pack_into("<Q", data, 0, zlib.crc32(memoryview(data)[8:]))
        start = offset + target * size
        self._memory[start:start + size] = bytes(data)

    # -- the parent ------------------------------------------------------------------------------

    def retire(self, index, subslot):
        """A child of this slot has exited (the parent reaped it): keep its counters as retired,
        drop its gauges, so that the next child of the index continues from them."""
        words = self._read(index, subslot)
        if words is None:
            return
        count = self._count
        live = _HEADER
        retired = _HEADER + count
        for field in range(count):
            if self._is_counter[field]:
                words[retired + field] += words[live + field]
            words[live + field] = 0
        words[_PID] = 0
        words[_ENDED] += 1
        self._write(index, subslot, words)

    # -- readers (any process) -------------------------------------------------------------------

    def read(self):
        """Every process index's numbers: [{"process": index, "pid": the pid of its newest live
        child (0 when none), "restarts": children of this index that have exited, and the stats()
        keys of COUNTERS, GAUGES, responses and workers}], index order. Counters include the
        index's exited children (see the module's header); gauges are the live children's."""
        count = self._count
        result = []
        for index in range(self.processes):
            values = [0] * count
            pid = generation = restarts = 0
            for subslot in range(SUBSLOTS):
                words = self._read(index, subslot)
                if words is None:
                    continue
                restarts += words[_ENDED]
                if words[_PID] and words[_GENERATION] >= generation:
                    pid, generation = words[_PID], words[_GENERATION]
                for field in range(count):
                    values[field] += words[_HEADER + field] + words[_HEADER + count + field]
            stats = {"process": index, "pid": pid, "restarts": restarts, "responses": {},
                     "workers": [{"responses": {}} for _ in range(self.threads)]}
            for (path, _), value in zip(self._fields, values):
                target = stats
                for key in path[:-1]:
                    target = target[key]
                target[path[-1]] = value
            result.append(stats)
        return result


class ChildStats:
    """A child's side: publishes its server's stats() into its slot (index, subslot) and reads
    everyone's. `stats` is the server's stats method; `generation` orders the children of one index
    (the newest live one names the index's pid)."""

    def __init__(self, shared, index, subslot, generation, stats):
        self.shared = shared
        self.index = index
        self.subslot = subslot
        self.generation = generation
        self._stats = stats
        self._lock = threading.Lock()          # one writer in this process: thread, scrape, stop
        self._closed = False
        self._stop = threading.Event()
        count = shared._count
        previous = shared._read(index, subslot) if subslot is not None else None
        self._retired = previous[_HEADER + count:] if previous is not None else [0] * count
        self._ended = previous[_ENDED] if previous is not None else 0
        self._published = [0] * count

    def publish(self, stats=None):
        """Write this child's numbers now (stats(), or the given dict) into its slot."""
        if self.subslot is None:
            return
        with self._lock:
            if self._closed:
                return
            if stats is None:
                stats = self._stats()
            self._write(stats)

    def _write(self, stats):
        shared = self.shared
        live = [_lookup(stats, path) for path, _ in shared._fields]
        for field, is_counter in enumerate(shared._is_counter):
            if is_counter and live[field] < self._published[field]:
                live[field] = self._published[field]       # a counter never goes backwards
        self._published = live
        words = [0, 0, os.getpid(), self.generation, self._ended] + live + self._retired
        shared._write(self.index, self.subslot, words)

    def start(self):
        """Publish now, then every PUBLISH_INTERVAL from a daemon thread until close()."""
        self.publish()
        threading.Thread(target=self._run, name="fastcore-stats-publisher", daemon=True).start()
        return self

    def _run(self):
        while not self._stop.wait(PUBLISH_INTERVAL):
            stats = self._stats()
            if stats:                              # {}: the server has stopped; close() publishes
                self.publish(stats)

    def close(self, final_stats=None):
        """The server has stopped: publish its final numbers (when given) and stop publishing."""
        self._stop.set()
        if self.subslot is None:
            return
        with self._lock:
            if final_stats:
                self._write(final_stats)
            self._closed = True

    def snapshot(self):
        """Every process's numbers (SharedStats.read), this child's own published just before."""
        self.publish()
        return self.shared.read()


def aggregate(processes):
    """The sum over SharedStats.read()'s list, in the shape of stats() without "workers" (per
    worker numbers stay per process: worker 0 of one child is not worker 0 of another)."""
    total = {name: 0 for name in COUNTERS + GAUGES}
    total["responses"] = {name: 0 for name in RESPONSE_CLASSES}
    for stats in processes:
        for name in COUNTERS + GAUGES:
            total[name] += stats.get(name, 0)
        for name in RESPONSE_CLASSES:
            total["responses"][name] += stats.get("responses", {}).get(name, 0)
    total["processes"] = len(processes)
    return total


__all__ = ["SharedStats", "ChildStats", "aggregate", "PUBLISH_INTERVAL"]
