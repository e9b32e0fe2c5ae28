"""The data plane's failure modes, on each transport: a wait that outlasts the timeout names
who is late, a server that dies under a waiting worker is `ServerLost`, and a worker that dies
mid-exchange leaves the server serving the others."""

import os
import time

import numpy as np
import pytest
import ray

from hetsync.cluster.actors import server_client
from hetsync.cluster.clients import ServerLost
from hetsync.cluster.handles import ServerHandle
from hetsync.cluster.probes import PushProbe
from hetsync.config import TRANSPORTS
from hetsync.core.wire import Contribution
from hetsync.errors import ClusterError

pytestmark = pytest.mark.ray
SIZE = 1000


def _bsp_server(timeout_s, workers=2):
    return ServerHandle(timeout_s, server=dict(
        weights=np.zeros(SIZE, np.float32), workers=workers, bound=0, barrier=True, lr=0.01,
        momentum=0.0, batch_size=64, iterations=10**6, eval_every=10**6),
        allocation=dict(n_samples=64, workers=workers, batch_size=64, mode="uniform", seed=0))


def _push(client, worker, clock):
    grad = np.full(SIZE, 1e-3, np.float32)
    return client.push(worker, [Contribution(clock, 0, grad, 64, 1.0)])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_wait_past_the_timeout_names_the_worker_that_is_late(ray_local, transport):
    server = _bsp_server(timeout_s=1.0)
    client = server_client(transport, server.actors, 0, 1.0)
    try:
        clock = client.join(0).clock
        with pytest.raises(ClusterError, match=r"timed out after 1 s: .*no push yet from "
                                               r"worker\(s\) 1"):
            client.get(_push(client, 0, clock))
    finally:
        client.close()
        server.kill()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_server_that_dies_under_a_waiting_worker_is_server_lost(ray_local, transport):
    server = _bsp_server(timeout_s=30.0)
    client = server_client(transport, server.actors, 0, 30.0)
    try:
        pending = _push(client, 0, client.join(0).clock)  # waits for worker 1: never comes
        time.sleep(0.5)
        server.sigkill()
        t0 = time.time()
        with pytest.raises(ServerLost, match="the process died"):
            client.get(pending)
        assert time.time() - t0 < 20  # at once, not at a timeout
    finally:
        client.close()
        server.kill()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_worker_that_dies_mid_exchange_leaves_the_server_serving_the_others(ray_local,
                                                                              transport):
    server = _bsp_server(timeout_s=30.0)
    client = server_client(transport, server.actors, 0, 30.0)
    probe = ray.remote(num_cpus=0)(PushProbe).remote(server.actor, 1, SIZE, 30.0, transport)
    try:
        clock = client.join(0).clock
        ray.get(probe.ready.remote())
        # worker 1 pushes and waits for the round; worker 0 pushes, then worker 1 dies
        probe.run.remote(time.time(), 60.0)
        time.sleep(0.5)
        assert client.get(_push(client, 0, clock)).version == 1  # the round with worker 1's
        ray.kill(probe)
        pending = _push(client, 0, clock + 1)  # waits for worker 1's next push: never comes
        time.sleep(0.5)
        server.lose(1)  # what the driver does when it sees the process gone
        assert client.get(pending).version == 2
        assert server.status().live_workers == [0]
    finally:
        client.close()
        server.kill()


@pytest.mark.parametrize("shards", [1, 2])
@pytest.mark.parametrize("transport", [t for t in TRANSPORTS if t != "ray"])
def test_the_replies_of_the_shards_land_in_the_replicas_weights(ray_local, transport, shards):
    """A push of two gradients (with two shards, each shard's part sent and its reply copied
    on a thread of its own): the reply's weights are the landing vector itself, and it holds
    every shard's range after both updates."""
    server = ServerHandle(30.0, server=dict(
        weights=np.zeros(SIZE + 1, np.float32), workers=1, bound=None, barrier=False, lr=0.5,
        momentum=0.0, batch_size=64, iterations=10**6, eval_every=10**6), allocation=dict(
        n_samples=64, workers=1, batch_size=64, mode="uniform", seed=0), shards=shards)
    landing = np.full(SIZE + 1, 7.0, np.float32)
    client = server_client(transport, server.actors, 0, 30.0, landing)
    try:
        clock = client.join(0).clock
        grads = [np.arange(SIZE + 1, dtype=np.float32), np.ones(SIZE + 1, np.float32)]
        reply = client.get(client.push(0, [Contribution(clock + i, 0, g, 64, 1.0)
                                           for i, g in enumerate(grads)]))
        assert reply.weights is landing and reply.version == 2
        assert np.array_equal(landing, -0.5 * (grads[0] + grads[1]))
    finally:
        client.close()
        server.kill()


