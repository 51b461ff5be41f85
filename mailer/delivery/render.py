"""Email templates (Jinja2): the project's templates/emails/, overridable by a config path.

Editor-supplied templates are rendered in Jinja2's sandbox. Bodies are rendered once per
send; the parts that differ per recipient are left as markers (`RECIPIENT`) and filled
in per message by `fill`, a plain string replacement.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import css_inline
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    nodes,
    select_autoescape,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from markupsafe import escape

from mailer.delivery import render_limits
from mailer.delivery.render_limits import LimitsExtension, TemplateLimits
from mailer.delivery.template_values import sample_context
from mailer.errors import Invalid

log = logging.getLogger(__name__)


class TemplateProblem(Invalid):
    """An editor's template does not compile or render (syntax, sandbox violation)."""

    def __init__(self, message: str) -> None:
        super().__init__("template", message)


class _RecipientMarkers:
    """What templates see as `recipient`: markers filled in per message."""

    unsubscribe_url = "@@mailer:unsubscribe_url@@"
    name = "@@mailer:name@@"
    email = "@@mailer:email@@"
    greeting_name = "@@mailer:greeting_name@@"
    """The name after a space, or nothing: `Hello{{ recipient.greeting_name }},`."""


RECIPIENT = _RecipientMarkers()
MARKER_PATTERN = re.compile(r"@@mailer:(unsubscribe_url|name|email|greeting_name)@@")
MARKERS = {
    "unsubscribe_url": RECIPIENT.unsubscribe_url,
    "name": RECIPIENT.name,
    "email": RECIPIENT.email,
    "greeting_name": RECIPIENT.greeting_name,
}


def recipient_values(unsubscribe_url: str, name: str, email: str) -> dict[str, str]:
    """One recipient's values for the markers."""
    return {
        "unsubscribe_url": unsubscribe_url,
        "name": name,
        "email": email,
        "greeting_name": f" {name}" if name else "",
    }


def fill(rendered: str, values: dict[str, str]) -> str:
    """Put one recipient's values where the markers are."""
    values = recipient_values(
        values.get("unsubscribe_url", ""), values.get("name", ""), values.get("email", "")
    )
    for field, marker in MARKERS.items():
        if marker in rendered:
            rendered = rendered.replace(marker, values.get(field, ""))
    return rendered


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


MAX_BUILT_SIZE = 100_000
"""The longest string or list an editor's template may build: by `*`, by a width or count
given to a filter or string method (`center`, `indent`, `slice`, `ljust`, ...), or by a
width in a format (`'%9999999s' % x`, `'{:>9999999}'.format(x)`); and `**` is kept to
exponents up to 64 and results up to 4096 bits. So a template cannot make the server build
huge values."""

SIZED_FILTERS = frozenset({"center", "indent", "slice", "batch", "wordwrap", "truncate"})
"""Filters whose number arguments are widths or counts of what they build."""
SIZED_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
"""String methods whose number arguments are widths."""
PERCENT_WIDTHS = re.compile(r"%[#0 +-]*(\d*)(?:\.(\d*))?")
FORMAT_WIDTHS = re.compile(r"\{[^{}]*:([^{}]*)\}")
PERCENT_STAR = re.compile(r"%[#0 +-]*\*|%[#0 +-]*\d*\.\*")
NESTED_WIDTH = re.compile(r"\{[^{}]*:[^{}]*\{")


def _check_sizes(values: Any) -> None:
    """SecurityError when a number among `values` is past MAX_BUILT_SIZE."""
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_BUILT_SIZE:
            raise SecurityError("a width or count in the template is too large")


def _check_format_widths(pattern: re.Pattern[str], text: str) -> None:
    """SecurityError when a width or precision `pattern` finds in `text` is too large."""
    for spec in pattern.findall(text):
        parts = spec if isinstance(spec, tuple) else (spec,)
        numbers = [int(n) for part in parts for n in re.findall(r"\d+", part)]
        _check_sizes(numbers)


MAX_INT_BITS = 4096
"""The largest integer a template may build, in bits."""


class EditorSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with what could build huge values checked before it
    runs: `*`, `**`, `%` and `+` (never folded at compile time), sized filters, string
    methods and format widths; and every loop step, call, attribute, operator and filter
    reporting to the render's limits (`render_limits`): its deadline and its budget of
    bytes written or built."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    intercepted_unops = frozenset({"-", "+"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, extensions=[LimitsExtension], **kwargs)
        for name in SIZED_FILTERS & set(self.filters):
            self.filters[name] = _checked(self.filters[name])
        self.filters["format"] = _checked_format(self.filters["format"])
        for name, function in self.filters.items():
            self.filters[name] = _charged(name, function)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return render_limits.guard(super()._parse(source, name, filename))

    def getattr(self, obj: Any, attribute: str) -> Any:
        render_limits.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        render_limits.tick()
        return super().getitem(obj, argument)

    def call_unop(self, context: Any, operator: str, arg: Any) -> Any:
        render_limits.tick()
        return super().call_unop(context, operator, arg)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        render_limits.tick()
        sequences = (str, list, tuple, bytes)
        if operator == "+" and isinstance(left, sequences) and isinstance(right, sequences):
            render_limits.afford(len(left) + len(right))
        whole = _whole(left) and _whole(right)
        if operator == "*" and whole and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError("the value would be too large")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                sized = isinstance(sequence, str | list | tuple) and isinstance(times, int)
                if sized and len(sequence) * times > MAX_BUILT_SIZE:
                    raise SecurityError("the value would be too large")
        if operator == "**":
            if not isinstance(right, int | float) or right > 64:
                raise SecurityError("the exponent is too large")
            if isinstance(left, int) and left.bit_length() * right > 4096:
                raise SecurityError("the value would be too large")
        if operator == "%" and isinstance(left, str):
            _check_percent_format(left, right if isinstance(right, tuple) else (right,))
        return render_limits.spend(super().call_binop(context, operator, left, right))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        render_limits.tick()
        owner = getattr(obj, "__self__", None)
        method = getattr(obj, "__name__", "")
        if isinstance(owner, str | bytes):
            if method in SIZED_METHODS:
                _check_sizes([*args, *kwargs.values()])
            if method == "join" and args:
                args = (list(args[0]), *args[1:])
            render_limits.afford(_method_result_size(owner, method, args, kwargs))
        if obj is generate_lorem_ipsum:
            render_limits.afford(_lorem_ipsum_size(*args, **kwargs))
        return render_limits.spend(super().call(context, obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Any:
        """`str.format` and `format_map`, with the widths in the format checked; a width
        taken from the arguments (`{0:{1}}`) has the arguments checked too."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__
        _check_format_widths(FORMAT_WIDTHS, text)
        if not NESTED_WIDTH.search(text):
            return wrapped

        def checked(*args: Any, **kwargs: Any) -> str:
            mappings = [arg for arg in args if isinstance(arg, dict)]
            values = [value for mapping in mappings for value in mapping.values()]
            _check_sizes([*args, *kwargs.values(), *values])
            return str(wrapped(*args, **kwargs))

        return checked


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _method_result_size(
    owner: str | bytes, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> int:
    """How long the string a method of `owner` would build may be, for the methods whose
    result can be far longer than the string and its arguments: replace, join, translate,
    expandtabs. 0 for the others (checked by their widths or cheap)."""
    if method == "replace" and len(args) >= 2:
        return _replaced_size(owner, args[0], args[1], args[2] if len(args) > 2 else -1)
    if method == "join" and args:
        parts = args[0]
        size = sum(len(part) for part in parts if isinstance(part, str | bytes))
        return size + max(len(parts) - 1, 0) * len(owner)
    if method == "translate" and args and isinstance(args[0], dict):
        longest = max(
            (len(value) for value in args[0].values() if isinstance(value, str | bytes)),
            default=1,
        )
        return len(owner) * max(longest, 1)
    if method == "expandtabs":
        width = args[0] if args else kwargs.get("tabsize", 8)
        tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
        return len(owner) + tabs * (width if _whole(width) else 8)
    return 0


def _replaced_size(text: Any, old: Any, new: Any, count: Any = -1) -> int:
    """The length of `text` with `old` replaced by `new` (`count` times at most)."""
    if not (isinstance(text, str | bytes) and isinstance(old, type(text))):
        return 0
    old = cast(Any, old)
    if not isinstance(new, type(text)) or len(new) <= len(old):
        return len(text)
    times = text.count(old) if old else len(text) + 1
    if _whole(count) and count >= 0:
        times = min(times, count)
    return len(text) + times * (len(new) - len(old))


def _lorem_ipsum_size(n: Any = 5, html: Any = True, min: Any = 20, max: Any = 100, **_: Any) -> int:
    """An upper bound of the length of lipsum(n, html, min, max): about 12 bytes a word."""
    if not (_whole(n) and _whole(max)):
        return 0
    return n * max * 12


def _charged(name: str, function: Any) -> Any:
    """The filter, with the deadline checked when it is called and what it builds counted
    against the render's budget (the steps of a lazy result checked as they are taken);
    `replace`, `join` and `indent` refused before they build more than fits."""

    @functools.wraps(function)
    def charged(*args: Any, **kwargs: Any) -> Any:
        render_limits.tick()
        skip = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0
        value, rest = (args[skip], args[skip + 1 :]) if len(args) > skip else (None, ())
        if name == "replace" and len(rest) >= 2:
            render_limits.afford(_replaced_size(str(value), str(rest[0]), str(rest[1])))
        if name == "join" and value is not None:
            value = list(value)
            args = (*args[:skip], value, *rest)
            joiner = rest[0] if rest else kwargs.get("d", "")
            render_limits.afford(
                sum(len(str(item)) for item in value) + len(value) * len(str(joiner))
            )
        if name == "indent" and isinstance(value, str):
            width = rest[0] if rest else kwargs.get("width", 4)
            if isinstance(width, str):
                render_limits.afford(len(value) + (value.count("\n") + 1) * len(width))
        result = function(*args, **kwargs)
        if isinstance(result, Iterator):
            return render_limits.ticking(result)
        return render_limits.spend(result)

    return charged


def _check_percent_format(text: str, values: tuple[Any, ...]) -> None:
    """The widths in a %-format, and its arguments when a width is one of them (`%*d`)."""
    _check_format_widths(PERCENT_WIDTHS, text)
    if PERCENT_STAR.search(text):
        _check_sizes(values)


def _checked_format(function: Any) -> Any:
    """The `format` filter (`"%s"|format(x)`), with its format checked like `%`."""

    @functools.wraps(function)
    def checked(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            _check_percent_format(value, args)
        return function(value, *args, **kwargs)

    return checked


def _checked(function: Any) -> Any:
    """The filter, refusing number arguments past MAX_BUILT_SIZE (its first argument, the
    value filtered, is not checked)."""

    @functools.wraps(function)
    def sized(*args: Any, **kwargs: Any) -> Any:
        skip = 2 if getattr(function, "jinja_pass_arg", None) is not None else 1
        _check_sizes([*args[skip:], *kwargs.values()])
        return function(*args, **kwargs)

    return sized


class MailRenderer:
    """Renders a named mail (`<name>.subject.txt`, `<name>.txt`, `<name>.html`)."""

    def __init__(self, template_dirs: list[Path], limits: TemplateLimits | None = None) -> None:
        self.limits = limits or TemplateLimits()
        """How long a render of an editor's template may take and how much it may write."""
        self._env = Environment(
            loader=FileSystemLoader([str(d) for d in template_dirs]),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        # An editor's <link rel="stylesheet"> is never fetched: the server would make a
        # request for whoever writes a template, to any address.
        self._inliner = css_inline.CSSInliner(
            keep_style_tags=False, keep_at_rules=True, load_remote_stylesheets=False
        )

        self._sandbox = EditorSandbox(
            autoescape=False, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True
        )
        self._sandbox_html = EditorSandbox(
            autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True
        )

    def render(
        self, name: str, overrides: dict[str, str] | None = None, **context: Any
    ) -> RenderedMail:
        """Render `name`; `overrides` maps "subject", "html" or "text" to an editor's
        template source, rendered in the sandbox instead of the file, all three within
        one time limit and one budget of bytes (`limits`)."""
        overrides = overrides or {}
        parts = {}
        with render_limits.limited(self.limits):
            for part, suffix in (("subject", "subject.txt"), ("text", "txt"), ("html", "html")):
                source = overrides.get(part, "")
                if source.strip():
                    env = self._sandbox_html if part == "html" else self._sandbox
                    try:
                        parts[part] = env.from_string(source).render(**context)
                    except Exception as exc:  # any failure of an editor's template is theirs
                        raise TemplateProblem(f"{part} template: {exc}") from exc
                else:
                    parts[part] = self._env.get_template(f"{name}.{suffix}").render(**context)
                if part != "subject":
                    parts[part] = self._with_footer(name, suffix, parts[part], context)
        return RenderedMail(
            subject=" ".join(parts["subject"].split()),
            text=parts["text"].strip() + "\n",
            html=self._inliner.inline(parts["html"]),
        )

    def check_limits(self, name: str, overrides: dict[str, str], **context: Any) -> None:
        """TemplateProblem when the editor's templates in `overrides`, rendered with
        `context` (sample values), run past their time or size limits. Other failures are
        left to the preview, which shows them with the real articles."""
        try:
            self.render(name, overrides, **context)
        except TemplateProblem as exc:
            if isinstance(exc.__cause__, render_limits.RenderLimit):
                raise
        except Exception as exc:  # a file template failing on sample values is not theirs
            log.debug("trying templates on sample values: %s", exc)

    def digest_template_problem(self, fields: Mapping[str, Any]) -> str | None:
        """What is wrong with the editor's templates among a digest's `fields` (one that
        does not compile, or runs past its limits on sample articles), or None."""
        overrides = {}
        try:
            for part in ("subject", "html", "text"):
                source = fields.get(f"{part}_template")
                if source:
                    self.check(part, source)
                    overrides[part] = source
            if overrides:
                name = fields.get("name") or "Sample digest"
                sample = sample_context(
                    name, fields.get("topics") or [], fields.get("max_articles") or 10
                )
                self.check_limits(
                    "digest",
                    overrides,
                    **sample,
                    recipient=RECIPIENT,
                    site_name="Sample site",
                    postal_address="",
                    public_url="https://news.example.com",
                )
        except TemplateProblem as exc:
            return exc.message
        return None

    def _with_footer(self, name: str, suffix: str, body: str, context: dict[str, Any]) -> str:
        """The body with `<name>_footer.<suffix>` (the unsubscribe link and the postal
        address) added when it lacks either, as an editor's own template may."""
        try:
            footer_template = self._env.get_template(f"{name}_footer.{suffix}")
        except TemplateNotFound:
            return body
        postal_address = str(context.get("postal_address") or "")
        if suffix == "html":
            postal_address = str(escape(postal_address))
        if RECIPIENT.unsubscribe_url in body and postal_address in body:
            return body
        footer = footer_template.render(**context)
        if suffix != "html":
            return body.rstrip() + "\n\n" + footer
        end = body.lower().rfind("</body>")
        if end < 0:
            return body + "\n" + footer
        return body[:end] + footer + body[end:]

    def check(self, part: str, source: str) -> None:
        """Raise TemplateProblem when an editor's template does not compile, reads another
        template or file, or names a private attribute (which the sandbox would refuse
        only when it renders)."""
        env = self._sandbox_html if part == "html" else self._sandbox
        try:
            tree = env.parse(source)
        except TemplateError as exc:
            raise TemplateProblem(f"{part} template: {exc}") from exc
        if next(tree.find_all(_LOADS_TEMPLATES), None) is not None:
            raise TemplateProblem(
                f"{part} template: include, import and extends are not available; "
                "write the whole template"
            )
        for name in _attribute_names(tree):
            if name.startswith("_"):
                raise TemplateProblem(f"{part} template: {name!r} is not available in templates")


_LOADS_TEMPLATES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


def _attribute_names(tree: nodes.Template) -> Iterator[str]:
    """Every attribute a template reads, as `x.name` or `x['name']`."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            yield node.attr
        elif isinstance(node, nodes.Getitem):
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            if isinstance(key, str):
                yield key
