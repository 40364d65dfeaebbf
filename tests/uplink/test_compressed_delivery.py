"""Compressed batches end to end: the real drain stack publishes gzip batches through a real
Mosquitto, with MQTT 5 content types, and the simulator's cloud consumer decodes them."""

from __future__ import annotations

from pathlib import Path

from edge_app.uplink import codec
from simulator.broker import Mosquitto, free_port
from simulator.proxy import TcpProxy
from tests.factories import wait_until
from tests.uplink.test_delivery import WAIT_S, Device, cloud_for


def test_gzip_batches_arrive_complete_across_a_cut(tmp_path: Path, broker: Mosquitto) -> None:
    thing = "gzip-cam"
    with (
        TcpProxy(free_port(), broker.host, broker.port) as proxy,
        cloud_for(broker, thing) as (_, audit),
        Device(
            tmp_path,
            thing,
            proxy.listen_port,
            max_events=2000,
            max_bytes=16_384,
            compression=codec("gzip"),
        ) as dev,
    ):
        proxy.down()
        dev.raise_events(3000)  # a backlog built while offline
        json_bytes = dev.outbox.stats().bytes
        proxy.up()
        assert wait_until(lambda: dev.drain.stats().events_sent > 500, WAIT_S)
        proxy.cut()  # mid-drain: batches in flight fail and are sent again
        proxy.up()
        assert audit.wait_for_seq(3000, WAIT_S)
        assert wait_until(lambda: dev.outbox.stats().depth == 0, WAIT_S)
        sizes = [size for _, size in dev.transport.stamps]
    report = audit.report()
    assert (report.missing, report.last_seq, report.unique) == (0, 3000, 3000)
    assert audit.content_types == {"application/json+gzip": report.batches}
    assert max(sizes) <= 16_384
    # Uncompressed, 16 KB batches would need at least json_bytes / 16 KB publishes.
    assert len(sizes) < json_bytes / 16_384 / 4
