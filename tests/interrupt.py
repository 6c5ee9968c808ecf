"""Die right after a checkpoint is written, as if the process were killed: the resume tests of every stage."""

import contextlib

import pytest

from pixiu.train import checkpoint


@contextlib.contextmanager
def killed_after(step: int, where=lambda root: True, error: type[BaseException] = KeyboardInterrupt):
    """Inside the block the training loop raises `error` right after saving the step-`step` checkpoint under a
    root that `where` accepts; the block must end with that error."""
    real = checkpoint.save

    def save_then_die(root, done, *args, **kwargs):
        real(root, done, *args, **kwargs)
        if done == step and where(root):
            raise error

    checkpoint.save = save_then_die
    try:
        with pytest.raises(error):
            yield
    finally:
        checkpoint.save = real
