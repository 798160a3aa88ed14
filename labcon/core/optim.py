"""One generic optimizer composed of small steppers, with SGD, Adam and LAMB as recipes.

`Optimizer` subclasses `torch.optim.Optimizer`, so param groups, `state_dict()`, `zero_grad()`,
GradScaler and DistributedDataParallel all work unchanged. Each stepper works on a whole param group
at once with `torch._foreach_*` kernels (one launch per op instead of one per parameter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from labcon.core.hypers import OPT_HYPERS, TORCH_NAMES, check_hypers

# A stepper gets (params, grads, states, group) and may return replacement grads for later steppers.
Stepper = Callable[[list[Tensor], list[Tensor], list[dict[str, Any]], dict[str, Any]], "list[Tensor] | None"]


def _buf(states: list[dict[str, Any]], key: str, like: list[Tensor]) -> list[Tensor]:
    out = []
    for st, t in zip(states, like, strict=True):
        if key not in st:
            st[key] = torch.zeros_like(t, memory_format=torch.preserve_format)
        out.append(st[key])
    return out


def _count(states: list[dict[str, Any]]) -> int:
    """Increment and return the step count (kept as a plain int per parameter: no device sync)."""
    for st in states:
        st["step"] = st.get("step", 0) + 1
    return states[0]["step"]


def l2_reg(ps: list[Tensor], grads: list[Tensor], states: list[dict], group: dict) -> list[Tensor] | None:
    """Classic L2 penalty: grad += wd * p (applied before the statistics, as torch.optim does)."""
    wd = group.get("wd", 0.0)
    if wd == 0 or group.get("decouple_wd", True):
        return None
    return torch._foreach_add(grads, ps, alpha=wd)


def weight_decay(ps: list[Tensor], grads: list[Tensor], states: list[dict], group: dict) -> None:
    """Decoupled weight decay: p *= 1 - lr * wd."""
    wd = group.get("wd", 0.0)
    if wd != 0 and group.get("decouple_wd", True):
        torch._foreach_mul_(ps, 1 - group["lr"] * wd)


def momentum_step(
    ps: list[Tensor], grads: list[Tensor], states: list[dict], group: dict
) -> list[Tensor] | None:
    """SGD momentum without dampening: buf = mom * buf + grad; the step then uses buf."""
    mom = group.get("mom", 0.0)
    if mom == 0:
        return None
    bufs = _buf(states, "grad_avg", ps)
    torch._foreach_mul_(bufs, mom)
    torch._foreach_add_(bufs, grads)
    return bufs


def sgd_step(ps: list[Tensor], grads: list[Tensor], states: list[dict], group: dict) -> None:
    """p -= lr * grad."""
    torch._foreach_add_(ps, grads, alpha=-group["lr"])


def _adam_direction(grads: list[Tensor], states: list[dict], group: dict) -> tuple[list[Tensor], float]:
    """Update the averages; return (m / (sqrt(v / debias2) + eps), 1 / debias1)."""
    mom, sqr_mom, eps = group["mom"], group["sqr_mom"], group["eps"]
    avg, sqr = _buf(states, "grad_avg", grads), _buf(states, "sqr_avg", grads)
    step = _count(states)
    torch._foreach_lerp_(avg, grads, 1 - mom)
    torch._foreach_mul_(sqr, sqr_mom)
    torch._foreach_addcmul_(sqr, grads, grads, value=1 - sqr_mom)
    debias1, debias2 = 1 - mom**step, 1 - sqr_mom**step
    denom = torch._foreach_sqrt(sqr)
    torch._foreach_div_(denom, debias2**0.5)
    torch._foreach_add_(denom, eps)
    return torch._foreach_div(avg, denom), 1 / debias1


def adam_step(ps: list[Tensor], grads: list[Tensor], states: list[dict], group: dict) -> None:
    """p -= lr / debias1 * avg / (sqrt(sqr / debias2) + eps)."""
    direction, scale = _adam_direction(grads, states, group)
    torch._foreach_add_(ps, direction, alpha=-group["lr"] * scale)


def lamb_step(ps: list[Tensor], grads: list[Tensor], states: list[dict], group: dict) -> None:
    """Adam direction + wd * p, scaled per tensor by the trust ratio min(||p|| / ||step||, 10).

    The course clamps the ratio, not the weight norm; a zero norm on either side gives a ratio of 1.
    """
    direction, scale = _adam_direction(grads, states, group)
    torch._foreach_mul_(direction, scale)
    if group.get("wd", 0.0):
        torch._foreach_add_(direction, ps, alpha=group["wd"])
    r1 = torch._foreach_norm(ps)
    r2 = torch._foreach_norm(direction)
    for p, d, n1, n2 in zip(ps, direction, r1, r2, strict=True):
        # torch.where keeps it on the device: no host sync per parameter. The division is guarded so
        # a zero step norm never makes an inf that where() would still evaluate.
        ratio = (n1 / torch.where(n2 > 0, n2, torch.ones_like(n2))).clamp(max=LAMB_MAX_TRUST)
        ratio = torch.where((n1 > 0) & (n2 > 0), ratio, torch.ones_like(n1))
        p.add_(d * ratio, alpha=-group["lr"])


LAMB_MAX_TRUST = 10.0


class Optimizer(torch.optim.Optimizer):
    """Generic optimizer: each step runs `steppers` in order over every param group."""

    def __init__(self, params: Any, steppers: Sequence[Stepper], **defaults: Any):
        if "lr" not in defaults or defaults["lr"] is None:
            raise ValueError("Optimizer needs an lr")
        # As torch.optim does: a bad value fails when the optimizer is built, not at the first step.
        check_hypers({k: v for k, v in defaults.items() if k in OPT_HYPERS}, allow_zero=True)
        groups = _as_groups(params)
        for g in groups:
            check_hypers({k: v for k, v in g.items() if k in OPT_HYPERS}, allow_zero=True)
        super().__init__(groups, defaults)
        self.steppers = list(steppers)
        # Params that stay trainable when the model is frozen (normalisation layers).
        self.keep_trainable: set[int] = set()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Apply every stepper to every param group that has gradients."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            if not ps:
                continue
            grads = [p.grad for p in ps]
            states = [self.state[p] for p in ps]
            for stepper in self.steppers:
                new = stepper(ps, grads, states, group)
                if new is not None:
                    grads = new
        return loss

    def freeze_to(self, n: int) -> None:
        """Freeze param groups before index n (negative counts from the end); norm layers stay trainable."""
        n = n % len(self.param_groups) if n < 0 else n
        for i, group in enumerate(self.param_groups):
            for p in group["params"]:
                p.requires_grad_(i >= n or id(p) in self.keep_trainable)

    def freeze(self) -> None:
        """Train only the last param group (and normalisation layers)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Train every param group."""
        self.freeze_to(0)

    def __repr__(self) -> str:
        names = ", ".join(getattr(s, "__name__", repr(s)) for s in self.steppers)
        return f"Optimizer({len(self.param_groups)} groups, steppers=[{names}])"


def _as_groups(params: Any) -> list[dict[str, Any]]:
    """Accept tensors, dicts, or a list of lists of tensors (one inner list per param group)."""
    params = list(params)
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    if all(isinstance(p, dict) for p in params):
        return params
    if all(isinstance(p, (list, tuple)) for p in params):
        return [{"params": list(g)} for g in params]
    return [{"params": params}]


def SGD(
    params: Iterable[Any], lr: float, mom: float = 0.0, wd: float = 0.0, decouple_wd: bool = True
) -> Optimizer:
    """SGD with optional momentum, decoupled weight decay or L2."""
    return Optimizer(
        params,
        [weight_decay, l2_reg, momentum_step, sgd_step],
        lr=lr,
        mom=mom,
        wd=wd,
        decouple_wd=decouple_wd,
    )


def Adam(
    params: Iterable[Any],
    lr: float,
    mom: float = 0.9,
    sqr_mom: float = 0.99,
    eps: float = 1e-5,
    wd: float = 0.0,
    decouple_wd: bool = True,
) -> Optimizer:
    """Adam (AdamW when decouple_wd) with debiased averages."""
    return Optimizer(
        params,
        [weight_decay, l2_reg, adam_step],
        lr=lr,
        mom=mom,
        sqr_mom=sqr_mom,
        eps=eps,
        wd=wd,
        decouple_wd=decouple_wd,
    )


def LAMB(
    params: Iterable[Any],
    lr: float,
    mom: float = 0.9,
    sqr_mom: float = 0.99,
    eps: float = 1e-6,
    wd: float = 0.0,
) -> Optimizer:
    """LAMB: Adam step plus wd * p, scaled per layer by the trust ratio."""
    return Optimizer(params, [lamb_step], lr=lr, mom=mom, sqr_mom=sqr_mom, eps=eps, wd=wd, decouple_wd=True)


OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {"sgd": SGD, "adam": Adam, "lamb": LAMB}

# The keys a param group may hold each hyper-parameter under: labcon's name, then torch.optim's.
HYPER_ALIASES: dict[str, tuple[str, ...]] = {
    ours: (ours, torch_name) for torch_name, ours in TORCH_NAMES.items()
}


def get_hyper(group: dict[str, Any], name: str) -> Any:
    """Read a hyper-parameter from a param group, accepting torch.optim's names (momentum, betas)."""
    for key in HYPER_ALIASES.get(name, (name,)):
        if key in group:
            return group[key]
    if name in ("mom", "sqr_mom") and "betas" in group:
        return group["betas"][0 if name == "mom" else 1]
    raise KeyError(name)


def set_hyper(group: dict[str, Any], name: str, value: Any) -> None:
    """Write a hyper-parameter into a param group (see get_hyper for the names understood).

    Not checked here: schedules write every batch and may legitimately reach 0; values are checked where
    they come in (check_hyper in the optimizer, config, CLI and commands).
    """
    for key in HYPER_ALIASES.get(name, (name,)):
        if key in group:
            group[key] = value
            return
    if name in ("mom", "sqr_mom") and "betas" in group:
        b = list(group["betas"])
        b[0 if name == "mom" else 1] = value
        group["betas"] = tuple(b)
        return
    group[name] = value
