"""A tiny seeded run whose validation losses are compared with stored ones, so that a silent
numerical change (an update rule, a learning-rate schedule, what a snapshot holds) fails.
One worker keeps the run deterministic. After an intended change, write the new curve with
`HETSYNC_WRITE_REFERENCE=1 pytest tests/integration/test_reference_curve.py` and say why in
the commit."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

import hetsync

pytestmark = pytest.mark.ray
REFERENCE = Path(__file__).with_name("reference_loss_curve.json")
SETTINGS = dict(dataset="synthetic", synthetic_samples=512, batch_size=32, iterations=120,
                eval_every=20, workers=1, sync="ssp", staleness=3, lr=0.05, seed=0,
                progress=False)


def test_the_loss_curve_of_a_seeded_run_matches_the_stored_one(ray_local):
    res = hetsync.train(**SETTINGS)
    curve = [[r["iterations"], r["val_loss"]] for r in res.metrics if r["kind"] == "eval"]
    if os.environ.get("HETSYNC_WRITE_REFERENCE"):
        REFERENCE.write_text(json.dumps({"settings": SETTINGS, "curve": curve}, indent=1) + "\n")
    stored = json.loads(REFERENCE.read_text())
    assert stored["settings"] == SETTINGS
    assert [it for it, _ in curve] == [it for it, _ in stored["curve"]]
    np.testing.assert_allclose([v for _, v in curve], [v for _, v in stored["curve"]],
                               rtol=1e-4)
