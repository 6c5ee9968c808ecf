from pixiu.engine.generate import Sample, Sampling, generate, sample

__all__ = ["Sample", "Sampling", "generate", "sample"]
