"""The simulator: everything that plays the world around an edge_app device in tests and demos.

A real Mosquitto broker with an IoT-Core-like mutual-TLS listener (``simulator.broker``), the
throw-away PKI it needs (``simulator.certs``) and a synthetic video scene with ground truth
(``simulator.scene``, which needs scikit-image and is therefore not imported here).
Run ``python -m simulator --help`` for the command line.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "Mosquitto",
    "Pki",
    "PkiError",
    "ensure_mosquitto",
    "find_mosquitto",
    "free_port",
    "make_pki",
]

from simulator.broker import BrokerError, Mosquitto, ensure_mosquitto, find_mosquitto, free_port
from simulator.certs import Pki, PkiError, make_pki
