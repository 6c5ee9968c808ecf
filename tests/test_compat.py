"""pixiu/compat.py against the installed transformers: run on the newest releases and on the floors."""

import inspect

import torch

from pixiu import compat
from pixiu.engine.cache import SlotLayer


def test_cache_name_matches_this_transformers(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert compat.CACHE in inspect.signature(model.model.forward).parameters
    with torch.no_grad():
        out = model.model(input_ids=torch.tensor([[1, 2, 3]]), use_cache=True)
        cache = compat.output_cache(out)
        assert cache.get_seq_length() == 3
        nxt = model.model(input_ids=torch.tensor([[4]]), use_cache=True, **{compat.CACHE: cache})
    assert compat.output_cache(nxt).get_seq_length() == 4


def test_slot_layer_is_a_complete_cache_layer():
    """Every abstract method of this version's CacheLayerMixin is implemented (5.0 names one differently)."""
    assert not SlotLayer.__abstractmethods__
