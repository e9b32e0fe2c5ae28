"""The data plane over torch.distributed gloo: a worker's pushes and waits, and the server's
replies, as fixed-size frames sent point to point; Ray stays the control plane (starting
actors, join and leave, the allocator, status, checkpoints, errors' text).

Why: a Ray actor call costs about a millisecond of CPU on each side whatever it carries; a
gloo send/receive between the same two processes costs a tenth of that (docs/benchmarks.md,
`hetsync bench capacity`).

Between two processes of one node (transport `gloo`, the default) the frames live in a
shared-memory file both ends map, and a pair of POSIX semaphores beside it is the doorbell: a
frame is written in place, the writer posts, the reader wakes and reads it in place. Nothing
goes through a socket, which costs the kernel two copies and the server most of its CPU per
push; and a post wakes the waiting thread itself, where a gloo message wakes gloo's loop
thread, which then wakes the waiting one: on 2 busy cores each extra wake-up can wait for a
core (a ping-pong of two processes, idle and beside busy loops: 6-32 us mean against
0.16-0.59 ms, and gloo's 99th percentile beside busy loops at 4-8 ms; docs/benchmarks.md).
A semaphore does not notice that its poster died, so a wait on it is sliced and checks
between slices that the other end's process still runs (same node: its pid and start time,
so that a reused pid does not pass for it). Between nodes (and with `gloo-tcp`) frames
travel whole over gloo, whose socket notices a dead peer.

Why one two-process group per worker connection, and not one group of all: a gloo group has a
fixed membership, and after a process dies its survivors must build a new group. A pair
concerns one worker only: a worker that (re)joins builds its own pair while the others go on;
a worker that dies breaks its pair alone, and the server's thread for it ends. The cost of
building a pair is measured by `hetsync bench capacity` ("connect").

On the server, each pair has a thread: it receives a frame, lets the actor apply it under the
actor's lock (waiting there for the consistency model, bounded by the run's timeout), copies
the reply into its frame and sends it. Gloo's and the semaphores' waits release the GIL, so
idle threads cost almost nothing. The rendezvous store listens on loopback unless the run
joined a cluster.
"""

from __future__ import annotations

import contextlib
import datetime
import mmap
import os
import re
import secrets
import socket
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import NamedTuple

import numpy as np
import ray
import torch
import torch.distributed as dist

from hetsync.cluster.clients import REPLY_GRACE_S, RayServerClient, ServerLost
from hetsync.core.sharding import merge_replies
from hetsync.core.wire import Contribution, Frame, Reply
from hetsync.errors import ClusterError, HetsyncError

try:  # the doorbells of shared frames; POSIX only, as /dev/shm is
    import posix_ipc
except ImportError:  # frames then travel whole over gloo (`try_shared_frames`)
    posix_ipc = None

IDLE_S = 365 * 24 * 3600.0  # the server's side of a pair waits for frames without a deadline
IN_FLIGHT = object()  # what push and wait return: the reply is the pair's next frame
PUSH_SLOTS = 2  # frames one push may fill (`PushPolicy` sends one or two gradients a push)
SHARED_DIR = "/dev/shm"  # where a node's processes share memory (tmpfs on Linux)
RING_SLICE_S = 0.1  # how often a wait on a doorbell checks that the other end still exists


class PairAddress(NamedTuple):
    """Where a worker's end of a pair connects, and the sizes of the frames."""

    host: str
    port: int
    prefix: str
    params: int
    buffers: int
    shared: str | None = None  # the frames' shared-memory file, for a worker on the same node
    pid: int = 0  # the server's process, which a worker on the same node watches


def frame_stride(params: int, buffers: int) -> int:
    """Float32 values from one frame's start to the next in shared memory: even, so that
    every frame's 64-bit header stays aligned."""
    size = Frame.floats_for(params, buffers)
    return size + size % 2


