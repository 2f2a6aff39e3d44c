"""The web inbox: review and decide in a browser, under `/inbox/` of `signoff serve`."""

from adapters.web.adapter import WebSurface

__all__ = ["WebSurface"]
