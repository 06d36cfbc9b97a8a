"""The byte-wise upper bound withdraw_prefix gives its index range: every extension of the
prefix is below it, and nothing between prefix and bound fails to start with the prefix."""

from __future__ import annotations

import pytest

from server.notifications.repository import _prefix_upper_bound

TOP = chr(0x10FFFF)


@pytest.mark.parametrize(
    ("prefix", "bound"),
    [
        ("booking:1:reminder:", "booking:1:reminder;"),
        ("a_b%", "a_b&"),
        ("я", "ѐ"),  # U+044F then U+0450
        ("x" + TOP, "y"),
        ("x" + TOP + TOP, "y"),
        ("\ud7ff", "\ue000"),  # the next character PostgreSQL stores skips the surrogates
        (TOP, None),
        (TOP * 3, None),
    ],
)
def test_bound(prefix: str, bound: str | None) -> None:
    assert _prefix_upper_bound(prefix) == bound


@pytest.mark.parametrize("prefix", ["booking:1:", "a", "я:", "x" + TOP, "z\ud7ff"])
@pytest.mark.parametrize("tail", ["", "0", TOP, TOP * 4, "\uffff", "ÿ"])
def test_every_extension_is_inside_and_the_bound_is_not(prefix: str, tail: str) -> None:
    bound = _prefix_upper_bound(prefix)
    assert bound is not None

    def utf8(text: str) -> bytes:
        return text.encode("utf-8", "surrogatepass")

    assert utf8(prefix) <= utf8(prefix + tail) < utf8(bound)
    assert not bound.startswith(prefix)
