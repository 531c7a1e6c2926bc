"""Real clients on the real relay, in one process, on virtual time.

:mod:`~sotto.audit.sim.clock` is the event loop whose clock jumps to the next timer;
:mod:`~sotto.audit.sim.network` carries the client transport's own requests and WebSockets into
the relay's ASGI app in process, from a source address per device; :mod:`~sotto.audit.sim.world`
starts the relay app and registers SDK clients on it.
"""

from sotto.audit.sim.clock import VirtualClock, VirtualEventLoop, run
from sotto.audit.sim.network import Host, device_network
from sotto.audit.sim.world import RELAY_URL, Device, close_device, new_device, relay_app

__all__ = [
    "RELAY_URL",
    "Device",
    "Host",
    "VirtualClock",
    "VirtualEventLoop",
    "close_device",
    "device_network",
    "new_device",
    "relay_app",
    "run",
]
