from pixiu.engine.generate import Sampling, generate

__all__ = ["Sampling", "generate"]
