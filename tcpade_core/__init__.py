"""tcpade_core: the caching engine of the TC-Padé pack (configs, gates, predictors, history, engine,
report, metrics, and the model classes the nodes load). Its runtime imports torch, numpy and safetensors
only, never ComfyUI; the research kit (benchmark, ablation, training, samplers, data sets, classifiers)
lives in :mod:`tcpade_core.research` and may import more (scikit-learn, matplotlib, tqdm)."""

from .config import (
    ConfigError,
    MagCacheConfig,
    NoCacheConfig,
    ReuseConfig,
    TaylorSeerConfig,
    TCPadeConfig,
    TCPadeOfficialConfig,
    TeaCacheConfig,
    TraCacheConfig,
    make_config,
)
from .engine import CacheRun
from .history import ResidualHistory
from .report import RunReport, StepRecord

__all__ = [
    "ConfigError",
    "MagCacheConfig",
    "NoCacheConfig",
    "ReuseConfig",
    "TaylorSeerConfig",
    "TCPadeConfig",
    "TCPadeOfficialConfig",
    "TeaCacheConfig",
    "TraCacheConfig",
    "make_config",
    "CacheRun",
    "ResidualHistory",
    "RunReport",
    "StepRecord",
]
