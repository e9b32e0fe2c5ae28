"""Models with buffers: batch norm's running statistics reach the server, the evaluation and
the saved model, by the rule of core/wire.py, so that the accuracy hetsync reports is the
accuracy of the model it returns."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import hetsync
from hetsync.core.wire import load_into, params_to_vector
from hetsync.data import ArrayData, load_synthetic
from hetsync.models import build_model
from hetsync.run.evaluation import evaluate

pytestmark = pytest.mark.ray


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 7 * 7, 10))

    def forward(self, x):
        return self.net(x)


class Shifted(Dataset):
    """Synthetic images moved far from mean 0 and scale 1: x * 4 + 10."""

    def __init__(self, data: ArrayData):
        self.x = torch.from_numpy(data.x * 4 + 10)
        self.y = data.y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


@pytest.mark.parametrize("settings", [dict(sync="bsp"),
                                      dict(sync="ssp", update="agwu", local_steps=4, lr=0.1)])
def test_reported_accuracy_is_the_returned_models_and_uses_the_trained_statistics(
        ray_local, tmp_path, settings):
    train, val = load_synthetic(1024, seed=0)
    res = hetsync.train(model=BNNet, dataset=Shifted(train), val_dataset=Shifted(val),
                        workers=2, iterations=240, batch_size=32, eval_every=80,
                        progress=False, out=str(tmp_path), **settings)
    shifted_val = ArrayData(val.x * 4 + 10, val.y)
    reported = res.summary["final_val_accuracy"]
    assert evaluate(res.model, shifted_val)[1] == reported
    saved = build_model(BNNet, 1)
    saved.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    assert evaluate(saved, shifted_val)[1] == reported
    assert int(saved.net[1].num_batches_tracked) > 0  # the trained statistics were saved
    initial = build_model(BNNet, 0)  # the trained weights with the initial statistics
    load_into(initial, params_to_vector(res.model))
    with_initial = evaluate(initial, shifted_val)[1]
    assert reported >= 0.9 and reported - with_initial >= 0.3, (reported, with_initial)
    assert np.isfinite(res.summary["final_val_loss"])
