"""Networks: shapes, sizes, initialisation, output range, residual, receptive field."""

from __future__ import annotations

import math

import pytest
import torch

from xsa_enhance.models.networks import build_network, identity_network, receptive_radius


def _expected_params(filters: int, blocks: int, growth: int, kind: str, in_ch: int = 1) -> int:
    """Parameter count worked out by hand from the architecture in DESIGN.md sec. 7."""
    conv = lambda cin, cout: cin * cout * 9 + cout  # noqa: E731
    rdb = sum(conv(filters + i * growth, growth) for i in range(4)) + conv(filters + 4 * growth,
                                                                          filters)
    n = conv(in_ch, filters) + blocks * 3 * rdb + conv(filters, filters)
    if kind == "sr":
        n += conv(filters, 4 * filters) + conv(filters, filters) + conv(filters, 1)
    else:
        n += conv(filters, filters) + conv(filters, 1)
    return n


@pytest.mark.parametrize("kind", ["sr", "dn"])
def test_paper_size_parameter_count(kind):
    net = build_network(kind)  # paper: 32 filters, 4 blocks, growth 32
    got = sum(p.numel() for p in net.parameters())
    assert got == _expected_params(32, 4, 32, kind)
    net2 = build_network(kind, filters=16, blocks=2, growth=8, exposure_channel=True)
    assert sum(p.numel() for p in net2.parameters()) == _expected_params(16, 2, 8, kind, 2)


@pytest.mark.parametrize("kind,factor", [("sr", 2), ("dn", 1)])
def test_shapes(kind, factor):
    net = build_network(kind, filters=8, blocks=1, growth=8).eval()
    with torch.no_grad():
        y = net(torch.rand(2, 1, 104, 96) * 0.3)
    assert y.shape == (2, 1, 104 * factor, 96 * factor)
    net2 = build_network(kind, filters=8, blocks=1, growth=8, exposure_channel=True).eval()
    with torch.no_grad():
        y2 = net2(torch.rand(1, 2, 37, 45))
    assert y2.shape == (1, 1, 37 * factor, 45 * factor)
    with pytest.raises(ValueError, match="expected input of shape"):
        net2(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError):
        build_network("xx")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["sr", "dn"])
def test_skewed_init_of_last_layer(kind):
    torch.manual_seed(3)
    net = build_network(kind, filters=32, blocks=1, growth=32)
    s = 1.0 / math.sqrt(32 * 9)
    w = net.conv_last.weight.detach()
    b = net.conv_last.bias.detach()
    assert w.min() >= -s and w.max() <= 1.01 * s
    assert -s <= b.item() <= 1.01 * s
    # a uniform draw over the whole interval, not a narrow one
    assert w.min() < -0.9 * s and w.max() > 0.9 * s
    # the other layers are not drawn from that interval (normal, std 1/sqrt(fan_in))
    w_first = net.conv_first.weight.detach()
    assert abs(float(w_first.std()) - 1 / 3) < 0.12


@pytest.mark.parametrize("kind", ["sr", "dn"])
def test_output_is_clamped(kind):
    torch.manual_seed(0)
    net = build_network(kind, filters=8, blocks=1, growth=8).eval()
    with torch.no_grad():
        y = net(torch.rand(1, 1, 32, 32) * 50.0 - 10.0)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert bool(((y == 0) | (y == 1)).any())


def test_dn_global_residual():
    net = build_network("dn", filters=8, blocks=1, growth=8).eval()
    with torch.no_grad():
        net.conv_last.weight.zero_()
        net.conv_last.bias.fill_(0.1)
        x = torch.rand(1, 1, 24, 24) * 0.5
        y = net(x)
    torch.testing.assert_close(y, x + 0.1)


def test_identity_networks():
    x = torch.rand(2, 1, 19, 23)
    up = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    with torch.no_grad():
        torch.testing.assert_close(identity_network("sr")(x), up)
        torch.testing.assert_close(identity_network("dn", blocks=2)(x), x)


@pytest.mark.parametrize("kind", ["sr", "dn"])
def test_receptive_field(kind):
    """A change of one input pixel reaches no further than receptive_radius (and nearly that)."""
    torch.manual_seed(1)
    blocks = 1
    r = receptive_radius(blocks)
    # float64 so that the tiny far-field influence is not rounded away
    net = build_network(kind, filters=8, blocks=blocks, growth=8).eval().double()
    with torch.no_grad():
        net.conv_last.bias.fill_(0.5)  # keep outputs inside (0, 1) so the clamp hides nothing
        n, c = 61, 30
        x = torch.full((1, 1, n, n), 0.2, dtype=torch.float64)
        y0 = net(x)
        x[0, 0, c, c] = 0.9
        y1 = net(x)
    f = 2 if kind == "sr" else 1
    changed = (y1 - y0).abs()[0, 0] > 0
    iy, ix = torch.nonzero(changed, as_tuple=True)
    reach = max(int((iy // f - c).abs().max()), int((ix // f - c).abs().max()))
    assert reach <= r
    assert reach >= r - 2


@pytest.mark.parametrize("kind", ["sr", "dn"])
def test_a_grown_network_computes_what_the_shallow_one_did_and_then_trains(kind):
    from xsa_enhance.models.networks import load_grown

    torch.manual_seed(3)
    small = build_network(kind, filters=8, blocks=1, growth=8).eval()
    big = build_network(kind, filters=8, blocks=3, growth=8)
    assert load_grown(big, small.state_dict()) == 2
    x = torch.rand(2, 1, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(big.eval()(x), small(x), rtol=1e-5, atol=1e-6)
    # the added blocks are not dead: their zeroed convolutions get gradients
    big.train()
    big(x).mean().backward()
    assert big.trunk[2].rdb1.convs[-1].weight.grad.abs().sum() > 0
    # same depth loads as is
    same = build_network(kind, filters=8, blocks=1, growth=8)
    assert load_grown(same, small.state_dict()) == 0


def test_growing_refuses_weights_of_another_shape():
    from xsa_enhance.models.networks import load_grown

    wide = build_network("sr", filters=16, blocks=1, growth=16).state_dict()
    with pytest.raises(ValueError, match="do not fit"):
        load_grown(build_network("sr", filters=8, blocks=2, growth=8), wide)
    deep = build_network("sr", filters=8, blocks=2, growth=8).state_dict()
    with pytest.raises(ValueError, match="only 1"):
        load_grown(build_network("sr", filters=8, blocks=1, growth=8), deep)