class SharedFrames:
    """One pair's frames (PUSH_SLOTS from the worker, then the reply) in a file of
    SHARED_DIR that both ends map, and its doorbells: two POSIX semaphores, `up` (the
    worker's frames) and `down` (the server's). The server creates them, for its user only,
    the file with its space reserved (a full /dev/shm is then an error here, not a crash on
    first write), and unlinks them once the worker has connected: they live on until both
    ends let go."""

    def __init__(self, path: str, params: int, buffers: int, create: bool):
        if posix_ipc is None:
            raise OSError("posix_ipc is not installed")
        self.path = path
        nbytes = 4 * frame_stride(params, buffers) * (PUSH_SLOTS + 1)
        fd = os.open(path, os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0), 0o600)
        try:
            if create:
                os.posix_fallocate(fd, 0, nbytes)
            self.map = mmap.mmap(fd, nbytes)
        except OSError:
            if create:
                os.unlink(path)
            raise
        finally:
            os.close(fd)
        self.tensor = torch.frombuffer(self.map, dtype=torch.float32)
        self.rings: list = []  # up, down
        try:
            for name in self._ring_names():
                self.rings.append(posix_ipc.Semaphore(name, posix_ipc.O_CREX, 0o600, 0)
                                  if create else posix_ipc.Semaphore(name))
        except posix_ipc.Error as e:
            if create:
                self.unlink()
            raise OSError(f"no doorbell semaphores: {e}") from None

    def _ring_names(self) -> list[str]:
        return [f"/{os.path.basename(self.path)}.{end}" for end in ("up", "down")]

    def unlink(self) -> None:
        """Remove the file's and the doorbells' names (those still there): what is mapped or
        open stays usable."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        for name in self._ring_names():
            with contextlib.suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_semaphore(name)

    def frame(self, i: int, params: int, buffers: int) -> Frame:
        """Frame `i` of the file, in place."""
        stride = frame_stride(params, buffers)
        return Frame(params, buffers,
                     self.tensor[i * stride:i * stride + Frame.floats_for(params, buffers)])


def try_shared_frames(prefix: str, params: int, buffers: int) -> SharedFrames | None:
    """A new pair's frames in shared memory, or None with a warning where it cannot be had
    (no SHARED_DIR, or too little room in it): the pair's frames then travel whole."""
    path = os.path.join(SHARED_DIR, f"hetsync-{os.getpid()}-{prefix.strip('/')}-"
                                    f"{secrets.token_hex(4)}")
    try:
        return SharedFrames(path, params, buffers, create=True)
    except OSError as e:
        warnings.warn(f"no shared memory for a pair ({e}): its frames travel whole over gloo",
                      stacklevel=2)
        return None


class PeerGone(RuntimeError):
    """The other end's process no longer exists (what gloo says as 'closed by peer')."""


def process_started(pid: int) -> int | None:
    """When process `pid` of this node started (clock ticks since boot), None if it does not
    run (a zombie, dead but not yet reaped, does not). With the pid alone a process that died
    and whose pid went to a new one would look alive. Linux's /proc, as SHARED_DIR is
    Linux's."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # from field 3 (state) on
    except OSError:  # gone, or going as we read
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])  # field 22: starttime


_LEFTOVER = re.compile(r"^(?:sem\.)?hetsync-(\d+)-")


def sweep_leftovers() -> list[str]:
    """Remove this user's pair files and doorbells in SHARED_DIR whose creating server
    process no longer runs: a server killed between making a pair's frames and its worker's
    connect never unlinked them. Names carry the creator's pid (`try_shared_frames`); a
    live process's, or another user's, stay. Returns the names removed."""
    removed = []
    try:
        entries = list(os.scandir(SHARED_DIR))
    except OSError:
        return removed
    for entry in entries:
        m = _LEFTOVER.match(entry.name)
        if m is None or process_started(int(m.group(1))) is not None:
            continue
        with contextlib.suppress(OSError):  # not ours, a folder, or gone meanwhile
            if entry.stat(follow_symlinks=False).st_uid == os.getuid():
                os.unlink(entry.path)
                removed.append(entry.name)
    return removed


class Rung:
    """What sending on shared frames returns: the doorbell rang already."""

    @staticmethod
    def wait() -> bool:
        """Nothing to wait for."""
        return True


class Ringing:
    """A wait for the other end's doorbell: sliced, so that a dead other end (process
    `peer_pid` no longer runs, or no longer the one that started at `peer_started`; pid 0:
    not known, not checked) is noticed, and bounded by `timeout_s`; both raise as gloo's
    waits do (a RuntimeError)."""

    def __init__(self, ring, peer_pid: int, peer_started: int | None, timeout_s: float):
        self.ring, self.peer_pid, self.peer_started = ring, peer_pid, peer_started
        self.timeout_s = timeout_s

    def _peer_runs(self) -> bool:
        started = process_started(self.peer_pid)
        return started is not None and started == self.peer_started

    def wait(self) -> bool:
        """Block until the other end posts (True), or raise PeerGone or a timeout."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                self.ring.acquire(RING_SLICE_S)  # releases the GIL
                return True
            except posix_ipc.SignalError:  # a signal's handler ran (Python's raise here)
                continue
            except posix_ipc.BusyError:
                if self.peer_pid > 0 and not self._peer_runs():
                    raise PeerGone(f"process {self.peer_pid} went away") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"timed out after {self.timeout_s:.0f} s waiting for "
                                       "the other end of the pair") from None