SEVERAL_NODES = """
import hetsync
from hetsync.cluster.runtime import multi_node_session
with multi_node_session((1, 2, 2)) as nodes:
    s = hetsync.train(dataset="synthetic", synthetic_samples=1024, batch_size=32,
                      iterations=200, eval_every=50, workers=4, sync="ssp", staleness=2,
                      server_shards=2, progress=False).summary
print(nodes, s["worker_nodes"], s["iterations"], s["final_val_accuracy"])
"""


def test_the_data_plane_crosses_ray_nodes(tmp_path):
    """Several raylets on this machine joined as one cluster (as `bench paper` does): the
    workers on other nodes than the server's reach it over their pairs."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SEVERAL_NODES], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    nodes, worker_nodes, iterations, accuracy = done.stdout.split()[-4:]
    assert int(nodes) == 3 and int(worker_nodes) >= 2 and int(iterations) == 200
    assert float(accuracy) >= 0.9


class _NoPairServer:
    """Answers open_pair with an address where nothing listens."""

    def open_pair(self, worker, node, pid):
        import socket

        from hetsync.cluster.transport import PairAddress

        with socket.socket() as s:  # a port that was free a moment ago
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return PairAddress("127.0.0.1", port, "w0g1/", SIZE, 0)


def test_a_pair_that_cannot_connect_is_one_line(ray_local):
    from hetsync.cluster.transport import GlooServerClient

    actor = ray.remote(num_cpus=0)(_NoPairServer).remote()
    try:
        with pytest.raises(ClusterError, match=r"^worker 0 could not connect to the parameter "
                                               r"server at 127\.0\.0\.1:\d+: .*") as e:
            GlooServerClient([actor], 0, timeout_s=2.0)
        assert "\n" not in str(e.value)
    finally:
        ray.kill(actor)


def test_shared_frames_are_one_memory_for_both_ends(tmp_path):
    """What the server writes in its map the worker reads in its own, also once the file's
    name is gone."""
    from hetsync.cluster.transport import PairLink, SharedFrames
    from hetsync.core.wire import Reply

    path = str(tmp_path / f"frames-{os.getpid()}-{time.time_ns()}")  # names its doorbells
    server = SharedFrames(path, SIZE, 3, create=True)
    worker = SharedFrames(path, SIZE, 3, create=False)
    server.unlink()  # as once the worker has connected: both maps stay usable
    assert not os.path.exists(path)
    ends = [PairLink(None, rank, SIZE, 3, shared) for rank, shared in ((0, server), (1, worker))]
    weights = np.arange(SIZE, dtype=np.float32)
    ends[0].reply.write_reply(Reply(weights, np.ones(3, np.float32), 7, 5, 2, 6, 0.1, 0.0))
    got = ends[1].reply.read_reply()
    assert (got.version, got.min_clock, got.granted, got.clock) == (7, 5, 2, 6)
    np.testing.assert_array_equal(got.weights, weights)
    np.testing.assert_array_equal(got.buffers, np.ones(3, np.float32))
    ends[1].pushes[1].write_contribution(Contribution(4, 3, -weights, 64, 1.5), last=True)
    pushed, last = ends[0].pushes[1].read_contribution()
    assert last and pushed.clock == 4 and pushed.base_version == 3
    np.testing.assert_array_equal(pushed.payload, -weights)


def test_a_doorbell_wakes_its_waiter_and_notices_a_dead_or_silent_other_end(tmp_path):
    """A post wakes the wait (once per post); a wait whose other end's process is gone raises
    PeerGone within a slice, which the client reads as a lost peer; one past its bound raises
    a timeout. The semaphores, like the file, are the server's user's alone."""
    import subprocess
    import sys

    from hetsync.cluster.transport import (
        RING_SLICE_S,
        GlooServerClient,
        PairLink,
        PeerGone,
        SharedFrames,
        _lost,
    )
    from hetsync.core.wire import Frame

    path = str(tmp_path / f"frames-{os.getpid()}-{time.time_ns()}")  # names its doorbells
    server = SharedFrames(path, SIZE, 0, create=True)
    worker = SharedFrames(path, SIZE, 0, create=False)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(f"/dev/shm/sem.{os.path.basename(path)}.up").st_mode & 0o777 == 0o600
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)  # a process that has exited
    try:
        ends = [PairLink(None, 0, SIZE, 0, server, os.getpid(), timeout_s=0.3),
                PairLink(None, 1, SIZE, 0, worker, dead_pid, timeout_s=5.0)]
        ends[1].send(ends[1].pushes[0]).wait()
        assert ends[0].recv(ends[0].pushes[0]).wait()  # the worker's post
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="timed out after 0 s") as timeout:
            ends[0].recv(ends[0].pushes[0]).wait()  # no second post: the bound
        assert not _lost(timeout.value)
        with pytest.raises(PeerGone) as gone_error:
            ends[1].recv(ends[1].reply).wait()  # the other end's process is gone
        assert _lost(gone_error.value)
        assert time.monotonic() - t0 < 0.3 + 3 * RING_SLICE_S + 1.0
        # a pid that now names another process (it started later) is the other end gone
        ends[0].peer_started -= 1
        ends[1].send(ends[1].pushes[0]).wait()  # posted: no wait on the doorbell needed
        assert ends[0].recv(ends[0].pushes[0]).wait()
        with pytest.raises(PeerGone):
            ends[0].recv(ends[0].pushes[0]).wait()
        ends[0].peer_started += 1
        # a client closed without leaving (an error path) still tells the server's thread
        client = GlooServerClient.__new__(GlooServerClient)
        client.links, client.replies, client.pool = [ends[1]], [], None
        client.close()
        assert ends[0].recv(ends[0].pushes[0]).wait()
        assert ends[0].pushes[0].kind == Frame.BYE
    finally:
        server.unlink()
    assert not os.path.exists(f"/dev/shm/sem.{os.path.basename(path)}.up")


def test_a_shards_failure_is_raised_once_every_shards_copy_has_ended():
    """`_each_shard`: shard 0 works on the caller's thread, the others on the pool; an error
    in one is raised only after the others have finished with their frames."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from hetsync.cluster.transport import GlooServerClient

    client = GlooServerClient.__new__(GlooServerClient)
    client.links, client.pool = [None] * 3, ThreadPoolExecutor(2)
    done, release = [], threading.Event()

    def action(k):
        if k == 1:
            raise RuntimeError("Connection closed by peer")
        release.wait(5)  # shards 0 and 2 still copying when shard 1 fails
        done.append(k)
        return k

    try:
        threading.Timer(0.3, release.set).start()
        with pytest.raises(RuntimeError, match="closed by peer"):
            client._each_shard(action)
        assert sorted(done) == [0, 2]
        assert client._each_shard(lambda k: k * 10) == [0, 10, 20]
    finally:
        client.pool.shutdown()


