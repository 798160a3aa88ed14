"""torchrun as labcon starts it: the launcher, several nodes continuing one session, a hung peer."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch.distributed as dist

from labcon.cli.launch import launch, launch_command
from labcon.core import distributed as ld
from tests.helpers import free_port

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")


def test_launch_command_strips_nproc() -> None:
    cmd = launch_command(["run", "cfg.toml", "--nproc", "2", "--session", "x", "--nproc=2"], 2)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=2" in cmd
    assert cmd[cmd.index("-m", 3) :] == ["-m", "labcon", "run", "cfg.toml", "--session", "x"]
    with pytest.raises(ValueError, match="nproc"):
        launch_command([], 0)


def test_launch_runs_workers_under_torchrun(tmp_path: Path) -> None:
    probe = tmp_path / "ddp_probe.py"
    probe.write_text(
        textwrap.dedent(
            """
            import sys
            from pathlib import Path
            import torch
            from labcon.core import distributed as ld
            env = ld.init_distributed()
            got = ld.broadcast_texts(["set lr=0.01"] if env.rank == 0 else None)
            s = ld.all_reduce_sum(torch.tensor([float(env.rank + 1)]))
            Path(sys.argv[1], f"rank{env.rank}").write_text(f"{env.world_size} {got[0]} {s.item()}")
            ld.cleanup()
            """
        )
    )
    path = os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[1])])
    rc = launch([str(tmp_path), "--nproc", "2"], 2, module="ddp_probe", env={"PYTHONPATH": path})
    assert rc == 0
    assert [(tmp_path / f"rank{r}").read_text() for r in range(2)] == ["2 set lr=0.01 3.0"] * 2


def _labcon(home: Path, *args: str) -> subprocess.Popen:
    from tests.helpers import start_labcon

    return start_labcon(home, *args, env={"OMP_NUM_THREADS": "1"})


def test_two_nodes_continue_an_existing_session(tmp_path: Path) -> None:
    """Node 0 and node 1 (one process each, 127.0.0.1, gloo) resume a session a single process began:
    rank 1 restores the checkpoint too but never touches the journal, which it does not write."""
    from labcon.session.journal import Journal
    from tests.helpers import make_image_folder, tiny_config

    data = make_image_folder(tmp_path / "img", n_train=8, n_valid=4)
    cfg = tmp_path / "c.toml"
    cfg.write_text(tiny_config(data, "two", 1, telemetry=False))
    home = tmp_path / "s"
    first = _labcon(home, "run", str(cfg), "--no-socket", "--every", "0")
    assert first.wait(120) == 0, first.communicate()[0]
    where = ["--nnodes", "2", "--rdzv", f"127.0.0.1:{free_port()}", "--peer-timeout", "60"]
    nodes = [
        _labcon(
            home,
            "run",
            str(cfg),
            "--no-socket",
            "--every",
            "0",
            "--epochs",
            "1",
            *where,
            "--node-rank",
            str(k),
        )
        for k in (0, 1)
    ]
    outs = [n.communicate(timeout=240)[0] for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], "\n---\n".join(outs)
    assert "fit done" in outs[0] and "Traceback" not in outs[0] + outs[1]
    with Journal(home / "journal.db") as j:
        run = j.resolve_run("two")
        # Epoch 1 by the two-node job: a new fit, so its own run, continuing the single process's run.
        assert [e["epoch"] for e in j.epochs(run)] == [1]
        assert [e["epoch"] for rid in j.lineage(run) for e in j.epochs(rid)] == [0, 1]


def test_launch_command_for_a_node_of_a_multi_node_job() -> None:
    cmd = launch_command(
        ["run", "c.toml", "--nnodes", "2", "--node-rank=1", "--rdzv", "10.0.0.1:29500"],
        1,
        nnodes=2,
        node_rank=1,
        rdzv="10.0.0.1:29500",
    )
    assert "--standalone" not in cmd
    assert {"--nnodes=2", "--node-rank=1", "--master-addr=10.0.0.1", "--master-port=29500"} <= set(cmd)
    assert cmd[cmd.index("-m", 3) :] == ["-m", "labcon", "run", "c.toml"]
    with pytest.raises(ValueError, match="HOST:PORT"):
        launch_command([], 1, nnodes=2, node_rank=0)
    with pytest.raises(ValueError, match="--node-rank 2 needs --nnodes 3"):
        launch_command([], 1, nnodes=2, node_rank=2, rdzv="h:1")


def test_lost_peer_is_recognised_through_callback_errors() -> None:
    from labcon.core.events import CallbackError

    gloo = RuntimeError("[../gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:49321")
    assert ld.lost_peer(CallbackError("distributed", "before_fit", gloo))
    assert ld.lost_peer(RuntimeError("[gloo] Timed out waiting 5000ms for recv operation to complete"))
    assert not ld.lost_peer(ValueError("bad shape"))


def _descendants(pid: int) -> list[int]:
    """Child processes of `pid`, recursively (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker process through /proc")
def test_a_hung_peer_is_reported_and_the_run_stops_with_a_checkpoint(tmp_path: Path) -> None:
    """SIGSTOP node 1 mid-fit: node 0 reports the lost peer in one line within --peer-timeout and checkpoints."""
    import signal
    import time

    from tests.helpers import make_image_folder, tiny_config

    data = make_image_folder(tmp_path / "img", n_train=16, n_valid=4)
    cfg = tmp_path / "c.toml"
    cfg.write_text(tiny_config(data, "hang", 200, telemetry=False))
    home = tmp_path / "s"
    where = ["--nnodes", "2", "--rdzv", f"127.0.0.1:{free_port()}", "--peer-timeout", "4"]
    args = ["run", str(cfg), "--no-socket", "--every", "0", *where]
    node0 = _labcon(home, *args, "--node-rank", "0")
    repo = Path(__file__).resolve().parents[1]
    node1 = subprocess.Popen(
        [sys.executable, "-m", "labcon", "--sessions-dir", str(home), *args, "--node-rank", "1"],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        lines = []
        for line in node0.stdout:
            lines.append(line)
            if line.startswith("epoch 2 "):
                for pid in [node1.pid, *_descendants(node1.pid)]:  # torchrun's agent and its worker
                    os.kill(pid, signal.SIGSTOP)
                break
        stopped = time.monotonic()
        rest = node0.communicate(timeout=120)[0]
        took = time.monotonic() - stopped
    finally:
        for pid in [*_descendants(node1.pid), node1.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        node1.wait()
    assert node0.returncode != 0
    lost = [x for x in rest.splitlines() if "lost a peer" in x]
    assert lost and "did not answer within 4 s" in lost[0], "".join(lines) + rest
    assert took < 60
    assert (home / "hang" / "checkpoints").is_dir()
