"""In-process stand-ins for the Ray clients: the worker loop's interfaces over the plain
objects the server actor hosts, in one thread (nothing can wait: a wait that is not already
over fails the test)."""


class LocalServerClient:
    """The server client interface over a plain ParameterServer: the same protocol methods
    the actor calls."""

    def __init__(self, ps):
        self.ps = ps

    def join(self, worker):
        return self.ps.join(worker)

    def _settle(self, awaiting):
        assert awaiting.ready(), awaiting.blocker()
        return awaiting.reply()

    def push(self, worker, contributions):
        # copies: the worker reuses its gradient buffer, where Ray would have sent the bytes
        return self._settle(self.ps.push(worker, [c._replace(payload=c.payload.copy())
                                                  for c in contributions]))

    def wait_until_allowed(self, worker, clock):
        return self._settle(self.ps.wait_until_allowed(worker, clock))

    def get(self, handle):
        return handle

    def leave(self, worker):
        self.ps.leave(worker)


class LocalAllocatorClient:
    def __init__(self, allocator):
        self.allocator = allocator

    def next_chunk(self, worker, samples, seconds, timed):
        self.allocator.report(worker, samples, seconds, timed)
        return self.allocator.next_chunk(worker)

    def give_back(self, worker, indices, epoch):
        self.allocator.give_back(worker, indices, epoch)

    def get(self, handle):
        return handle
