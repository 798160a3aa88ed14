"""Commands for text sessions: sample from a language model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from labcon.commands.base import Answer, Args, Command, CommandHost, command, need, number, whole
from labcon.commands.lex import fmt_path
from labcon.errors import CommandError


@command
@dataclass(frozen=True)
class Predict(Command):
    """Continue a prompt with a language model: n tokens sampled at a temperature."""

    name: ClassVar[str] = "predict"
    when: ClassVar[str] = "batch"  # on the training thread between batches, never during a forward
    usage: ClassVar[str] = 'predict "TEXT" [n=N] [temperature=T] [seed=S]'
    summary: ClassVar[str] = "generate text from a language model after the prompt"
    options: ClassVar[tuple[str, ...] | None] = ("n", "temperature", "seed")
    example: ClassVar[str] = 'predict "the film was" n=40 temperature=0.8'
    prompt: str = ""
    n: int = 40
    temperature: float = 0.8
    seed: int | None = None

    @property
    def text(self) -> str:
        s = f"predict {fmt_path(self.prompt)} n={self.n} temperature={self.temperature:g}"
        return s if self.seed is None else f"{s} seed={self.seed}"

    @classmethod
    def parse(cls, a: Args) -> Command:
        prompt = " ".join(a.positional(1, 64))
        opts = dict(a.allow(cls.options))
        n = whole(str(opts.get("n", 40)), "n", cls.name, lo=1)
        need(n <= 2000, f"n must be at most 2000, got {n}")
        temp = number(opts.get("temperature", 0.8), "temperature")
        need(isinstance(temp, float) and temp > 0, f"temperature must be a number > 0, got {temp}")
        seed = whole(str(opts["seed"]), "seed", cls.name, lo=0) if "seed" in opts else None
        return cls(prompt, n, float(temp), seed)  # type: ignore[arg-type]

    def apply(self, host: CommandHost) -> Answer:
        from labcon.nn.generate import detokenize, generate

        r = host.runner
        dls, model = r.dls, getattr(r.model, "module", r.model)
        block = getattr(dls, "block", None)
        if getattr(dls, "kind", None) != "text_lm" or not hasattr(model, "decoder"):
            raise CommandError('predict needs a language-model session ([data] kind = "text_lm")')
        prompt = block.tokenizer.tokenize_one(self.prompt)
        out = generate(model, dls.vocab, prompt, self.n, self.temperature, self.seed)
        text = detokenize([*prompt, *out])
        return Answer(text, {"prompt": self.prompt, "tokens": out})
