import math

import pytest
import torch

from pixiu import losses
from pixiu.model.forward import token_logps


def test_sft_loss_hand_derived():
    """Two targets. Row 1: logits (0, ln 3) -> p(target=1) = 3/4, loss = ln(4/3).
    Row 2: logits (0, 0) -> p(target=0) = 1/2, loss = ln 2. Sum = ln(4/3) + ln 2 = ln(8/3)."""
    logits = torch.tensor([[0.0, math.log(3)], [0.0, 0.0]])
    targets = torch.tensor([1, 0])
    assert losses.sft(token_logps(logits, targets)).item() == pytest.approx(math.log(8 / 3), abs=1e-6)


def test_registry_names_valid_choices():
    assert losses.get_loss("sft") is losses.sft
    with pytest.raises(ValueError, match="valid: .*sft"):
        losses.get_loss("nope")
