"""The training logic as plain Python objects: clocks and the staleness gate, the parameter
server and its update rules, the worker loop, data allocation, and what travels between
them. Nothing here imports Ray: `hetsync.cluster` moves these objects between processes."""
