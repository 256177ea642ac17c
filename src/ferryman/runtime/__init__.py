"""The service runtime: producing, handlers, the consumer loop and running services.

Kept import-free so ``ferryman.rpc`` can build on the parts here without a cycle; the public
names are re-exported by ``ferryman/__init__.py``.
"""
