"""FlatAdam against torch's own Adam: the same weights bit for bit, the same state_dict."""
import pytest
import torch
import torch.nn.functional as F

from patchenv.model.flat_adam import FlatAdam
from patchenv.model.training import make_optimizer, new_model, train_step

VIT = dict(image_size=16, patch_size=4, num_classes=5, channels=1, dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32)


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 1, 16, 16, generator=g), torch.randint(5, (8,), generator=g)


def _plain_step(model, opt, x, y, keep):
    loss = F.cross_entropy(model(x, keep), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def test_flat_adam_trains_bit_for_bit_like_torch_adam():
    plain_model, flat_model = new_model(VIT, torch.device("cpu"), 0), new_model(VIT, torch.device("cpu"), 0)
    plain = torch.optim.Adam(plain_model.parameters(), lr=1e-2, fused=True)
    flat = make_optimizer(flat_model, 1e-2)
    assert isinstance(flat, FlatAdam)
    for i in range(5):
        x, y = _batch(i)
        keep = None if i % 2 else torch.tensor([0, 3, 5, 9, 15])
        _plain_step(plain_model, plain, x, y, keep)
        result = train_step(flat_model, flat, x, y, keep, None)
        grads = [p.grad for p in plain_model.parameters()]
        assert result.grad_norm == pytest.approx(float(torch.nn.utils.get_total_norm(grads)), rel=1e-5)
    for a, b in zip(plain_model.parameters(), flat_model.parameters()):
        assert torch.equal(a, b)
    # every parameter is still a view of the one buffer the update writes
    buffer = flat.flat.untyped_storage().data_ptr()
    assert all(p.untyped_storage().data_ptr() == buffer for p in flat_model.parameters())
    plain_state, flat_state = plain.state_dict(), flat.state_dict()
    assert plain_state["param_groups"] == flat_state["param_groups"]
    assert plain_state["state"].keys() == flat_state["state"].keys()
    for i, s in plain_state["state"].items():
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(s[key], flat_state["state"][i][key]), key


def test_flat_adam_loads_a_plain_adam_checkpoint_and_continues_alike():
    plain_model = new_model(VIT, torch.device("cpu"), 1)
    plain = torch.optim.Adam(plain_model.parameters(), lr=1e-2, fused=True)
    for i in range(3):
        _plain_step(plain_model, plain, *_batch(i), None)
    model_state = {k: v.clone() for k, v in plain_model.state_dict().items()}
    opt_state = plain.state_dict()

    resumed_model = new_model(VIT, torch.device("cpu"), None)
    resumed = make_optimizer(resumed_model, 1e-2)
    resumed_model.load_state_dict(model_state)
    resumed.load_state_dict(opt_state)
    for i in range(3, 6):
        x, y = _batch(i)
        _plain_step(plain_model, plain, x, y, None)
        train_step(resumed_model, resumed, x, y, None, None)
    for a, b in zip(plain_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    assert float(resumed.state_dict()["state"][0]["step"]) == 6


def test_flat_adam_before_its_first_step_saves_an_empty_state_and_loads_it():
    model = new_model(VIT, torch.device("cpu"), 0)
    opt = make_optimizer(model, 1e-3)
    state = opt.state_dict()
    assert state["state"] == {}
    other = make_optimizer(new_model(VIT, torch.device("cpu"), 0), 1e-3)
    other.load_state_dict(state)
    assert other.state_dict()["state"] == {}


def test_flat_adam_zero_grad_keeps_the_gradient_views():
    model = new_model(VIT, torch.device("cpu"), 0)
    opt = make_optimizer(model, 1e-3)
    x, y = _batch(0)
    F.cross_entropy(model(x), y).backward()
    assert float(opt.grad_norm()) > 0
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    assert float(opt.grad_norm()) == 0.0
    with pytest.raises(ValueError, match="no closure"):
        opt.step(lambda: 0.0)
