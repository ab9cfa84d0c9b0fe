"""The XMM-SuperRes and XMM-DeNoise networks (RRDB generators, Sweere et al. 2022).

Both networks share the ESRGAN residual-in-residual dense block (RRDB) trunk, without any
adversarial part:

* residual dense block: five 3x3 convolutions, each fed the concatenation of the block input
  and all previous outputs (``growth`` new channels each), LeakyReLU(0.2) after the first
  four, the fifth mapping back to ``filters`` channels; the result is scaled by 0.2 and added
  to the block input;
* RRDB: three residual dense blocks in a row, again scaled by 0.2 and added to the input.

``SuperResNet`` (kind ``"sr"``): conv_first -> RRDBs -> trunk_conv (+ skip from conv_first)
-> conv(filters -> 4 filters) + LeakyReLU + PixelShuffle(2) -> conv_hr -> LeakyReLU ->
conv_last, i.e. one x2 stage with pixel shuffle instead of ESRGAN's nearest-neighbour
interpolation (the paper's change).

``DenoiseNet`` (kind ``"dn"``): the same trunk with its skip, no upsampling, conv_hr ->
LeakyReLU -> conv_last, plus the global residual: the output is conv_last + the (normalised)
input image.

Both clamp their output to [0, 1], the range of the normalised targets. To keep the first
forward passes inside that range, the weights *and* bias of ``conv_last`` are drawn uniformly
from ``[-s, 1.01 s]`` with ``s = 1 / sqrt(fan_in)`` (the paper's positively skewed
initialisation, eq. 2); every other convolution is initialised from a normal distribution of
standard deviation ``1 / sqrt(fan_in)`` with zero bias (the paper's eq. 2).

Optional exposure channel
-------------------------
With ``exposure_channel=True`` the network takes two input channels: the normalised image and
``mask * exposure_s / 100_000`` (the exposure in units of 100 ks, zero outside the detector
mask; a 20 ks image gives 0.2). This lets one model accept 10-100 ks inputs. The global
residual of the DN network uses the image channel only.

Receptive field
---------------
Every 3x3 convolution widens the receptive field by one pixel on each side. On the input
(1x) grid both networks reach ``4 + 15 * blocks`` pixels (64 for the paper's 4 blocks); the
tiled inference engine uses this as its default overlap so that tiles are seamless.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import torch
from torch import nn

__all__ = [
    "load_grown",
    "ResidualDenseBlock",
    "RRDB",
    "SuperResNet",
    "DenoiseNet",
    "build_network",
    "identity_network",
    "receptive_radius",
    "EXPOSURE_SCALE_S",
]

logger = logging.getLogger(__name__)

#: Exposure (s) that maps to 1.0 in the optional exposure channel.
EXPOSURE_SCALE_S: float = 100_000.0

_NEG_SLOPE = 0.2
_RES_SCALE = 0.2


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=True)


def _init_normal(conv: nn.Conv2d) -> None:
    """Normal weights with std 1/sqrt(fan_in), zero bias (paper eq. 2)."""
    fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    with torch.no_grad():
        conv.weight.normal_(0.0, 1.0 / math.sqrt(fan_in))
        if conv.bias is not None:
            conv.bias.zero_()


def _init_skewed(conv: nn.Conv2d) -> None:
    """Uniform weights and bias in [-s, 1.01 s], s = 1/sqrt(fan_in) (paper sec. 3.2.1)."""
    fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    s = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        conv.weight.uniform_(-s, 1.01 * s)
        if conv.bias is not None:
            conv.bias.uniform_(-s, 1.01 * s)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions with a 0.2-scaled residual.

    Parameters
    ----------
    filters : int
        Channels in and out of the block.
    growth : int
        Channels added by each of the first four convolutions.
    """

    def __init__(self, filters: int = 32, growth: int = 32) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [_conv(filters + i * growth, growth) for i in range(4)]
            + [_conv(filters + 4 * growth, filters)]
        )
        self.act = nn.LeakyReLU(_NEG_SLOPE, inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        feats = [x]
        for conv in self.convs[:-1]:
            feats.append(self.act(conv(torch.cat(feats, dim=1))))
        out = self.convs[-1](torch.cat(feats, dim=1))
        return out * _RES_SCALE + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, 0.2-scaled residual.

    Parameters
    ----------
    filters, growth : int
        See :class:`ResidualDenseBlock`.
    """

    def __init__(self, filters: int = 32, growth: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(filters, growth)
        self.rdb2 = ResidualDenseBlock(filters, growth)
        self.rdb3 = ResidualDenseBlock(filters, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.rdb3(self.rdb2(self.rdb1(x)))
        return out * _RES_SCALE + x


class _RRDBBase(nn.Module):
    """The shared generator: trunk (with its skip), optional upsampler, ``conv_hr``,
    ``conv_last``; subclasses add the upsampler (:meth:`_build_upsampler`) and the forward."""

    kind: str = ""
    factor: int = 1

    def __init__(
        self, *, filters: int = 32, blocks: int = 4, growth: int = 32, exposure_channel: bool = False
    ) -> None:
        super().__init__()
        if filters < 1 or blocks < 0 or growth < 1:
            raise ValueError(
                f"invalid network size: filters={filters}, blocks={blocks}, growth={growth}"
            )
        self.filters = int(filters)
        self.blocks = int(blocks)
        self.growth = int(growth)
        self.exposure_channel = bool(exposure_channel)
        self.in_channels = 2 if exposure_channel else 1
        self.conv_first = _conv(self.in_channels, filters)
        self.trunk = nn.Sequential(*[RRDB(filters, growth) for _ in range(blocks)])
        self.trunk_conv = _conv(filters, filters)
        self.act = nn.LeakyReLU(_NEG_SLOPE, inplace=False)
        # registration order fixes the order of the weight draws: keep it
        self._build_upsampler(filters)
        self.conv_hr = _conv(filters, filters)
        self.conv_last = _conv(filters, 1)
        self._init_weights()

    def _build_upsampler(self, filters: int) -> None:
        """Add the modules between the trunk and ``conv_hr`` (none by default)."""

    @property
    def config(self) -> dict[str, Any]:
        """Architecture parameters (enough to rebuild the network with :func:`build_network`)."""
        return {
            "kind": self.kind,
            "filters": self.filters,
            "blocks": self.blocks,
            "growth": self.growth,
            "exposure_channel": self.exposure_channel,
        }

    @property
    def receptive_radius(self) -> int:
        """Receptive-field radius in input (1x) pixels."""
        return receptive_radius(self.blocks)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _init_normal(module)
        _init_skewed(self.conv_last)  # type: ignore[arg-type]

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        fea = self.conv_first(x)
        return fea + self.trunk_conv(self.trunk(fea))

    def _tail(self, fea: torch.Tensor) -> torch.Tensor:
        return self.conv_last(self.act(self.conv_hr(fea)))


class SuperResNet(_RRDBBase):
    """XMM-SuperRes: RRDB trunk and one pixel-shuffle x2 stage (output 2H x 2W).

    Parameters
    ----------
    filters, blocks, growth : int
        Trunk width, number of RRDBs, dense growth channels.
    exposure_channel : bool
        Accept a second input channel with the scaled exposure map.
    """

    kind = "sr"
    factor = 2

    def _build_upsampler(self, filters: int) -> None:
        self.up_conv = _conv(filters, 4 * filters)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, C, H, W)`` normalised inputs to ``(N, 1, 2H, 2W)`` outputs in [0, 1]."""
        fea = self._features(x)
        fea = self.shuffle(self.act(self.up_conv(fea)))
        return torch.clamp(self._tail(fea), 0.0, 1.0)


class DenoiseNet(_RRDBBase):
    """XMM-DeNoise: RRDB trunk, no upsampling, global residual on the input image.

    Takes the keyword parameters of :class:`SuperResNet` (``filters``, ``blocks``, ``growth``,
    ``exposure_channel``).
    """

    kind = "dn"
    factor = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, C, H, W)`` normalised inputs to ``(N, 1, H, W)`` outputs in [0, 1]."""
        out = self._tail(self._features(x)) + x[:, :1]
        return torch.clamp(out, 0.0, 1.0)


def load_grown(net: nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Load weights of a shallower network of the same kind and width, adding trunk blocks.

    The first RRDBs, the head and the tail take ``state``; every added RRDB starts with the last
    convolution of each of its dense blocks at zero (each dense block is then the identity and
    the RRDB multiplies by 1.2), and ``trunk_conv``'s weights are divided by ``1.2 ** added``, so
    the grown network computes exactly what the shallow one did. Training then uses the new
    blocks from there (zero-initialised residual branches).

    Parameters
    ----------
    net : torch.nn.Module
        The deeper network (:func:`build_network`).
    state : dict
        ``state_dict`` of the shallower network.

    Returns
    -------
    int
        Number of RRDBs added (0: the state fits exactly and is loaded as is).

    Raises
    ------
    ValueError
        The state does not come from a shallower network of the same kind, width and growth.
    """
    trunk = getattr(net, "trunk", None)
    if trunk is None:
        raise ValueError("not an RRDB network")
    have = {int(k.split(".")[1]) for k in state if k.startswith("trunk.")}
    old = max(have) + 1 if have else 0
    added = len(trunk) - old
    if added < 0:
        raise ValueError(f"weights have {old} RRDBs, the network only {len(trunk)}")
    own = net.state_dict()
    for k, v in state.items():
        if k not in own or own[k].shape != v.shape:
            raise ValueError(f"weights do not fit the network: {k}")
    missing = [k for k in own if k not in state]
    if any(not k.startswith("trunk.") or int(k.split(".")[1]) < old for k in missing):
        raise ValueError("weights lack parameters other than added trunk blocks")
    net.load_state_dict(state, strict=False)
    if added:
        with torch.no_grad():
            for block in list(trunk)[old:]:
                for rdb in (block.rdb1, block.rdb2, block.rdb3):
                    rdb.convs[-1].weight.zero_()
                    rdb.convs[-1].bias.zero_()
            net.trunk_conv.weight.div_((1.0 + _RES_SCALE) ** added)
    return added


