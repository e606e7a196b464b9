"""bench/load.py's reading of /metrics: drops summed over every label set, per reason."""

from bench.load import sum_by_label


def test_drops_sum_over_endpoints_and_operators() -> None:
    samples = {
        'itm_frames_dropped_total{endpoint="stream",operator="mqn",reason="deadline"}': 3.0,
        'itm_frames_dropped_total{endpoint="stream",operator="bt2408",reason="deadline"}': 4.0,
        'itm_frames_dropped_total{endpoint="stream",operator="mqn",reason="stale"}': 2.0,
        'itm_frames_dropped_total{endpoint="jobs",operator="bt2408",reason="stale"}': 0.0,
    }
    assert sum_by_label(samples, "reason") == {"deadline": 7.0, "stale": 2.0}
    assert sum_by_label(samples, "operator") == {"mqn": 5.0, "bt2408": 4.0}


def test_label_order_escapes_and_missing_labels() -> None:
    samples = {
        'm{reason="queue",endpoint="stream"}': 1.0,
        'm{endpoint="a\\"b,c",reason="queue"}': 2.0,  # an escaped quote and a comma inside a value
        'm{endpoint="stream"}': 5.0,  # no reason label: not counted
    }
    assert sum_by_label(samples, "reason") == {"queue": 3.0}
    assert sum_by_label(samples, "endpoint") == {"stream": 6.0, 'a\\"b,c': 2.0}
    assert sum_by_label({}, "reason") == {}
