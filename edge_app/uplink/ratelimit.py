"""Rate limits that keep the uplink inside AWS IoT Core's per-connection caps.

IoT Core throttles a connection above 100 publishes/s and 512 KB/s (it answers with PUBACK
reason code 0x97, quota exceeded, or drops the connection). Staying below the caps on our side
is cheaper than being throttled: a refused batch costs a round trip and a backoff.

A token bucket with a one-second burst lets up to twice the rate through in some one-second
window (a full bucket plus a second of refill). We want "never above the cap in any second",
which is what a measurement checks, so this is a sliding one-second window over the publishes
themselves: at most ``publishes_per_s`` entries, so the bookkeeping is tiny and bounded.
"""

from __future__ import annotations

__all__ = [
    "IOT_CORE_MAX_BYTES_PER_S",
    "IOT_CORE_MAX_PUBLISHES_PER_S",
    "RATE_WINDOW_S",
    "RateLimiter",
]

from collections import deque

from edge_app.clock import Clock
from edge_app.errors import UplinkError

IOT_CORE_MAX_PUBLISHES_PER_S = 100
IOT_CORE_MAX_BYTES_PER_S = 512 * 1024
# The window the caps are kept over: one second plus 20 ms. The broker counts arrivals, which
# scheduling and the network bunch up after we stamp a send; the margin (2 % of throughput)
# keeps a publish delayed that much from landing in the previous second's count.
RATE_WINDOW_S = 1.02


class RateLimiter:
    """At most ``publishes_per_s`` publishes and ``bytes_per_s`` payload bytes in any window of
    one second (plus a 20 ms margin) of ``clock.monotonic()`` time. Not thread-safe: the
    drain thread owns it.

    A single payload larger than ``bytes_per_s`` is let through alone once the window is empty
    (it could never go otherwise; IoT Core's 128 KB payload cap is far below 512 KB/s).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        publishes_per_s: int = IOT_CORE_MAX_PUBLISHES_PER_S,
        bytes_per_s: int = IOT_CORE_MAX_BYTES_PER_S,
    ) -> None:
        if not 1 <= publishes_per_s <= IOT_CORE_MAX_PUBLISHES_PER_S or not (
            1024 <= bytes_per_s <= IOT_CORE_MAX_BYTES_PER_S
        ):
            raise ValueError(
                f"rate caps must be 1..{IOT_CORE_MAX_PUBLISHES_PER_S} publishes/s and "
                f"1024..{IOT_CORE_MAX_BYTES_PER_S} bytes/s (AWS IoT Core's per-connection "
                f"limits), got {publishes_per_s} and {bytes_per_s}: configure them lower"
            )
        self._clock = clock
        self.publishes_per_s = publishes_per_s
        self.bytes_per_s = bytes_per_s
        self._sent: deque[tuple[float, int]] = deque()  # (monotonic s, payload bytes)
        self._bytes = 0

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0][0] <= now - RATE_WINDOW_S:
            _, size = self._sent.popleft()
            self._bytes -= size

    def delay(
        self, payload_bytes: int, *, reserve_publishes: int = 0, reserve_bytes: int = 0
    ) -> float:
        """Seconds to wait before publishing ``payload_bytes`` bytes (0.0: go now).

        ``reserve_publishes``/``reserve_bytes`` keep that much of each cap free after this
        publish (the drain's side lanes leave room for events); each must be below its cap.
        """
        now = self._clock.monotonic()
        self._expire(now)
        publishes = self.publishes_per_s - reserve_publishes
        budget = self.bytes_per_s - reserve_bytes
        if publishes < 1 or budget < 1:
            raise UplinkError(
                f"a reserve of {reserve_publishes} publishes and {reserve_bytes} bytes leaves "
                f"nothing of the caps ({self.publishes_per_s}/s, {self.bytes_per_s} B/s)"
            )
        wait = 0.0
        if len(self._sent) >= publishes:
            # Wait until enough of the oldest publishes leave the window to make room for one.
            wait = self._sent[len(self._sent) - publishes][0] + RATE_WINDOW_S - now
        if self._sent and self._bytes + payload_bytes > budget:
            # Wait until enough of the oldest publishes leave the window.
            freed, need = 0, self._bytes + payload_bytes - budget
            for at, size in self._sent:
                freed += size
                if freed >= need:
                    wait = max(wait, at + RATE_WINDOW_S - now)
                    break
            else:
                wait = max(wait, self._sent[-1][0] + RATE_WINDOW_S - now)
        return max(wait, 0.0)

    def take(self, payload_bytes: int) -> None:
        """Record one publish of ``payload_bytes`` bytes (after ``delay`` returned 0)."""
        self._sent.append((self._clock.monotonic(), payload_bytes))
        self._bytes += payload_bytes
