"""The backend contract suite, run here on the embedded broker and Kafka.

The suite itself ships in the package, ``ferryman.testing.contract``, so that a third-party
backend can run it too; each module here only collects one of its modules.

    pytest tests/contract -k embedded                              # the embedded broker
    FERRYMAN_TEST_KAFKA=127.0.0.1:9092 pytest tests/contract -m kafka   # a running Kafka
"""
