"""The foundations: every matmul variant equals torch's product; hand-written gradients equal autograd's;
`labcon bench matmul | backprop` print their tables and refuse bad sizes."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from labcon.cli import main
from labcon.foundations.backprop import (
    MSE,
    CrossEntropy,
    Linear,
    ReLU,
    autograd_grads,
    manual_grads,
    mlp,
    sample_data,
)
from labcon.foundations.matmul import VARIANTS, bench_matmul


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_matmul_variant_equals_torch(name: str) -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(5, 4, generator=g), torch.randn(4, 3, generator=g)
    torch.testing.assert_close(VARIANTS[name](a, b), a @ b)


@pytest.mark.parametrize("name", ["loops", "broadcast"])
def test_matmul_refuses_mismatched_sizes(name: str) -> None:
    with pytest.raises(ValueError, match="inner sizes differ"):
        VARIANTS[name](torch.ones(2, 3), torch.ones(4, 2))


def test_bench_matmul_skips_what_is_too_slow_with_a_note() -> None:
    rows = {r.name: r for r in bench_matmul(120, 120, 120, max_seconds=0.5, gpu=False)}
    assert rows["loops"].seconds is None and "skipped" in rows["loops"].note
    assert all(rows[n].seconds is not None for n in ("broadcast", "einsum", "torch"))
    assert min(r.speedup for r in rows.values() if r.speedup is not None) == pytest.approx(1.0)


@pytest.mark.parametrize("loss_name", ["mse", "cross_entropy"])
def test_hand_written_gradients_equal_autograd(loss_name: str) -> None:
    x, y_cls, y_reg = sample_data(32, 12, 5, seed=3)
    out = 1 if loss_name == "mse" else 5
    model = mlp([12, 16, 8, out], seed=3)
    loss = MSE() if loss_name == "mse" else CrossEntropy()
    y = y_reg if loss_name == "mse" else y_cls
    value, mine = manual_grads(model, loss, x, y)
    ref_value, ref = autograd_grads(model, loss, x, y)
    assert value == pytest.approx(ref_value, rel=1e-12)
    assert set(mine) == set(ref) == {"0.w", "0.b", "2.w", "2.b", "4.w", "4.b"}
    for k in ref:
        torch.testing.assert_close(mine[k], ref[k], rtol=1e-10, atol=1e-12)


def test_layers_match_torch_forward_and_input_gradient() -> None:
    x, y, _ = sample_data(16, 6, 4, seed=5)
    lin, relu = Linear(6, 4, generator=torch.Generator().manual_seed(0)), ReLU()
    ce = CrossEntropy()
    value = ce(relu(lin(x)), y)
    xr = x.clone().requires_grad_(True)
    ref = F.cross_entropy(torch.relu(xr @ lin.w + lin.b), y)
    ref.backward()
    assert float(value) == pytest.approx(float(ref.detach()), rel=1e-12)
    torch.testing.assert_close(lin.backward(relu.backward(ce.backward())), xr.grad)


def test_cli_bench_backprop_and_matmul(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "backprop", "--n", "32", "--sizes", "8", "6", "3"]) == 0
    out = capsys.readouterr().out
    assert "gradients equal autograd's" in out and "cross_entropy" in out and "ms per forward+backward" in out
    assert main(["bench", "matmul", "--size", "6", "5", "4", "--no-gpu"]) == 0
    out = capsys.readouterr().out
    for name in ("loops", "broadcast", "einsum", "torch"):
        assert f"\n{name} " in out
    assert "log10 speed-up" in out


def test_cli_bench_refuses_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "matmul", "--size", "3", "4"]) == 2
    assert "--size takes N or M K N" in capsys.readouterr().err
    assert main(["bench", "backprop", "--sizes", "8"]) == 2
    assert "at least two" in capsys.readouterr().err


def test_cli_bench_refuses_sizes_that_do_not_fit_in_memory_before_allocating(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A million-square product needs tens of terabytes: refused from the estimate, nothing is allocated.
    assert main(["bench", "matmul", "--size", "1000000", "--max-seconds", "1"]) == 2
    err = capsys.readouterr().err
    assert "matmul 1000000x1000000" in err and "TB of memory, more than the" in err
    assert "choose a smaller --size" in err and "Traceback" not in err
    assert main(["bench", "backprop", "--sizes", "1000000", "1000000", "--n", "1000000"]) == 2
    err = capsys.readouterr().err
    assert "of memory, more than the" in err and "choose smaller --sizes or --n" in err


def test_a_failed_allocation_is_one_line_and_other_runtime_errors_pass() -> None:
    from labcon.cli.bench import _out_of_memory
    from labcon.errors import LabconError

    with pytest.raises(LabconError, match=r"matmul: out of memory \(.*\); choose a smaller --size"):
        with _out_of_memory("matmul", "choose a smaller --size"):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes")
    with pytest.raises(RuntimeError, match="a bug"):
        with _out_of_memory("matmul", "choose a smaller --size"):
            raise RuntimeError("a bug")
