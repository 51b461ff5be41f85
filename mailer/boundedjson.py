"""JSON from the network, read within bounds: a nesting depth, integers that fit 64 bits,
finite floats, and no NaN or Infinity (which Python's json accepts and nothing stores)."""

from __future__ import annotations

import json
import re
from typing import Any

from mailer.errors import Malformed

MAX_DEPTH = 32
MAX_INTEGER = 2**63 - 1
_MAX_INTEGER_DIGITS = len(str(MAX_INTEGER))

# A JSON string (escapes included), and the brackets left once strings are taken out.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class Refused(Malformed):
    """JSON outside the bounds: a body no field can take."""

    def __init__(self, reason: str) -> None:
        super().__init__("", reason)


def deeper_than(text: str, limit: int) -> bool:
    """Whether arrays and objects in `text` nest more than `limit` levels (counted without
    parsing, so that a deep document cannot exhaust the parser's recursion)."""
    depth = 0
    for bracket in _BRACKETS.finditer(_STRING.sub("", text)):
        if bracket.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > _MAX_INTEGER_DIGITS or abs(int(digits)) > MAX_INTEGER:
        raise Refused("a number in the body is too large")
    return int(digits)


def _float(written: str) -> float:
    value = float(written)
    if value in (float("inf"), float("-inf")):
        raise Refused("a number in the body is too large")
    return value


def _constant(name: str) -> Any:
    raise Refused(f"{name} is not a number JSON allows")


def loads(document: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """The value in `document`; `Refused` outside the bounds, ValueError when malformed."""
    text = (
        document.decode(json.detect_encoding(document)) if isinstance(document, bytes) else document
    )
    if deeper_than(text, max_depth):
        raise Refused(f"the JSON body is nested deeper than {max_depth} levels")
    return json.loads(text, parse_int=_integer, parse_float=_float, parse_constant=_constant)
