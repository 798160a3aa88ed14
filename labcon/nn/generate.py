"""Text generation from a language model: feed the prompt, then sample one token at a time."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from labcon.data.text_tokenize import BOS, EOS, PAD, TK_MAJ, TK_UP
from labcon.data.text_vocab import Vocab


def detokenize(tokens: Sequence[str]) -> str:
    """Tokens back to readable text: xxmaj/xxup re-capitalise, xxbos/xxeos/xxpad dropped."""
    out: list[str] = []
    case = None
    for t in tokens:
        if t in (TK_MAJ, TK_UP):
            case = t
            continue
        if t in (BOS, EOS, PAD):
            continue
        w = t.capitalize() if case == TK_MAJ else t.upper() if case == TK_UP else t
        case = None
        glue = out and (
            w in (".", ",", "!", "?", ";", ":", ")", "'s", "n't")
            or w.startswith("'")
            or out[-1] in ("(", "\n")
        )
        out.append(w if glue or not out else " " + w)
    return "".join(out).strip()


@torch.no_grad()
def generate(
    model: nn.Module,
    vocab: Vocab,
    prompt_tokens: Sequence[str],
    n: int = 40,
    temperature: float = 0.8,
    seed: int | None = None,
) -> list[str]:
    """`n` sampled tokens after the prompt; the model's mode and carried hidden state are restored after."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    enc = model.encoder
    was_training, saved = model.training, enc.hidden
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(seed)
    else:
        gen.seed()
    toks = [t for t in prompt_tokens if t != EOS]
    banned = torch.tensor([vocab.unk, vocab.pad], device=device)
    model.eval()
    enc.reset()
    out: list[str] = []
    try:
        x = torch.tensor([vocab.numericalize(toks).tolist()], device=device)
        for _ in range(n):
            logits = model(x)[0, -1].float() / temperature
            logits[banned] = float("-inf")
            nxt = int(torch.multinomial(logits.softmax(-1).cpu(), 1, generator=gen))
            out.append(vocab.itos[nxt])
            x = torch.tensor([[nxt]], device=device)
    finally:
        enc.hidden = saved
        model.train(was_training)
    return out