def receptive_radius(blocks: int) -> int:
    """Receptive-field radius, in input pixels, of either network with ``blocks`` RRDBs.

    Parameters
    ----------
    blocks : int
        Number of RRDBs.

    Returns
    -------
    int
        ``4 + 15 * blocks``: conv_first, 15 convolutions per RRDB, trunk_conv, then SR:
        up_conv on the 1x grid plus conv_hr and conv_last on the 2x grid (two 2x pixels = one
        1x pixel); DN: conv_hr and conv_last.
    """
    return 4 + 15 * int(blocks)


def build_network(
    kind: Literal["sr", "dn"],
    *,
    filters: int = 32,
    blocks: int = 4,
    growth: int = 32,
    exposure_channel: bool = False,
) -> nn.Module:
    """Build an XMM-SuperRes (``"sr"``) or XMM-DeNoise (``"dn"``) network.

    Parameters
    ----------
    kind : {"sr", "dn"}
        Super-resolution (x2 output grid) or de-noising (same grid, global residual).
    filters : int
        Trunk channels (paper: 32).
    blocks : int
        Number of RRDBs (paper: 4).
    growth : int
        Growth channels of the dense blocks (paper: equal to ``filters``).
    exposure_channel : bool
        Add a second input channel ``mask * exposure_s / 100 ks``.

    Returns
    -------
    torch.nn.Module
        A :class:`SuperResNet` or :class:`DenoiseNet` with freshly initialised weights, in
        training mode; ``.config`` holds the arguments, ``.factor`` the upsampling factor and
        ``.receptive_radius`` the receptive-field radius in input pixels.
    """
    if kind == "sr":
        cls: type[_RRDBBase] = SuperResNet
    elif kind == "dn":
        cls = DenoiseNet
    else:
        raise ValueError(f"unknown network kind {kind!r}; expected 'sr' or 'dn'")
    net = cls(filters=filters, blocks=blocks, growth=growth, exposure_channel=exposure_channel)
    logger.debug(
        "built %s network: filters=%d blocks=%d growth=%d exposure_channel=%s (%d parameters)",
        kind, filters, blocks, growth, exposure_channel, sum(p.numel() for p in net.parameters()),
    )
    return net


