"""Device onboarding time against moto's server: provision, re-run (idempotent), teardown.

    python bench/provision.py [--devices 20] [--json]

Starts a moto server on loopback (AWS IoT certificate ids as AWS computes them) and, for each
of ``--devices`` things, times with real boto3 over HTTP:

* **provision**: key made on the device, thing, CSR signed, policy (created for the first
  device, reused after), attachments, thing group, endpoint, files written;
* **re-run**: the same command again (must create nothing);
* **teardown**: everything the record lists removed.

moto answers in well under a millisecond per call, so this measures the tool's own cost (key
generation, CSR, files, ~15 sequential AWS calls) plus HTTP on loopback; against AWS each call
adds a network round trip (see docs/aws-device.md). moto signs a CSR for a random key, so the
CSR step uses tests/aws/signing.py (signing with a test CA, as AWS IoT signs the CSR's key).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edge_app.aws import IotCalls, provision, teardown  # noqa: E402
from simulator.certs import make_pki  # noqa: E402
from tests.aws.signing import CsrSigningClient  # noqa: E402
from tests.moto import start_moto  # noqa: E402
from tests.telemetry.aws import moto_client  # noqa: E402


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def measure(devices: int) -> dict[str, Any]:
    proc, url = start_moto()
    times: dict[str, list[float]] = {"provision": [], "re-run": [], "teardown": []}
    calls = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            pki = make_pki(work / "pki")
            client = CsrSigningClient(moto_client("iot", url), pki.ca, work / "pki" / "ca.key")
            counted = _Counting(client)
            iot = IotCalls(counted)
            for i in range(devices):
                folder = work / f"cam-{i:03d}"
                start = time.perf_counter()
                provision(iot, folder, f"cam-{i:03d}", group="bench")
                times["provision"].append(time.perf_counter() - start)
                if i == 0:
                    calls = counted.calls
                start = time.perf_counter()
                provision(iot, folder, f"cam-{i:03d}", group="bench")
                times["re-run"].append(time.perf_counter() - start)
            for i in range(devices):
                start = time.perf_counter()
                teardown(iot, work / f"cam-{i:03d}")
                times["teardown"].append(time.perf_counter() - start)
    finally:
        proc.terminate()
        proc.wait(10)
    return {
        "devices": devices,
        "aws_calls_first_provision": calls,
        **{
            name: {
                "median_ms": round(statistics.median(v) * 1000, 1),
                "p95_ms": round(_p95(v) * 1000, 1),
            }
            for name, v in times.items()
        },
    }


class _Counting:
    """Counts the AWS calls made through it."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name == "meta" or not callable(attr):
            return attr

        def call(**params: Any) -> Any:
            self.calls += 1
            return attr(**params)

        return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.devices)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{args.devices} devices against moto on loopback "
        f"({result['aws_calls_first_provision']} AWS calls for the first provision)"
    )
    print(f"{'step':<10} {'median ms':>10} {'p95 ms':>8}")
    for name in ("provision", "re-run", "teardown"):
        row = result[name]
        print(f"{name:<10} {row['median_ms']:>10} {row['p95_ms']:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