def test_leftovers_of_a_dead_server_are_swept_and_a_live_ones_stay(tmp_path, monkeypatch):
    """A server killed between making a pair's frames and its worker's connect never unlinks
    them; the next server on the node removes the names whose creator no longer runs."""
    import subprocess
    import sys

    from hetsync.cluster import transport

    monkeypatch.setattr(transport, "SHARED_DIR", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = [f"hetsync-{int(gone.stdout)}-w0g1-ab12cd34", f"sem.hetsync-{int(gone.stdout)}-w0g1"
            "-ab12cd34.up"]
    kept = [f"hetsync-{os.getpid()}-w0g1-ab12cd34", "other-file"]
    for name in dead + kept:
        (tmp_path / name).write_bytes(b"")
    elsewhere = tmp_path.parent / f"{tmp_path.name}-target"
    elsewhere.write_bytes(b"x")
    link = f"hetsync-{int(gone.stdout)}-w1g1-00000000"  # a link: the link goes, not its target
    os.symlink(elsewhere, tmp_path / link)
    folder = f"hetsync-{int(gone.stdout)}-w2g1-00000000"  # not a pair's file: it stays
    (tmp_path / folder).mkdir()
    assert sorted(transport.sweep_leftovers()) == sorted([*dead, link])
    assert sorted(os.listdir(tmp_path)) == sorted([*kept, folder])
    assert elsewhere.read_bytes() == b"x"


def test_a_pair_on_one_node_shares_its_frames_and_leaves_no_file(ray_local):
    """The default transport on one node: the frames' file and its doorbells are gone from
    /dev/shm once the worker has connected, pushes still apply, and gloo-tcp makes no file
    at all."""
    from hetsync.cluster.transport import SHARED_DIR

    def files():  # the frames' files and their doorbells' semaphores (sem.NAME)
        return {f for f in os.listdir(SHARED_DIR) if f.startswith(("hetsync-", "sem.hetsync-"))}

    before = files()
    for transport in ("gloo", "gloo-tcp"):
        server = _bsp_server(30.0, workers=1)
        client = server_client(transport, server.actors, 0, 30.0)
        try:
            assert [link.shared is not None for link in client.links] == [transport == "gloo"]
            clock = client.join(0).clock
            reply = client.get(_push(client, 0, clock))
            np.testing.assert_allclose(reply.weights, np.full(SIZE, -0.01 * 1e-3, np.float32))
            assert files() == before
        finally:
            client.close()
            server.kill()


def test_without_shared_memory_a_pair_sends_whole_frames(monkeypatch):
    """A node whose shared memory cannot be had (no /dev/shm, or full) falls back to whole
    frames over gloo, with a warning."""
    from hetsync.cluster import transport

    monkeypatch.setattr(transport, "SHARED_DIR", "/nonexistent-hetsync")
    with pytest.warns(UserWarning, match="no shared memory for a pair"):
        assert transport.try_shared_frames("w0g1/", SIZE, 0) is None