def identity_network(
    kind: Literal["sr", "dn"],
    *,
    filters: int = 8,
    blocks: int = 1,
    growth: int = 8,
    exposure_channel: bool = False,
) -> nn.Module:
    """A network of the given architecture whose weights reproduce its input.

    The DN network returns its (image) input unchanged; the SR network returns the
    nearest-neighbour x2 upsampling of it (values in [0, 1], where the output clamp is a no-op).
    The RRDB trunk is present but its contribution is cancelled (``trunk_conv`` is zero).
    Useful as a no-op baseline and to check the flux bookkeeping of the inference engine:
    after denormalisation, a DN identity conserves the rate per pixel and an SR identity the
    rate per input pixel (each output pixel carries a quarter of it).

    Parameters
    ----------
    kind : {"sr", "dn"}
        Network kind.
    filters, blocks, growth, exposure_channel
        Architecture, as for :func:`build_network`.

    Returns
    -------
    torch.nn.Module
        In eval mode.
    """
    net = build_network(kind, filters=filters, blocks=blocks, growth=growth,
                        exposure_channel=exposure_channel)

    def copy0(conv: nn.Conv2d, outs: range | tuple[int, ...] = (0,)) -> None:
        conv.weight.zero_()
        conv.bias.zero_()  # type: ignore[union-attr]
        for o in outs:
            conv.weight[o, 0, 1, 1] = 1.0

    with torch.no_grad():
        copy0(net.conv_first)
        net.trunk_conv.weight.zero_()
        net.trunk_conv.bias.zero_()
        if kind == "sr":
            copy0(net.up_conv, range(4))  # pixel shuffle: channels 0..3 -> channel 0, 2x2
            copy0(net.conv_hr)
            copy0(net.conv_last)
        else:
            net.conv_last.weight.zero_()
            net.conv_last.bias.zero_()
    return net.eval()
