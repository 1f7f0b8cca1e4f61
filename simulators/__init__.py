"""The SMSC (MNO) simulator: ``SmscSimulator``, its config, and a load generator."""

from .config import (
    AccountConfig,
    Behaviour,
    ConfigError,
    MnoConfig,
    ReceiptConfig,
    SimConfig,
    load_config,
    parse_config,
)
from .mno import Mno, MoError
from .server import SmscSimulator

__all__ = [
    "AccountConfig",
    "Behaviour",
    "ConfigError",
    "Mno",
    "MnoConfig",
    "MoError",
    "ReceiptConfig",
    "SimConfig",
    "SmscSimulator",
    "load_config",
    "parse_config",
]
