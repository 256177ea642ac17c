"""The service runtime: producing, serde, handlers, the consumer loop and dead letters.

Kept import-free so ``ferryman.rpc`` and ``ferryman.service`` build on the parts here without a
cycle; the public names are re-exported by ``ferryman/__init__.py``.
"""
