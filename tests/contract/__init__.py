"""The backend contract suite: DESIGN.md's "Backend contract", written once, run on every backend.

Each ``test_*`` module covers one area (producing, admin, offsets, groups, clients, cleaning,
processes); every test takes the ``backend`` fixture of ``conftest.py``, parametrized by backend.
A new backend joins by adding a parameter there (and its cleaner trigger to ``Backend.clean``).
``helpers.py`` holds the waiting and producing helpers; ``proc_worker.py`` is the client the
multi-process tests start and kill.

    pytest tests/contract -k embedded                              # the embedded broker
    FERRYMAN_TEST_KAFKA=127.0.0.1:9092 pytest tests/contract -m kafka   # a running Kafka
"""
