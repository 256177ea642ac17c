import pytest

from ferryman.broker.partitioner import murmur2, partition_for, to_positive

# From Kafka's clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java (testMurmur2).
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS)
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_is_positive_modulo() -> None:
    for data, expected in KAFKA_VECTORS:
        assert partition_for(data, 7) == (expected & 0x7FFFFFFF) % 7
    assert to_positive(-1) == 0x7FFFFFFF


def test_empty_key_hashes() -> None:
    assert 0 <= partition_for(b"", 3) < 3
