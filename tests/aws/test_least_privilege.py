"""Least privilege, proven with two real devices on a real Mosquitto that enforces the policy.

``policy_broker`` mirrors the IoT policy ``edge-app aws provision`` writes (``simulator.acl``)
on its mutual-TLS listener; thing-a and thing-b each present their own certificate. Device A
may use its own topics and shadow, and cannot publish to B's topics or shadow, nor receive
anything of B's (live, retained or shadow answers) whatever it subscribes to, not even by
claiming B's client id. The same holds for IoT Jobs: A runs its own and cannot see, start or
update B's.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from edge_app.aws import MqttProbe
from edge_app.config import TlsConfig
from edge_app.remote import ShadowTopics
from edge_app.remote.jobs import JobTopics
from edge_app.uplink import tls_context
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.jobs import JobsService
from simulator.shadow import ShadowService

pytestmark = pytest.mark.broker

NOT_AUTHORIZED = 135
A, B = "thing-a", "thing-b"


def context_of(pki: Pki) -> ssl.SSLContext:
    return tls_context(TlsConfig(ca=pki.ca, cert=pki.client_cert, key=pki.client_key))


@contextmanager
def device(broker: Mosquitto, pki: Pki, client_id: str) -> Iterator[MqttProbe]:
    """A connected device presenting ``pki``'s client certificate as ``client_id``."""
    with MqttProbe(
        broker.host, broker.tls_port, client_id=client_id, context=context_of(pki), timeout_s=10
    ) as probe:
        answer = probe.connect()
        assert answer.ok, answer.reason
        yield probe


@pytest.fixture(scope="module")
def shadow(policy_broker: Mosquitto) -> Iterator[ShadowService]:
    with ShadowService(policy_broker.host, policy_broker.port, client_id="lp-shadow") as service:
        yield service


def own_topics(thing: str) -> list[str]:
    return [f"edge-app/{thing}/{t}" for t in ("events", "metrics", "status", "snapshots/01J")]


def contains(part: bytes) -> Callable[[str, bytes], bool]:
    return lambda _topic, payload: part in payload


def shadow_get(probe: MqttProbe, thing: str, token: str) -> bytes | None:
    """Ask ``thing``'s shadow (as ``probe``) and wait for the answer to ``token``."""
    topics = ShadowTopics(thing)
    for topic in (topics.get_accepted, topics.get_rejected):
        assert probe.subscribe(topic).ok
    body = json.dumps({"clientToken": token}).encode()
    assert probe.publish(topics.get, body).ok
    got = probe.wait_message(lambda _t, p: token.encode() in p)
    return None if got is None else got[1]


def test_a_device_may_use_its_own_topics_and_shadow(
    policy_broker: Mosquitto, fleet: dict[str, Pki], shadow: ShadowService
) -> None:
    with device(policy_broker, fleet[A], A) as a:
        for topic in own_topics(A):
            assert a.publish(topic, b"{}").ok, topic
        assert a.publish(f"edge-app/{A}/status", b'{"state":"online"}', retain=True).ok
        for topic in ShadowTopics(A).subscribed:
            assert a.subscribe(topic).ok, topic
        answer = shadow_get(a, A, "own-1")
    assert answer is not None
    assert json.loads(answer)["clientToken"] == "own-1"


def test_a_cannot_publish_to_b_topics_or_shadow(
    policy_broker: Mosquitto, fleet: dict[str, Pki]
) -> None:
    b_shadow = ShadowTopics(B)
    targets = [
        *own_topics(B),
        b_shadow.get,
        b_shadow.update,
        b_shadow.delete,
        f"$aws/things/{B}/jobs/get",
        JobTopics(B).start_next,
        JobTopics(B).update("job-1"),
    ]
    with device(policy_broker, fleet[A], A) as a:
        for topic in targets:
            answer = a.publish(topic, b"{}")
            assert (answer.ok, answer.code) == (False, NOT_AUTHORIZED), topic


