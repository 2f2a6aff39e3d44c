from adapters.log.adapter import LogAdapter

__all__ = ["LogAdapter"]
