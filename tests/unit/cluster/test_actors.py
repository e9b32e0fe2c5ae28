"""The server actor's plain side, built without Ray: the parameter server and the allocator
it hosts read one membership."""

import numpy as np

from hetsync.cluster.actors import ServerActor


def test_the_clock_table_and_the_allocator_share_one_live_set():
    actor = ServerActor(timeout_s=1.0,
                        server=dict(weights=np.zeros(4, np.float32), workers=3, bound=2,
                                    barrier=False, lr=0.1, momentum=0.0, batch_size=10,
                                    iterations=100, eval_every=10),
                        allocation=dict(n_samples=300, workers=3, batch_size=10, mode="idpa",
                                        seed=0))
    assert actor.ps.consistency.members is actor.allocator.members
    actor.ps.leave(2)  # a worker that finished: no more clock, no more data share
    assert actor.allocator.next_chunk(0).batch_size == 15  # the global batch of 30, split by 2
    assert 2 not in actor.ps.status().live_workers