class PairLink:
    """One end of a pair: its gloo group, its frames (PUSH_SLOTS for a push, then the reply)
    and how a frame moves: whole over gloo, or, when the frames are shared, written in place
    and announced by the doorbell (a semaphore's post and wait order the memory); a wait on
    the doorbell watches the other end's process `peer_pid` (the one running now, when the
    link is made) and ends after `timeout_s`."""

    def __init__(self, group: dist.ProcessGroupGloo, rank: int, params: int, buffers: int,
                 shared: SharedFrames | None, peer_pid: int = 0, timeout_s: float = IDLE_S):
        self.group, self.peer, self.shared = group, 1 - rank, shared
        frames = [Frame(params, buffers) if shared is None else shared.frame(i, params, buffers)
                  for i in range(PUSH_SLOTS + 1)]
        self.pushes, self.reply = frames[:PUSH_SLOTS], frames[PUSH_SLOTS]
        if shared is not None:
            up, down = shared.rings
            self.ring_out, self.ring_in = (down, up) if rank == 0 else (up, down)
        self.peer_pid, self.timeout_s = peer_pid, timeout_s
        # the doorbell's only: over gloo the pid may be of another node, and gloo watches
        watched = shared is not None and peer_pid > 0
        self.peer_started = process_started(peer_pid) if watched else None

    def send(self, frame: Frame) -> dist.Work | Rung:
        """Start sending `frame` (already written) to the other end."""
        if self.shared is not None:
            self.ring_out.release()
            return Rung()
        return self.group.send([frame.data], self.peer, 0)

    def recv(self, frame: Frame) -> dist.Work | Ringing:
        """Start receiving the other end's next frame into `frame`."""
        if self.shared is not None:
            return Ringing(self.ring_in, self.peer_pid, self.peer_started, self.timeout_s)
        return self.group.recv([frame.data], self.peer, 0)

    def hang_up(self) -> None:
        """The worker's end lets go. Over gloo the socket's close tells the server's thread;
        shared frames have no socket, so they get a BYE (after `leave`'s, a second one that
        nobody reads). Its header alone is written: a server still applying the last push
        has read that push's header already, and reads the BYE once it has replied."""
        if self.shared is not None:
            self.pushes[0].write_request(Frame.BYE)
            self.send(self.pushes[0])


def this_host() -> str:
    """The address this process's transport binds to: the node's address in a cluster, which
    Ray resolves to 127.0.0.1 on a local instance (`runtime.set_cluster_mode`)."""
    return ray.util.get_node_ip_address()


def pair_group(store: dist.Store, prefix: str, rank: int, host: str,
               timeout_s: float) -> dist.ProcessGroupGloo:
    """One end of a two-process gloo group (server rank 0, worker rank 1), bound to `host`;
    blocks until the other end connects."""
    options = dist.ProcessGroupGloo._Options()
    options._devices = [dist.ProcessGroupGloo.create_device(hostname=host)]
    options._timeout = datetime.timedelta(seconds=timeout_s)
    return dist.ProcessGroupGloo(dist.PrefixStore(prefix, store), rank, 2, options)


def _lost(e: Exception) -> bool:  # gloo's own words for a peer that went away
    """Whether a wait's error says the other process went away (rather than a timeout)."""
    text = str(e)
    return (isinstance(e, PeerGone) or "closed by peer" in text or "Connection reset" in text
            or "Broken pipe" in text)


