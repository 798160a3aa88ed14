"""Speed switches: channels-last and torch.compile as callbacks and [train] keys; Telemetry under a compiled
model (no recompiles after the first sampled batches, same module paths and state_dict keys); the graph-break
report of labcon's own callbacks."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters
from torch.nn import functional as F

from labcon.core.callbacks.speed import ChannelsLast, Compile, graph_breaks
from labcon.core.events import Callback
from labcon.core.runner import Runner
from labcon.core.telemetry import Telemetry
from labcon.data.loaders import DataLoaders
from labcon.nn.models import simple_cnn
from labcon.session.config import parse_config


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a busy 2-core box: one thread avoids hand-off stalls."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _runner(cbs, n: int = 8) -> Runner:
    g = torch.Generator().manual_seed(0)
    b = [(torch.randn(4, 1, 16, 16, generator=g), torch.randint(0, 10, (4,), generator=g)) for _ in range(n)]
    torch.manual_seed(0)
    model = simple_cnn(1, 10, channels=(8, 16))
    return Runner(model, DataLoaders(b, b[:1]), loss_func=F.cross_entropy, cbs=cbs, device="cpu")


def test_channels_last_model_and_batches_same_numbers() -> None:
    seen: list[bool] = []

    class Look(Callback):
        order = 0

        def before_batch(self) -> None:
            seen.append(self.runner.xb.is_contiguous(memory_format=torch.channels_last))

    fast = _runner([ChannelsLast(), Look()])
    fast.fit(1)
    plain = _runner([])
    plain.fit(1)
    assert seen and all(seen)
    conv = fast.model[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        torch.tensor(fast.recorder.losses), torch.tensor(plain.recorder.losses), rtol=1e-4, atol=1e-5
    )


def test_compiled_model_with_telemetry_reaches_a_steady_state() -> None:
    counters.clear()
    tel = Telemetry(every=4, sample_every=2)
    r = _runner([tel, Compile(backend="eager")])
    keys = list(r.model.state_dict())
    r.fit(1)
    frames = counters["frames"]["total"]
    r.fit(1)
    assert counters["frames"]["total"] == frames  # no recompile on later sampled batches
    assert not any("recompile" in k.lower() for k in counters["unimplemented"])
    assert list(r.model.state_dict()) == keys  # compiled in place: same paths, checkpoints unchanged
    snap = tel.snapshot()
    assert snap.n_reports >= 4 and all(
        not torch.isnan(torch.tensor(snap.latest[p].mean)) for p in snap.layers
    )


def test_compile_captures_the_whole_forward_in_one_graph() -> None:
    graphs: list[torch.fx.GraphModule] = []

    def backend(gm: torch.fx.GraphModule, _inputs: list) -> object:
        graphs.append(gm)
        return gm.forward

    r = _runner([Compile(backend=backend)])
    keys = list(r.model.state_dict())
    r.fit(1)  # training, then validation under no_grad: one graph each
    assert len(graphs) == 2
    for gm in graphs:  # the convs, norms and the head are in the graph, not run eagerly around it
        code = gm.code
        assert code.count("conv2d") == 2 and "batch_norm" in code and "linear" in code, code
    assert list(r.model.state_dict()) == keys
    plain = _runner([])
    plain.fit(1)
    torch.testing.assert_close(
        torch.tensor(r.recorder.losses), torch.tensor(plain.recorder.losses), rtol=1e-4, atol=1e-5
    )


def test_graph_breaks_of_labcons_callbacks() -> None:
    tel = Telemetry()
    r = _runner([tel])
    before = {k: v.clone() for k, v in r.model.state_dict().items()}
    res = graph_breaks(r)
    assert res["hooks attached"]["hooks"] == len(tel.layers) > 0
    assert res["hooks attached"]["breaks"] == 0 and res["no hooks"]["breaks"] == 0
    assert (r.epoch, r.train_iter) == (0, 0) and r.recorder.losses == []
    for k, v in r.model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_config_keys_install_the_switches() -> None:
    from labcon.session.build import build_callbacks

    cfg = parse_config("[train]\nchannels_last = true\ncompile = true\n", source="<test>")
    names = [c.name for c in build_callbacks(cfg, torch.device("cpu"))]
    assert "channels_last" in names and "compile" in names
    with pytest.raises(Exception, match="compile"):
        parse_config('[train]\ncompile = "yes"\n', source="<test>")


def test_a_hook_added_or_removed_by_command_reaches_a_compiled_model() -> None:
    """Dynamo does not guard on module hooks: without a retrace a `hook add` on a compiled model never ran (and a
    removed hook kept running inside the graph). The command's reply says the model is traced again."""
    from types import SimpleNamespace

    from labcon.commands.cmd_watch import HookAdd, HookRm

    r = _runner([Compile(backend="eager")])
    r.fit(1)  # compiled and traced without the hook
    host = SimpleNamespace(runner=r)
    xb = torch.randn(4, 1, 16, 16)
    reply = HookAdd("0.0").apply(host)  # type: ignore[arg-type]
    assert "traced again" in reply, reply
    (hook,) = [h for h in r.hooks._hooks.values() if h.path == "0.0"]
    with torch.no_grad():
        r.model(xb)
    assert hook.fn.calls == 1  # the hook runs inside the compiled model
    assert "traced again" in HookRm(hook.id).apply(host)  # type: ignore[arg-type]
    with torch.no_grad():
        r.model(xb)
    assert hook.fn.calls == 1  # and stops when removed
    plain = _runner([])
    assert "traced" not in HookAdd("0.0").apply(SimpleNamespace(runner=plain))  # type: ignore[arg-type]
