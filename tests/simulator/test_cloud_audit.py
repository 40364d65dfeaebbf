"""The cloud-side audit: dedupe by id, completeness by seq, ordering and delivery delay."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from edge_app.domain import format_utc
from edge_app.outbox import RECOVERY_RULE
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.cloud import Audit, CloudConsumer

WALL = 1_790_000_000.0
WAIT_S = 5.0


def event(seq: int, device: str = "edge-1", ts: float = WALL) -> dict[str, Any]:
    return {"id": f"{device}-{seq:04d}", "seq": seq, "device": device, "ts": format_utc(ts)}


def batch(*seqs: int, device: str = "edge-1", ts: float = WALL) -> dict[str, Any]:
    return {
        "schema": "edge-app/events/1",
        "device": device,
        "batch_id": f"{device}-b{min(seqs)}",
        "first_seq": min(seqs),
        "last_seq": max(seqs),
        "events": [event(s, device, ts) for s in seqs],
        "dropped": {},
    }


def test_a_complete_in_order_stream() -> None:
    audit = Audit()
    audit.feed(batch(1, 2, 3), received_wall=WALL + 1)
    audit.feed(batch(4, 5), received_wall=WALL + 1)
    report = audit.report()
    assert (report.received, report.unique, report.duplicates) == (5, 5, 0)
    assert (report.missing, report.out_of_order, report.batches) == (0, 0, 2)
    assert report.last_seq == 5
    assert [e["seq"] for e in audit.events] == [1, 2, 3, 4, 5]


def test_duplicates_are_deduplicated_by_id_and_counted() -> None:
    audit = Audit()
    audit.feed(batch(1, 2, 3), received_wall=WALL)
    audit.feed(batch(1, 2, 3), received_wall=WALL)  # a QoS 1 redelivery
    audit.feed(batch(3, 4), received_wall=WALL)  # overlapping: 3 again
    report = audit.report()
    assert (report.received, report.unique, report.duplicates) == (8, 4, 4)
    assert report.missing == 0
    assert report.out_of_order == 2  # each redelivery starts at or below a seq already seen
    assert [e["seq"] for e in audit.events] == [1, 2, 3, 4]


def test_missing_are_the_seq_gaps_of_each_device() -> None:
    audit = Audit()
    audit.feed(batch(1, 2, 4, 7, device="a"), received_wall=WALL)  # 3, 5, 6 missing
    audit.feed(batch(1, 2, device="b"), received_wall=WALL)  # complete
    audit.feed(batch(2, device="c"), received_wall=WALL)  # 1 missing
    report = audit.report()
    assert report.missing == 4
    assert report.last_seq == 7
    audit.feed(batch(3, 5, 6, device="a"), received_wall=WALL)  # the gaps arrive late
    assert audit.report().missing == 1
    assert audit.report().out_of_order == 1


def test_gaps_a_recovery_event_names_are_explained_not_missing() -> None:
    audit = Audit()
    audit.feed(batch(1, 2, 5, 6, device="a"), received_wall=WALL)  # 3, 4 lost with the file
    recovered = batch(1010, device="a")
    recovered["events"][0].update(
        rule=RECOVERY_RULE, seq_lost=[[3, 4]], seq_skipped=[7, 1009], salvaged=2, unreadable=2
    )
    audit.feed(recovered, received_wall=WALL)
    audit.feed(batch(1, 3, device="b"), received_wall=WALL)  # another device: 2 is missing
    report = audit.report()
    assert (report.explained, report.missing) == (2 + 1003, 1)


def test_out_of_order_batches_are_counted_per_device() -> None:
    audit = Audit()
    audit.feed(batch(4, 5, device="a"), received_wall=WALL)
    audit.feed(batch(1, 2, 3, device="b"), received_wall=WALL)  # another device: in order
    audit.feed(batch(1, 2, 3, device="a"), received_wall=WALL)  # overtaken
    audit.feed(batch(6, device="a"), received_wall=WALL)
    report = audit.report()
    assert report.out_of_order == 1
    assert (report.unique, report.missing) == (9, 0)


def test_max_delivery_delay_is_from_event_ts_to_receipt() -> None:
    audit = Audit()
    audit.feed(batch(1, ts=WALL), received_wall=WALL + 2.5)
    audit.feed(batch(2, ts=WALL + 10.0), received_wall=WALL + 11.0)
    assert audit.report().max_delivery_delay_s == pytest.approx(2.5)
    audit.feed(batch(3, ts=WALL + 0.125), received_wall=WALL + 30.0)
    assert audit.report().max_delivery_delay_s == pytest.approx(29.875)


def test_a_late_duplicate_does_not_count_as_delay() -> None:
    audit = Audit()
    audit.feed(batch(1), received_wall=WALL + 1.0)
    audit.feed(batch(1), received_wall=WALL + 100.0)
    assert audit.report().max_delivery_delay_s == pytest.approx(1.0)


def test_an_empty_audit() -> None:
    report = Audit().report()
    assert (report.received, report.unique, report.missing, report.last_seq) == (0, 0, 0, 0)
    assert report.max_delivery_delay_s == 0.0


def test_wait_for_seq_true_once_complete() -> None:
    audit = Audit()
    audit.feed(batch(1, 2, 3), received_wall=WALL)
    assert audit.wait_for_seq(3, timeout=WAIT_S)
    assert audit.wait_for_seq(2, timeout=WAIT_S)


def test_wait_for_seq_false_on_timeout() -> None:
    audit = Audit()
    audit.feed(batch(1, 2), received_wall=WALL)
    assert not audit.wait_for_seq(3, timeout=0.05)


def test_wait_for_seq_is_false_while_a_lower_seq_is_missing() -> None:
    audit = Audit()
    audit.feed(batch(2, 3, 4), received_wall=WALL)  # three events, but seq 1 never came
    assert not audit.wait_for_seq(3, timeout=0.05)
    audit.feed(batch(1), received_wall=WALL)
    assert audit.wait_for_seq(3, timeout=WAIT_S)


def test_wait_for_seq_needs_one_device_to_be_complete() -> None:
    audit = Audit()
    audit.feed(batch(1, 2, device="a"), received_wall=WALL)
    audit.feed(batch(3, device="b"), received_wall=WALL)
    assert not audit.wait_for_seq(3, timeout=0.05)


def test_wait_for_seq_wakes_when_another_thread_feeds() -> None:
    audit = Audit()
    audit.feed(batch(1), received_wall=WALL)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(audit.wait_for_seq(3, WAIT_S)))
    waiter.start()
    audit.feed(batch(2), received_wall=WALL)
    audit.feed(batch(3), received_wall=WALL)
    waiter.join(WAIT_S)
    assert result == [True]


def test_consumer_subscribes_over_mutual_tls(broker: Mosquitto, pki: Pki) -> None:
    tls = (pki.ca, pki.client_cert, pki.client_key)
    with CloudConsumer(broker.host, broker.tls_port, tls=tls, client_id="audit-tls") as cloud:
        assert cloud.subscriptions == 1