class PairServer:
    """The server's side: a rendezvous store, and one thread per open pair.

    `serve(worker, contributions or None, clock, frame)` is the actor's: it applies a push
    (or a wait for `clock` when contributions is None) and writes the reply into `frame`,
    with its lock held while it copies (the reply's weights are views)."""

    def __init__(self, params: int, buffers: int, timeout_s: float,
                 serve: Callable[[int, list[Contribution] | None, int, Frame], None]):
        self.params, self.buffers = params, buffers
        self.timeout_s = timeout_s
        self.serve = serve
        self.host = this_host()
        self.node = ray.get_runtime_context().get_node_id()
        listener = socket.create_server((self.host, 0), backlog=128)
        self.port = listener.getsockname()[1]
        # The store takes the socket, so it listens where we bound it (by default it would
        # listen on every interface).
        self.store = dist.TCPStore(self.host, self.port, is_master=True, wait_for_workers=False,
                                   master_listen_fd=listener.detach(), use_libuv=False,
                                   timeout=datetime.timedelta(seconds=timeout_s))
        self.generation = 0
        self.errors: dict[int, HetsyncError] = {}
        self.connect_s: list[float] = []  # how long each pair took to build, for the bench
        sweep_leftovers()  # e.g. of the server this one replaces, if it was killed mid-connect

    def open(self, worker: int, node: str | None, pid: int = 0) -> PairAddress:
        """Start serving a new pair for `worker` (a restarted worker opens a new one), its
        frames in shared memory if the worker is on this `node` and the memory can be had;
        `pid`, the worker's process, is what a wait on its doorbell watches."""
        self.generation += 1
        prefix = f"w{worker}g{self.generation}/"
        shared = (try_shared_frames(prefix, self.params, self.buffers) if node == self.node
                  else None)
        address = PairAddress(self.host, self.port, prefix, self.params, self.buffers,
                              None if shared is None else shared.path, os.getpid())
        threading.Thread(target=self._run, args=(worker, address, shared, pid), daemon=True,
                         name=f"pair-{worker}").start()
        return address

    def _run(self, worker: int, address: PairAddress, shared: SharedFrames | None,
             pid: int) -> None:
        t0 = time.perf_counter()
        try:
            # No deadline on the server's side: a worker may compute for longer than
            # --timeout between two pushes; only its wait for a reply is bounded.
            group = pair_group(self.store, address.prefix, 0, self.host, IDLE_S)
        except RuntimeError:
            return  # the worker never came: nothing to serve
        finally:
            if shared is not None:  # mapped by both ends now, or never to be
                shared.unlink()
        self.connect_s.append(time.perf_counter() - t0)
        link = PairLink(group, 0, self.params, self.buffers, shared, pid)
        first = link.recv(link.pushes[0])
        while True:
            pushed: list[Contribution] = []
            try:
                for i, frame in enumerate(link.pushes):  # one frame per contribution
                    (first if i == 0 else link.recv(frame)).wait()
                    if frame.kind != Frame.PUSH:
                        break
                    contribution, last = frame.read_contribution()
                    pushed.append(contribution)
                    if last:
                        break
            except RuntimeError:
                return  # the worker's process went away: its pair ends with it
            if frame.kind == Frame.BYE:
                return
            failed = False
            try:
                self.serve(worker, pushed or None, frame.request_clock(), link.reply)
            except Exception as e:  # noqa: BLE001 - every failure goes back to the worker
                self.errors[worker] = (e if isinstance(e, HetsyncError) else ClusterError(
                    f"the parameter server failed on worker {worker}'s frame: "
                    f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"))
                link.reply.write_error()
                failed = True
            try:
                if not failed:
                    # Posted before the reply goes: the worker can send its next frame only
                    # after reading this reply, and its send then finds us ready (below).
                    first = link.recv(link.pushes[0])
                link.send(link.reply).wait()
            except RuntimeError:
                return
            if failed:
                # The worker stops on an error; ending here also frees the frames a BSP
                # round may still point into.
                return


class GlooServerClient:
    """The worker loop's client of the server (the `ServerClient` protocol of
    `hetsync.core.worker`) with pushes and waits on gloo pairs, join and leave on Ray.

    With several shards (`hetsync.core.sharding`) a push is cut into the shards' ranges and
    sent to all of them at once, and their replies are merged; each shard's part of a push
    names the version of that shard the gradient was computed on.

    `shared_memory`: frames in shared memory with the shards on this node (else whole over
    gloo). `landing`: where the replies' weights are copied (the replica's own weights,
    `FlatModel.landing`); without it a reply from one shard is a view of its frame, valid
    until the next push, and the replies of several are merged into a vector of the client's
    own. With several shards each shard's part of a push and of a reply is copied on a
    thread of its own (numpy copies release the GIL): the shards serve in parallel, and so
    does the client's side."""

    def __init__(self, handles: list, worker: int, timeout_s: float,
                 shared_memory: bool = True, landing: np.ndarray | None = None):
        self.controls = [RayServerClient(h, timeout_s) for h in handles]
        self.pool: ThreadPoolExecutor | None = None  # made once the pairs are connected
        self.handles = handles
        self.worker = worker
        node = ray.get_runtime_context().get_node_id() if shared_memory else None
        refs = [h.open_pair.remote(worker, node, os.getpid()) for h in handles]  # all at once
        addresses = [c.get(r) for c, r in zip(self.controls, refs, strict=True)]
        self.links: list[PairLink] = []
        for a in addresses:
            try:
                # mapped before connecting: the server unlinks the file once we are
                shared = (None if a.shared is None
                          else SharedFrames(a.shared, a.params, a.buffers, create=False))
                store = dist.TCPStore(a.host, a.port, is_master=False, wait_for_workers=False,
                                      timeout=datetime.timedelta(seconds=timeout_s))
                group = pair_group(store, a.prefix, 1, this_host(), timeout_s + REPLY_GRACE_S)
            except (RuntimeError, OSError) as e:  # gloo's and the store's are RuntimeErrors
                self.close()
                raise ClusterError(f"worker {worker} could not connect to the parameter "
                                   f"server at {a.host}:{a.port}: "
                                   f"{str(e).strip().splitlines()[0]}") from e
            self.links.append(PairLink(group, 1, a.params, a.buffers, shared, a.pid,
                                       timeout_s + REPLY_GRACE_S))
        bounds = np.cumsum([0] + [a.params for a in addresses])
        self.ranges = list(zip(bounds[:-1], bounds[1:], strict=True))
        self.weights = (landing if landing is not None
                        else np.empty(bounds[-1], np.float32) if len(addresses) > 1 else None)
        self.pool = (ThreadPoolExecutor(len(addresses) - 1, f"shards-{worker}")
                     if len(addresses) > 1 else None)
        self.versions: dict[int, list[int]] = {}  # shard 0's version -> every shard's
        self.replies: list[dist.Work] = []  # the posted receives of the next reply

    @staticmethod
    def _gloo(doing: str, start: Callable[[], list[dist.Work]],
              wait: bool = True) -> list[dist.Work]:
        """Start gloo operations (one per shard) and, if `wait`, wait for them all; a gloo
        error becomes ServerLost where the server's process went away, else ClusterError."""
        try:
            works = start()
            for w in works if wait else ():
                w.wait()
            return works
        except RuntimeError as e:
            if _lost(e):
                raise ServerLost(f"{doing}: the process died") from e
            raise ClusterError(f"{doing} failed: {str(e).splitlines()[0]}") from e

    def _send(self, frames: list[Frame], doing: str) -> None:
        """Send one frame per shard, all at once."""
        self._gloo(doing, lambda: [link.send(f) for link, f in zip(self.links, frames,
                                                                   strict=True)])

    def _expect_reply(self) -> None:
        """Post the receives of the reply before sending what asks for it. A gloo send goes
        out at once only where the receiver has already announced its receive; otherwise the
        sender announces the send and the data leaves from gloo's own thread once the answer
        arrives, and with a push in flight `get` comes a whole step later. Measured with 4
        clients on one shard: 3,643-3,868 pushes/s against 1,716-2,101 when the receive was
        posted in `get`, and 2,812-2,826 when posted just after the send; one client loses
        about 8% (the announcement is a wake-up of its own on the server)."""
        self.replies = self._gloo("waiting for the parameter server",
                                  lambda: [link.recv(link.reply) for link in self.links],
                                  wait=False)

    def _each_shard(self, action: Callable[[int], object]) -> list:
        """`action(k)` for every shard k: shard 0's on this thread, the others' on the pool;
        their results in shard order (the first error is raised, once all have ended)."""
        if self.pool is None:
            return [action(0)]
        later = [self.pool.submit(action, k) for k in range(1, len(self.links))]
        try:
            first = action(0)
        finally:
            wait(later)  # none left running on a frame the caller may reuse
        return [first, *(f.result() for f in later)]

    def _merge(self, replies: list[Reply]) -> Reply:
        if self.weights is not None:
            def land(k: int) -> None:
                lo, hi = self.ranges[k]
                np.copyto(self.weights[lo:hi], replies[k].weights)
            self._each_shard(land)
        reply = merge_replies(replies, self.weights)
        self.versions[reply.version] = [r.version for r in replies]
        for old in [v for v in self.versions if v < reply.version - 64]:
            del self.versions[old]
        return reply

    def join(self, worker: int) -> Reply:
        """Join every shard over Ray and merge their replies; blocks, at most the run's timeout
        plus REPLY_GRACE_S."""
        refs = [h.join.remote(worker) for h in self.handles]
        return self._merge([c.get(r) for c, r in zip(self.controls, refs, strict=True)])

    def push(self, worker: int, contributions: list[Contribution]) -> object:
        """Send each contribution's range to every shard (the buffers to shard 0 only); returns
        IN_FLIGHT once sent, the reply is `get`'s. At most PUSH_SLOTS contributions: each
        has its own frame, since a shared frame is read where it was written."""
        if len(contributions) > PUSH_SLOTS:
            raise ValueError(f"a push carries at most {PUSH_SLOTS} contributions "
                             f"(got {len(contributions)})")
        self._expect_reply()
        bases = [self.versions.get(c.base_version, [c.base_version] * len(self.links))
                 for c in contributions]

        def send_to(k: int) -> list:
            (lo, hi), link = self.ranges[k], self.links[k]
            sent = []
            for i, c in enumerate(contributions):
                part = c._replace(payload=c.payload[lo:hi], base_version=bases[i][k],
                                  buffers=c.buffers if k == 0 else None)
                link.pushes[i].write_contribution(part, last=i == len(contributions) - 1)
                sent.append(link.send(link.pushes[i]))
            return sent
        self._gloo("pushing to the parameter server",
                   lambda: [w for sent in self._each_shard(send_to) for w in sent])
        return IN_FLIGHT

    def _requests(self, kind: int, clock: int = 0) -> list[Frame]:
        frames = [link.pushes[0] for link in self.links]
        for frame in frames:
            frame.write_request(kind, clock)
        return frames

    def wait_until_allowed(self, worker: int, clock: int) -> object:
        """Ask every shard for a reply once iteration `clock` may start; returns IN_FLIGHT once
        sent, the reply is `get`'s."""
        self._expect_reply()
        self._send(self._requests(Frame.WAIT, clock), "asking the parameter server")
        return IN_FLIGHT

    def get(self, _in_flight: object) -> Reply:
        """The reply to the last push or wait (one is in flight at most)."""
        back = [link.reply for link in self.links]
        self._gloo("waiting for the parameter server", lambda: self.replies)
        for control, handle, frame in zip(self.controls, self.handles, back, strict=True):
            if frame.kind == Frame.ERROR:  # the call below raises the server's error
                control.get(handle.pair_error.remote(self.worker))
                raise ClusterError("the parameter server refused a push without saying why")
        return self._merge([f.read_reply() for f in back])

    def leave(self, worker: int) -> None:
        """Say BYE on every pair (the server's threads for them end), then leave every shard over
        Ray; blocks, bounded."""
        self._send(self._requests(Frame.BYE), "leaving the parameter server")
        refs = [h.leave.remote(worker) for h in self.handles]
        for c, r in zip(self.controls, refs, strict=True):
            c.get(r)

    def close(self) -> None:
        """Release the pairs: their sockets close when the groups are freed (gloo's abort
        does nothing), or on shared frames the link's BYE, and the server's thread for each
        then ends; safe to call twice."""
        for link in self.links:
            link.hang_up()
        self.replies = []  # a posted receive holds its group too
        self.links.clear()
        if self.pool is not None:
            self.pool.shutdown()
