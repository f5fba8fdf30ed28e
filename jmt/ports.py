"""Free local ports for the processes a test or a benchmark starts itself."""

from __future__ import annotations

import random
import socket

# Below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 here): a
# promotion binds a replica's spare port minutes after the range was chosen, and by then a
# port from the ephemeral range may be some client connection's (seen in bench/scale.py).
LOW, HIGH = 20000, 32000


def free_port_range(count: int, *, host: str = "127.0.0.1") -> int:
    """A port p with p .. p+count-1 all free on `host` (a Rasa replica also needs its spare
    port), taken at random in [LOW, HIGH). Free when looked at: a caller binds them soon."""
    if not 1 <= count < HIGH - LOW:
        raise ValueError(f"cannot look for {count} consecutive ports")
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(LOW, HIGH - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind((host, port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {count} consecutive free ports in {LOW}-{HIGH - 1}")
