"""tcpade_core: the caching engine of the TC-Padé pack. Imports torch, numpy and safetensors only."""
from .config import (ConfigError, NoCacheConfig, ReuseConfig, TaylorSeerConfig, TCPadeConfig,
                     TeaCacheConfig, TraCacheConfig, make_config)
from .cache import CacheRun, make_method
from .history import ResidualHistory
from .report import RunReport, StepRecord

__all__ = ["ConfigError", "NoCacheConfig", "ReuseConfig", "TaylorSeerConfig", "TCPadeConfig",
           "TeaCacheConfig", "TraCacheConfig", "make_config", "CacheRun", "make_method",
           "ResidualHistory", "RunReport", "StepRecord"]
