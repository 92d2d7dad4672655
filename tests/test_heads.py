import pytest
import torch

from qualaudit.errors import ModelLoadError
from qualaudit.head_layers import ConversationHeads
from qualaudit.heads import DEFAULT_HEADS, HEAD_SPECS, resolve_heads


def test_every_head_name_is_versioned_and_unique_per_target():
    assert all(name.rsplit(".", 1)[1].startswith("v") for name in HEAD_SPECS)
    targets = [HEAD_SPECS[n].target for n in DEFAULT_HEADS]
    assert len(targets) == len(set(targets))


def test_unknown_head_names_the_known_ones_and_says_upgrade():
    with pytest.raises(ModelLoadError, match=r"resolution\.v9.*upgrade"):
        resolve_heads(["resolution.v9"])


@pytest.fixture
def pooler():
    torch.manual_seed(1)
    return ConversationHeads(resolve_heads(list(DEFAULT_HEADS)), hidden=8, n_features=3,
                             dim=8, position_buckets=4, dropout=0.0).eval()


def inputs(T=6, B=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(B, T, 8, generator=g)
    features = torch.randn(B, T, 3, generator=g)
    is_agent = torch.arange(T).remainder(2).bool().expand(B, T)
    return states, features, is_agent


def test_leave_one_out_equals_pooling_without_that_turn(pooler):
    states, features, is_agent = inputs()
    mask = torch.ones(1, 6, dtype=torch.bool)
    out = pooler(states, features, is_agent, mask, with_evidence=True)
    # Left out of the pooling only: every other turn keeps its position features.
    base = pooler.proj(torch.cat([states, features], -1)) + pooler.role(is_agent.long())
    base = base + pooler.start(torch.arange(6).clamp(max=3))[None]
    z = pooler.norm(base + pooler.end((5 - torch.arange(6)).clamp(0, 3))[None])[0]
    for spec in [s for s in pooler.specs if s.pooling == "full"]:
        key = spec.name.replace(".", "_")
        for t in range(6):
            keep = torch.arange(6) != t
            w = torch.softmax(pooler.score[key](z[keep]).squeeze(-1), 0)
            expected = pooler.out[key]((w[:, None] * z[keep]).sum(0))
            got = out.leave_one_out[spec.name][0, t].reshape(-1)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_escalation_is_a_noisy_or_of_turn_hazards(pooler):
    states, features, is_agent = inputs()
    out = pooler(states, features, is_agent, torch.ones(1, 6, dtype=torch.bool), True)
    running = torch.sigmoid(out.running["escalation.v1"][0].double())
    assert (running[1:] >= running[:-1]).all()  # "needed at some turn" never goes down
    survival = 1 - running
    hazard = 1 - survival / torch.cat([torch.ones(1, dtype=torch.float64), survival[:-1]])
    for t in range(6):
        expected = 1 - survival[-1] / (1 - hazard[t])  # turn t's hazard factor dropped
        got = torch.sigmoid(out.leave_one_out["escalation.v1"][0, t].double())
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_running_estimate_only_sees_the_past_and_ends_at_the_final_logit(pooler):
    states, features, is_agent = inputs()
    mask = torch.ones(1, 6, dtype=torch.bool)
    out = pooler(states, features, is_agent, mask, with_evidence=True)
    changed = states.clone()
    changed[0, 4:] += 5.0  # the future changes
    out2 = pooler(changed, features, is_agent, mask, with_evidence=True)
    run1, run2 = out.running["escalation.v1"][0], out2.running["escalation.v1"][0]
    torch.testing.assert_close(run1[:4], run2[:4])
    assert not torch.allclose(run1[4:], run2[4:])
    assert torch.equal(out.logits["escalation.v1"][0], run1[-1])


def test_padding_turns_change_nothing(pooler):
    states, features, is_agent = inputs(T=4)
    short = pooler(states, features, is_agent, torch.ones(1, 4, dtype=torch.bool), True)
    pad = torch.zeros(1, 3, 8)
    padded = pooler(torch.cat([states, pad], 1), torch.cat([features, torch.zeros(1, 3, 3)], 1),
                    torch.cat([is_agent, torch.zeros(1, 3, dtype=torch.bool)], 1),
                    torch.tensor([[True] * 4 + [False] * 3]), True)
    for name, logits in short.logits.items():
        torch.testing.assert_close(padded.logits[name], logits, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(padded.leave_one_out[name][:, :4], short.leave_one_out[name],
                                   atol=1e-6, rtol=1e-6)


def test_pooling_is_position_aware(pooler):
    states, features, is_agent = inputs(T=5)
    mask = torch.ones(1, 5, dtype=torch.bool)
    out = pooler(states, features, is_agent, mask)
    perm = torch.tensor([4, 1, 2, 3, 0])  # swap the first and the last turn
    swapped = pooler(states[:, perm], features[:, perm], is_agent[:, perm], mask)
    assert not torch.allclose(out.logits["resolution.v1"], swapped.logits["resolution.v1"])


def test_single_turn_leave_one_out_is_the_empty_pooling(pooler):
    states, features, is_agent = inputs(T=1)
    out = pooler(states, features, is_agent, torch.ones(1, 1, dtype=torch.bool), True)
    spec = next(s for s in pooler.specs if s.name == "resolution.v1")
    empty = pooler.out[spec.name.replace(".", "_")](torch.zeros(8))
    torch.testing.assert_close(out.leave_one_out["resolution.v1"][0, 0], empty)


def test_leave_one_out_stays_exact_when_one_turn_dominates():
    from qualaudit.head_layers import _leave_one_out_pool

    z = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [0.0, 2.0]]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    pooled = _leave_one_out_pool(z, torch.tensor([[40.0, 0.0, 0.0]]), mask)
    torch.testing.assert_close(pooled[0, 0], torch.tensor([0.0, 2.0]))  # the other two, evenly
    torch.testing.assert_close(pooled[0, 1], torch.tensor([1.0, 0.0]), atol=1e-12, rtol=0)
    single = _leave_one_out_pool(z[:, :1], torch.tensor([[3.0]]), mask[:, :1])
    assert torch.equal(single, torch.zeros(1, 1, 2))
