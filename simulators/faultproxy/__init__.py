"""A TCP fault proxy that speaks Toxiproxy's HTTP API (the part toxiproxy-python uses).

    fp = FaultProxy()                   # or FaultProxy(Registry(clock=..., rng=...))
    await fp.start("127.0.0.1", 0)
    toxiproxy.Toxiproxy().update_api_consumer("127.0.0.1", fp.port)
    ...
    await fp.stop()

Modules: ``toxics`` (what each toxic is and does, pure where it can be), ``link`` (one
connection's two directions through the toxics), ``proxy`` (a listener and its
connections), ``registry`` (proxies by name), ``api`` (the HTTP API), ``cli``.
"""

from .api import FaultProxy, make_app
from .clock import Clock, MonotonicClock
from .errors import Conflict, FieldError, NotFound
from .proxy import Proxy
from .registry import Registry
from .toxics import DOWNSTREAM, UPSTREAM, Toxic, parse_toxic

__all__ = ["DOWNSTREAM", "UPSTREAM", "Clock", "Conflict", "FaultProxy", "FieldError",
           "MonotonicClock", "NotFound", "Proxy", "Registry", "Toxic", "make_app",
           "parse_toxic"]