@pytest.mark.parametrize("a_client_id", [A, B], ids=["as-itself", "claiming-b-client-id"])
def test_a_receives_nothing_of_b_live_retained_or_shadow(
    policy_broker: Mosquitto, fleet: dict[str, Pki], shadow: ShadowService, a_client_id: str
) -> None:
    # IoT Core refuses such a SUBSCRIBE (SUBACK 0x87); Mosquitto 2's acl_file grants every
    # SUBACK and checks each delivery instead, retained ones included. Either way nothing of
    # B's may reach A, whatever filter A uses: that is what is asserted.
    retained = f"b-retained-{a_client_id}".encode()
    live = f"b-live-{a_client_id}".encode()
    marker = f"b-desired-{a_client_id}"
    with device(policy_broker, fleet[B], B) as b:
        assert b.publish(f"edge-app/{B}/status", retained, retain=True).ok
    with (
        MqttProbe(
            policy_broker.host, policy_broker.port, client_id="lp-cloud", context=None
        ) as cloud,
        device(policy_broker, fleet[A], a_client_id) as a,
    ):
        assert cloud.connect().ok
        assert cloud.subscribe(f"edge-app/{B}/#").ok
        assert cloud.subscribe(f"$aws/things/{B}/shadow/#").ok
        filters = [
            "#",
            "+/+/+",
            "edge-app/+/status",
            f"edge-app/{B}/#",
            "$aws/things/#",
            *ShadowTopics(B).subscribed,
            f"$aws/things/{B}/jobs/notify-next",
        ]
        for topic_filter in filters:
            a.subscribe(topic_filter)
        # Live traffic on B's topics while A listens: an event, and B's shadow answering a
        # change (update/accepted, update/delta). (A second connection as B itself would take
        # over the client id A may be claiming, so the cloud side plays B's traffic.)
        assert cloud.publish(f"edge-app/{B}/events", live).ok
        shadow.set_desired(B, {"marker": marker})
        # The control: the cloud side (plain listener) got all of it.
        for wanted in (retained, live, marker.encode()):
            assert cloud.wait_message(contains(wanted)) is not None, wanted
        if a_client_id == A:
            # A marker on A's own shadow, answered after everything above: A's deliveries
            # flow, so anything of B's would have arrived before it.
            assert shadow_get(a, A, f"a-token-{a_client_id}") is not None
        else:
            # Claiming B's client id buys nothing: B's shadow stays closed to A's certificate
            # (and this round trip comes after anything the broker sent A before it).
            assert a.publish(ShadowTopics(B).get, b"{}").code == NOT_AUTHORIZED
        leaked = [(t, p) for t, p in a.messages if p in (retained, live) or marker.encode() in p]
    assert leaked == []


def test_a_claiming_b_client_id_cannot_publish_as_b(
    policy_broker: Mosquitto, fleet: dict[str, Pki]
) -> None:
    # IoT Core refuses this CONNECT (thing-b is not attached to A's certificate); the mirror
    # accepts it and refuses every topic of B instead.
    with device(policy_broker, fleet[A], B) as impostor:
        for topic in [*own_topics(B), ShadowTopics(B).update]:
            answer = impostor.publish(topic, b"{}")
            assert (answer.ok, answer.code) == (False, NOT_AUTHORIZED), topic
        # and under B's name it has lost A's own topics too: identity is the client id
        assert impostor.publish(f"edge-app/{A}/events", b"{}").code == NOT_AUTHORIZED


def test_a_wrong_client_id_may_not_use_even_its_own_topics(
    policy_broker: Mosquitto, fleet: dict[str, Pki]
) -> None:
    with device(policy_broker, fleet[A], "not-a-thing") as a:
        assert a.publish(f"edge-app/{A}/events", b"{}").code == NOT_AUTHORIZED
        assert a.publish(ShadowTopics(A).get, b"{}").code == NOT_AUTHORIZED


def test_a_may_run_its_own_jobs_but_cannot_see_start_or_update_b_jobs(
    policy_broker: Mosquitto, fleet: dict[str, Pki]
) -> None:
    a_jobs, b_jobs = JobTopics(A), JobTopics(B)
    document = {"operation": "config", "desired": {"detector": {"score_threshold": 0.6}}}
    cloud = MqttProbe(
        policy_broker.host, policy_broker.port, client_id="lp-jobs-cloud", context=None
    )
    with JobsService(policy_broker.host, policy_broker.port, client_id="lp-jobs") as jobs, cloud:
        assert cloud.connect().ok
        assert cloud.subscribe(b_jobs.notify_next).ok
        jobs.create_job("lp-b-job", {**document, "marker": "b-job-marker"}, things=[B])
        with device(policy_broker, fleet[A], A) as a:
            for topic_filter in [*b_jobs.subscribed, f"$aws/things/{B}/jobs/#"]:
                a.subscribe(topic_filter)
            for topic in (b_jobs.start_next, b_jobs.update("lp-b-job"), b_jobs.get("lp-b-job")):
                answer = a.publish(topic, b'{"status":"SUCCEEDED"}')
                assert (answer.ok, answer.code) == (False, NOT_AUTHORIZED), topic
            # B's notify-next goes out again (the job is re-announced) while A listens
            jobs.create_job("lp-b-job-2", {**document, "marker": "b-job-marker"}, things=[B])
            jobs.cancel_job("lp-b-job")  # the next one changes: notify-next names lp-b-job-2
            assert cloud.wait_message(contains(b"lp-b-job-2")) is not None  # the control
            # A's own jobs work: its subscriptions and requests are allowed
            for topic_filter in a_jobs.subscribed:
                assert a.subscribe(topic_filter).ok, topic_filter
            jobs.create_job("lp-a-job", document, things=[A])
            assert a.publish(a_jobs.start_next, b'{"clientToken":"lp-a"}').ok
            started = a.wait_message(lambda t, p: t == a_jobs.start_next_accepted and b"lp-a" in p)
            assert started is not None
            assert json.loads(started[1])["execution"]["jobId"] == "lp-a-job"
            assert a.publish(a_jobs.update("lp-a-job"), b'{"status":"SUCCEEDED"}').ok
            assert jobs.wait_until(lambda: jobs.status("lp-a-job", A) == "SUCCEEDED", 10.0)
            leaked = [t for t, p in a.messages if b"b-job-marker" in p or f"/{B}/" in t]
        assert leaked == []
        assert jobs.status("lp-b-job-2", B) == "QUEUED"  # A could not start or finish it
