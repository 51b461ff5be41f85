"""Limits on one render of an editor's template: a deadline, checked at every step of a
loop and every call, attribute and operator the sandbox sees; and a budget of bytes the
template may write or build (with `~`, `+`, `*`, filters and methods).

`limited()` sets them for the renders made inside it; `LimitsExtension` and the tree
rewrite in `guard()` make a compiled editor template report to them. A render past a
limit stops with `RenderLimit`, whose message says which limit and how far it got.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes, pass_eval_context
from jinja2.ext import Extension
from jinja2.nodes import EvalContext
from jinja2.runtime import markup_join, str_join
from markupsafe import escape

SIZED = (str, bytes, list, tuple, dict)
"""Values whose length counts against the budget when a template builds or writes them."""


class RenderLimit(Exception):
    """An editor's template ran past its time or size limit."""


@dataclass(frozen=True)
class TemplateLimits:
    """How long one render of an editor's template may take, and how much it may write."""

    timeout_seconds: float = 2.0
    max_bytes: int = 2_000_000


class Budget:
    """What one render has left: time until `deadline`, and bytes."""

    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout_seconds
        self.bytes_left = limits.max_bytes

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimit(f"takes longer than {self.limits.timeout_seconds:g} s to render")

    def afford(self, size: int) -> None:
        """RenderLimit when `size` more bytes would not fit (checked before building)."""
        if size > self.bytes_left:
            raise RenderLimit(
                f"writes or builds more than {self.limits.max_bytes:,} bytes".replace(",", " ")
            )

    def spend(self, size: int) -> None:
        self.afford(size)
        self.bytes_left -= size


_current: ContextVar[Budget | None] = ContextVar("mailer_template_budget", default=None)


@contextmanager
def limited(limits: TemplateLimits) -> Iterator[Budget]:
    """Renders of editor templates inside this block share one Budget of `limits`."""
    budget = Budget(limits)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def tick() -> None:
    """RenderLimit when the current render is past its deadline."""
    budget = _current.get()
    if budget is not None:
        budget.tick()


def afford(size: int) -> None:
    """RenderLimit when the current render cannot build `size` more bytes."""
    budget = _current.get()
    if budget is not None:
        budget.afford(size)


def spend(value: Any) -> Any:
    """Count `value`'s length (when it has one) against the current render; returns it."""
    budget = _current.get()
    if budget is not None:
        budget.tick()
        if isinstance(value, SIZED):
            budget.spend(len(value))
    return value


def ticking(items: Iterable[Any]) -> Iterator[Any]:
    """`items`, checking the deadline before each."""
    for item in items:
        tick()
        yield item


class LimitsExtension(Extension):
    """What the rewritten tree of an editor's template calls (see `guard`)."""

    def steps(self, items: Iterable[Any]) -> Iterator[Any]:
        """A `{% for %}` loop's items, checking the deadline at each step."""
        return ticking(items)

    @pass_eval_context
    def written(self, eval_ctx: EvalContext, value: Any) -> Any:
        """A value as it is written out (escaped where autoescaping), counted by the
        sandbox's call as bytes written."""
        return escape(value) if eval_ctx.autoescape else str(value)

    def wrote(self, size: int) -> str:
        """Counts `size` bytes of the template's own text written out."""
        budget = _current.get()
        if budget is not None:
            budget.spend(size)
        return ""

    @pass_eval_context
    def joined(self, eval_ctx: EvalContext, *parts: Any) -> str:
        """`a ~ b ~ ...`, refused before it is built when it would not fit."""
        afford(sum(len(part) if isinstance(part, str) else len(str(part)) for part in parts))
        return markup_join(parts) if eval_ctx.autoescape else str_join(parts)


def guard(tree: nodes.Template) -> nodes.Template:
    """Rewrite an editor template's tree so that its loops check the deadline, and what
    it writes and joins with `~` counts against its budget."""
    identifier = LimitsExtension.identifier

    def call(name: str, *args: nodes.Node) -> nodes.Call:
        arguments = [arg for arg in args if isinstance(arg, nodes.Expr)]
        return nodes.Call(nodes.ExtensionAttribute(identifier, name), arguments, [], None, None)

    for loop in tree.find_all(nodes.For):
        loop.iter = call("steps", loop.iter)
    for concat in list(tree.find_all(nodes.Concat)):
        concat.nodes = [call("joined", *concat.nodes)]
    for output in tree.find_all(nodes.Output):
        text = sum(
            len(child.data) for child in output.nodes if isinstance(child, nodes.TemplateData)
        )
        children: list[nodes.Expr] = [
            child if isinstance(child, nodes.TemplateData) else call("written", child)
            for child in output.nodes
        ]
        if text:
            children.append(call("wrote", nodes.Const(text)))
        output.nodes = children
    return tree
