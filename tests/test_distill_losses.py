"""Distillation losses (losses.py): hand-derived values on 2- and 3-token distributions, and parity with TRL's GKD."""

import math

import pytest
import torch

from pixiu import losses


def logps(*probs):
    return torch.tensor([probs]).log()  # (1, C)


# Two tokens: teacher T = (1/2, 1/2), student S = (1/4, 3/4).
T2, S2 = logps(0.5, 0.5), logps(0.25, 0.75)


def test_forward_kl_two_tokens():
    """KL(T || S) = 1/2 ln(0.5/0.25) + 1/2 ln(0.5/0.75) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3) = 0.143841."""
    assert losses.forward_kl(S2, T2).item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)


def test_reverse_kl_two_tokens():
    """KL(S || T) = 1/4 ln(0.25/0.5) + 3/4 ln(0.75/0.5) = -1/4 ln 2 + 3/4 ln(3/2) = 0.130812."""
    want = -0.25 * math.log(2) + 0.75 * math.log(1.5)
    assert losses.reverse_kl(S2, T2).item() == pytest.approx(want, abs=1e-6)
    assert want == pytest.approx(0.130812, abs=1e-6)


def test_jsd_half_two_tokens():
    """β = 1/2: M = (3/8, 5/8). KL(T || M) = 1/2 ln(4/3) + 1/2 ln(4/5) = 1/2 ln(16/15);
    KL(S || M) = 1/4 ln(2/3) + 3/4 ln(6/5). JSD = 1/2 KL(T||M) + 1/2 KL(S||M) = 0.033822."""
    want = 0.25 * math.log(16 / 15) + 0.125 * math.log(2 / 3) + 0.375 * math.log(6 / 5)
    assert losses.generalized_jsd(S2, T2, beta=0.5).item() == pytest.approx(want, abs=1e-6)
    assert want == pytest.approx(0.033822, abs=1e-6)


def test_jsd_ends_are_forward_and_reverse_kl():
    """TRL's convention: β = 0 is forward KL(T || S), β = 1 reverse KL(S || T)."""
    assert losses.generalized_jsd(S2, T2, beta=0).item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)
    assert losses.generalized_jsd(S2, T2, beta=1).item() == pytest.approx(
        losses.reverse_kl(S2, T2).item(), abs=1e-7
    )


def test_three_tokens_and_identical_distributions():
    """T = (1/2, 1/4, 1/4), S = (1/4, 1/4, 1/2): KL(T||S) = 1/2 ln 2 + 0 + 1/4 ln(1/2) = 1/4 ln 2, and KL(S||T)
    = 1/4 ln(1/2) + 0 + 1/2 ln 2 = 1/4 ln 2 too. Any divergence of a distribution with itself is 0."""
    t, s = logps(0.5, 0.25, 0.25), logps(0.25, 0.25, 0.5)
    assert losses.forward_kl(s, t).item() == pytest.approx(0.25 * math.log(2), abs=1e-6)
    assert losses.reverse_kl(s, t).item() == pytest.approx(0.25 * math.log(2), abs=1e-6)
    for beta in (0, 0.3, 1):
        assert losses.generalized_jsd(t, t, beta).item() == pytest.approx(0, abs=1e-7)


def test_temperature_softens_both():
    """Logits ln(1/2, 1/2) and ln(1/4, 3/4) at τ = 2: the teacher stays uniform, the student becomes
    (1, √3) / (1 + √3). KL(T || S) = ln((1 + √3) / 2) - 1/4 ln 3 = 0.037252."""
    want = math.log((1 + math.sqrt(3)) / 2) - 0.25 * math.log(3)
    got = losses.forward_kl(losses.tempered(S2, 2.0), losses.tempered(T2, 2.0))
    assert got.item() == pytest.approx(want, abs=1e-6)
    assert want == pytest.approx(0.037252, abs=1e-6)


def test_topk_support_adds_a_tail_bucket():
    """Teacher (1/2, 1/4, 1/4) known by its top-1 (token 0, 1/2); student (1/4, 1/4, 1/2). On {token 0, rest}:
    T = (1/2, 1/2), S = (1/4, 3/4): the two-token case, KL = 1/2 ln(4/3), below the full 1/4 ln 2."""
    s, t = losses.topk_support(logps(0.25, 0.25, 0.5), torch.tensor([[0]]), torch.tensor([[math.log(0.5)]]))
    assert torch.allclose(s.exp(), torch.tensor([[0.25, 0.75]])) and torch.allclose(
        t.exp(), torch.tensor([[0.5, 0.5]])
    )
    assert losses.forward_kl(s, t).item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)


def test_topk_of_the_whole_vocabulary_is_exact():
    torch.manual_seed(0)
    student, teacher = losses.tempered(torch.randn(4, 7)), losses.tempered(torch.randn(4, 7))
    top, ids = teacher.topk(7, -1)
    for beta in (0, 0.5, 1):
        full = losses.generalized_jsd(student, teacher, beta)
        assert torch.allclose(
            losses.generalized_jsd(*losses.topk_support(student, ids, top), beta), full, atol=1e-6
        )


def test_token_mean_skips_masked_positions():
    """(1 + 2 + 4) / 3 targets: the padded 8 is ignored; no target at all gives 0, not NaN."""
    values = torch.tensor([[1.0, 2.0], [4.0, 8.0]])
    assert losses.token_mean(values, torch.tensor([[1, 1], [1, 0]])).item() == pytest.approx(7 / 3)
    assert losses.token_mean(values, torch.zeros(2, 2)).item() == 0


def test_zero_probability_gives_finite_gradients():
    """A teacher with a category of probability 0 (log -inf): that category adds 0, and no NaN reaches the
    student's gradient."""
    student = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[math.log(0.5), math.log(0.5), float("-inf")]])
    loss = losses.forward_kl(losses.tempered(student), teacher)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(0.5 / (1 / 3)), abs=1e-6)  # 2 x 1/2 ln(3/2)
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize("beta,temperature", [(0.0, 1.0), (0.5, 1.0), (1.0, 1.0), (0.3, 2.0), (0.9, 0.7)])
def test_matches_trl_gkd_loss(beta, temperature):
    """TRL's GKDTrainer.generalized_jsd_loss on (B, T, V) logits with -100 labels = token_mean of ours, 1e-5."""
    pytest.importorskip("trl")
    from trl.experimental.gkd import GKDTrainer

    torch.manual_seed(1)
    student, teacher = torch.randn(2, 5, 11) * 2, torch.randn(2, 5, 11) * 2
    labels = torch.randint(0, 11, (2, 5))
    labels[0, :2] = -100  # a prompt
    labels[1, 4] = -100  # padding
    want = GKDTrainer.generalized_jsd_loss(student, teacher, labels, beta=beta, temperature=temperature)
    per_token = losses.generalized_jsd(
        losses.tempered(student, temperature), losses.tempered(teacher, temperature), beta
    )
    got = losses.token_mean(per_token, labels != -100)
    assert abs(got.item() - want.item()) < 1e-5
