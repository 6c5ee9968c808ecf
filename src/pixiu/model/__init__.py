from pixiu.model.forward import TargetLM
from pixiu.model.io import Loaded, ModelError, load, resolve, save, unwrap

__all__ = ["Loaded", "ModelError", "TargetLM", "load", "resolve", "save", "unwrap"]
