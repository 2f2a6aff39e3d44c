"""The URL rule every workflow-supplied link passes: http(s), a host, nothing hidden."""

from __future__ import annotations

import pytest

from bot.schemas import _http_url

GOOD = [
    "https://example.com",
    "http://a.b/c?d=e#f",
    "https://user:pw@host:8080/x",
    "http://[::1]:80/",
    "HTTPS://EXAMPLE.COM/A",
    "http://127.0.0.1:9999/signoff-callback",
]
BAD = [
    "HTTP://[0]",  # found by the fuzzer: a bracketed host that is no IPv6 address was a 500
    "http://[1.2.3.4]/",
    "http://[zz]/",
    "http://[v1.x]/",
    "http://example.com:99999/",
    "ftp://x",
    "javascript:alert(1)",
    "http://",
    "https://",
    "file:///etc/passwd",
    "mailto:x@example.com",
    "http:///path",
    "http://:80",
    "//example.com",
    "https//x.com",
    "http://a b",
    "http://example.com/\nX-Injected: 1",
    "http://example.com/\x00",
    "http://@/",
]


@pytest.mark.parametrize("url", GOOD)
def test_accepts(url: str) -> None:
    assert _http_url(url) == url


@pytest.mark.parametrize("url", BAD)
def test_refuses(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        _http_url(url)
