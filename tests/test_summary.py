"""model_summary against hand-computed shapes, parameter counts and multiply-adds."""

from __future__ import annotations

import torch
from torch import nn

from labcon.core.summary import format_summary, model_summary, module_stats


def test_model_summary_shapes_params_macs() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    model.train()
    rows = model_summary(model, torch.randn(2, 3, 16, 16))
    assert [r.out_shape for r in rows] == [
        (2, 8, 8, 8),
        (2, 8, 8, 8),
        (2, 8, 8, 8),
        (2, 8, 1, 1),
        (2, 8),
        (2, 4),
    ]
    assert [r.params for r in rows] == [216, 16, 0, 0, 0, 36]
    assert rows[0].macs == 2 * 8 * 8 * 8 * 27 and rows[-1].macs == 2 * 4 * 8
    assert model.training  # mode restored
    model[0].weight.requires_grad_(False)
    text = format_summary(model_summary(model, torch.randn(2, 3, 16, 16)), model, 2)
    assert "(frozen)" in text and "268 params (52 trainable)" in text


def test_summaries_skip_a_layer_whose_output_is_not_a_tensor() -> None:
    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> None:  # a side-effect layer (a logger, a counter)
            return None

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.probe, self.lin = Probe(), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.probe(x)
            return self.lin(x)

    xb = torch.randn(3, 4)
    assert [r.path for r in model_summary(Net(), xb)] == ["lin"]
    stats = {r.path: r for r in module_stats(Net(), xb)}
    assert stats["probe"].out_shape == () and stats["lin"].out_shape == (3, 2) and stats[""].macs == 3 * 2 * 4
