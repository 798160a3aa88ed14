"""Swapping a live Runner's optimizer, keeping its param groups, hyper-parameters and matching state."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

from labcon.errors import CommandError

# Hyper-parameters whose meaning is the same in every optimizer: always carried over.
_UNIVERSAL = ("lr", "wd")


def _defaults(factory: Any) -> dict[str, Any]:
    sig = inspect.signature(factory)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p.default for p in sig.parameters.values() if p.kind in kinds and p.name != "params"}


def identify_optimizer(opt: torch.optim.Optimizer, factories: dict[str, Any]) -> str | None:
    """Which factory built `opt` (labcon optimizers compare their steppers), or None."""
    steppers = getattr(opt, "steppers", None)
    if steppers is None:
        return None
    probe = [torch.zeros(1)]
    for name, f in factories.items():
        try:
            if getattr(f(probe, lr=1.0), "steppers", None) == steppers:
                return name
        except (TypeError, ValueError):
            continue
    return None


def _state_keys(factory: Any, hypers: dict[str, Any]) -> set[str]:
    """Per-parameter state keys the new optimizer creates (found by one step on a probe tensor)."""
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.ones(2)
    probe = factory([p], **hypers)
    probe.step()
    return set(probe.state[p])


def swap_optimizer(runner: Any, name: str, **kwargs: Any) -> str:
    """Replace runner.opt by OPTIMIZERS[name] over the same param groups; returns the reply line.

    Hyper-parameters given in kwargs win; lr and wd are kept; others (mom, sqr_mom, eps) are kept
    only when both optimizers have the same default for them, i.e. the same meaning (Adam <-> LAMB
    keep mom, SGD -> Adam does not turn momentum off). Per-parameter state is carried where the new
    optimizer uses the same key (grad_avg, sqr_avg, step).
    """
    from labcon.commands.base import suggest
    from labcon.core.optim import OPTIMIZERS, get_hyper

    if name not in OPTIMIZERS:
        raise CommandError(suggest(name, sorted(OPTIMIZERS), "optimizer"))
    factory = OPTIMIZERS[name]
    new_defaults = _defaults(factory)
    bad = [k for k in kwargs if k not in new_defaults]
    if bad:
        valid = ", ".join(f"{k}=" for k in new_defaults)
        raise CommandError(f"optimizer '{name}' has no option {', '.join(map(repr, bad))}; valid: {valid}")
    old = runner.opt if runner.opt is not None else runner.create_opt()
    old_name = identify_optimizer(old, OPTIMIZERS)
    old_defaults = _defaults(OPTIMIZERS[old_name]) if old_name else {}
    groups = []
    for g in old.param_groups:
        ng: dict[str, Any] = {"params": g["params"]}
        for h in new_defaults:
            if h in kwargs:
                ng[h] = kwargs[h]
                continue
            try:
                cur = get_hyper(g, h)
            except KeyError:
                continue
            same_meaning = h in old_defaults and old_defaults[h] == new_defaults[h]
            if h in _UNIVERSAL or same_meaning:
                ng[h] = cur
        groups.append(ng)
    lr = groups[-1].get("lr", kwargs.get("lr"))
    new = factory(groups, **{**kwargs, "lr": lr})
    first = {k: v for k, v in new.param_groups[0].items() if k in new_defaults}
    keys = _state_keys(factory, first)
    carried: set[str] = set()
    for group in old.param_groups:
        for p in group["params"]:
            st = old.state.get(p)
            if not st:
                continue
            keep = {k: v for k, v in st.items() if k in keys}
            if keep:
                new.state[p] = keep
                carried |= keep.keys()
    if hasattr(old, "keep_trainable") and hasattr(new, "keep_trainable"):
        new.keep_trainable = old.keep_trainable
    runner.opt = new
    # Later fits that rebuild the optimizer use the new one too.
    runner.opt_func = functools.partial(factory, **kwargs) if kwargs else factory
    hy = new.param_groups[0]
    shown = " ".join(
        f"{k}={hy[k]:g}" for k in ("lr", "mom", "sqr_mom", "wd") if isinstance(hy.get(k), float | int)
    )
    carry = ", ".join(sorted(carried)) or "none"
    return f"optimizer {old_name or type(old).__name__} -> {name} ({shown}); carried state: {carry}"
