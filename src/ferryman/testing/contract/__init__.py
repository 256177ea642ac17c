"""The backend contract suite: DESIGN.md's "Backend contract", written once, run on every backend.

Each ``test_*`` module covers one area (producing, admin, offsets, groups, clients, cleaning,
processes); every test takes the ``backend`` fixture (``backend.py``): the embedded broker and,
when ``FERRYMAN_TEST_KAFKA`` names one, Kafka. ``helpers.py`` holds the producing and polling
helpers; ``proc_worker.py`` is the client the multi-process tests start and kill.

It ships in the package so that a third-party backend can prove itself: write a function that
opens your Broker in a fresh directory, and run the suite on it alone::

    FERRYMAN_CONTRACT_BACKEND=mybackend.testing:open_test_broker \\
        pytest --pyargs ferryman.testing.contract

(``open_test_broker(directory: pathlib.Path) -> ferryman.broker.base.Broker``; a ``clean()``
method, if it has one, runs a synchronous cleaner pass for the compaction and retention tests;
the multi-process tests skip, since they open the broker by URL in other processes.)
In this repository ``tests/contract`` runs the same modules on the embedded broker and Kafka::

    pytest tests/contract -k embedded
    FERRYMAN_TEST_KAFKA=127.0.0.1:9092 pytest tests/contract -m kafka
"""
