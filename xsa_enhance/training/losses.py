"""Training losses of XMM-SuperRes / XMM-DeNoise (Sweere et al. 2022, sec. 3.4).

All losses work on normalised images in ``[0, 1]`` shaped ``(N, 1, H, W)`` and come from
maintained libraries: torch for L1 and the Poisson negative log-likelihood, ``piq`` for PSNR and
``pytorch-msssim`` for SSIM and MS-SSIM, with the paper's parameters (window 13, sigma 2.5,
K1 0.01, K2 0.05, MS-SSIM weights ``[0.0448, 0.2856, 0.3001, 0.2363, 0.1333]``).

Each elementary *term* returns the raw figure (PSNR in dB, SSIM in [0, 1], ...). A
:class:`WeightedLoss` combines terms linearly, ``offset + sum(w_i * term_i)``. The paper
normalised each loss linearly so that an untrained model scores 1 and a trained one 0
(:func:`normalised_loss`), and its final loss was
``Lc = 5.43 - 0.0609 * L_psnr - 1.51 * L_ms_ssim`` (:data:`LC_PAPER`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from xsa_enhance.errors import ConfigError
from xsa_enhance.models.normalise import HDR_KNEE, stretch_inverse

__all__ = [
    "SSIM_WINDOW",
    "SSIM_SIGMA",
    "SSIM_K1",
    "SSIM_K2",
    "MS_SSIM_WEIGHTS",
    "LOSS_TERMS",
    "HIGHER_IS_BETTER",
    "l1_term",
    "poisson_term",
    "psnr_term",
    "ssim_term",
    "ms_ssim_term",
    "sqrt_inverse",
    "mse_linear_term",
    "l1_linear_term",
    "poisson_linear_term",
    "box_flux_term",
    "BOX_FLUX_SIZE",
    "LINEAR_TERMS",
    "FLUX_TERMS",
    "WeightedLoss",
    "normalised_loss",
    "LC_PAPER",
    "loss_from_config",
]

logger = logging.getLogger(__name__)

#: SSIM / MS-SSIM Gaussian window size of the paper.
SSIM_WINDOW: int = 13
#: SSIM / MS-SSIM Gaussian window sigma of the paper.
SSIM_SIGMA: float = 2.5
#: SSIM stability constant K1 of the paper.
SSIM_K1: float = 0.01
#: SSIM stability constant K2 of the paper.
SSIM_K2: float = 0.05
#: MS-SSIM scale weights of the paper (five scales).
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: Smallest image side MS-SSIM accepts with the paper's window and five scales.
MS_SSIM_MIN_SIDE: int = (SSIM_WINDOW - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1


def l1_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (``torch.nn.functional.l1_loss``)."""
    return F.l1_loss(pred, target)


def poisson_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Poisson negative log-likelihood with the prediction given as a rate (not its log).

    ``torch.nn.functional.poisson_nll_loss(pred, target, log_input=False)``, i.e. the mean of
    ``pred - target * log(pred + 1e-8)``.
    """
    return F.poisson_nll_loss(pred, target, log_input=False, full=False, eps=1e-8)


def psnr_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB with data range 1 (``piq.psnr``), batch mean."""
    import piq

    return piq.psnr(pred.clamp(0.0, 1.0), target.clamp(0.0, 1.0), data_range=1.0)


def ssim_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM with the paper's window 13, sigma 2.5, K = (0.01, 0.05) (``pytorch_msssim.ssim``)."""
    from pytorch_msssim import ssim

    return ssim(
        pred,
        target,
        data_range=1.0,
        win_size=SSIM_WINDOW,
        win_sigma=SSIM_SIGMA,
        K=(SSIM_K1, SSIM_K2),
    )


def ms_ssim_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MS-SSIM with the paper's parameters (``pytorch_msssim.ms_ssim``).

    Images must be larger than 192 pixels on their shorter side (window 13, five scales).
    """
    from pytorch_msssim import ms_ssim

    side = min(pred.shape[-2:])
    if side < MS_SSIM_MIN_SIDE:
        raise ConfigError(
            f"MS-SSIM with window {SSIM_WINDOW} and 5 scales needs images of at least "
            f"{MS_SSIM_MIN_SIDE} pixels, got {side}; use larger crops or another loss"
        )
    return ms_ssim(
        pred,
        target,
        data_range=1.0,
        win_size=SSIM_WINDOW,
        win_sigma=SSIM_SIGMA,
        weights=list(MS_SSIM_WEIGHTS),
        K=(SSIM_K1, SSIM_K2),
    )


def sqrt_inverse(x: torch.Tensor) -> torch.Tensor:
    """Inverse of the sqrt stretch, ``x * |x|``: normalised value -> linear ``rate / clamp``.

    Equal to ``x ** 2`` (the sqrt stretch's inverse) on ``[0, 1]``; sign-preserving below 0 so
    a raw network output that strays negative still gets a gradient pushing it back up
    (``clamp(min=0) ** 2`` would have a dead zone there).
    """
    return x * x.abs()


def mse_linear_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error on the *linear* scale (``rate / clamp``) of sqrt-stretched images.

    ``mean((sqrt_inverse(pred) - sqrt_inverse(target)) ** 2)``. The MSE is minimised by the
    conditional mean of the target, so a model trained with it keeps flux unbiased, unlike
    losses on the sqrt scale against Poisson-sampled targets (``E[sqrt X] < sqrt E[X]``).
    Assumes the sqrt stretch (the training config checks this).
    """
    return F.mse_loss(sqrt_inverse(pred), sqrt_inverse(target))


def l1_linear_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error on the linear scale of sqrt-stretched images (minimised by the median)."""
    return F.l1_loss(sqrt_inverse(pred), sqrt_inverse(target))


def poisson_linear_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Poisson negative log-likelihood on the linear scale of sqrt-stretched images.

    ``mean(p - t * log(p + 1e-8))`` with ``p, t`` the linear values; minimised, for a
    constant prediction, by the mean of the targets. ``p`` is floored at 0.
    """
    lin = sqrt_inverse(pred).clamp(min=0.0)
    return F.poisson_nll_loss(lin, sqrt_inverse(target), log_input=False, full=False, eps=1e-8)


#: Side of the boxes of :func:`box_flux_term`, in output pixels (32" on the 2x grid, 64" on 1x).
BOX_FLUX_SIZE: int = 16


def box_flux_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Relative flux error in boxes, on the linear scale in units of the constant clamp.

    ``pred`` and ``target`` are linear values in units of the constant clamp per pixel (what
    :meth:`WeightedLoss.terms` hands this term for the sqrt and the ``hdr`` stretch). Their
    sums ``P, T`` over :data:`BOX_FLUX_SIZE`-pixel boxes (half-overlapping) are compared as
    ``mean(|log(P + 1) - log(T + 1)|)``: one constant-clamp pixel's worth of flux (45 counts in
    20 ks) softens the logarithm, so a box holding a bright source weighs its *relative* flux
    error whatever the source's brightness, and faint boxes weigh their absolute error. The
    pixel terms of the ``hdr`` stretch see bright cores on a logarithmic scale only, where a
    1.3x brighter source costs little; this term holds their total flux.
    """
    k = BOX_FLUX_SIZE
    area = float(k * k)
    p = F.avg_pool2d(pred.clamp(min=0.0), k, stride=k // 2) * area
    t = F.avg_pool2d(target.clamp(min=0.0), k, stride=k // 2) * area
    return (torch.log1p(p) - torch.log1p(t)).abs().mean()


#: The elementary loss terms by name.
LOSS_TERMS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": l1_term,
    "poisson": poisson_term,
    "psnr": psnr_term,
    "ssim": ssim_term,
    "ms_ssim": ms_ssim_term,
    "mse_linear": mse_linear_term,
    "l1_linear": l1_linear_term,
    "poisson_linear": poisson_linear_term,
    "box_flux": box_flux_term,
}

#: Terms evaluated on the linear scale; they assume the sqrt stretch (or ``hdr`` with
#: :attr:`WeightedLoss.linear_gain`).
LINEAR_TERMS: frozenset[str] = frozenset({"mse_linear", "l1_linear", "poisson_linear"})

#: Terms evaluated on the whole linear scale in units of the constant clamp (not clipped at
#: it): the sqrt stretch's ``rate / clamp`` or the ``hdr`` stretch's inverse divided by
#: :data:`~xsa_enhance.models.normalise.HDR_KNEE`.
FLUX_TERMS: frozenset[str] = frozenset({"box_flux"})

#: Terms for which a larger value means a better image.
HIGHER_IS_BETTER: frozenset[str] = frozenset({"psnr", "ssim", "ms_ssim"})


@dataclass(frozen=True)
class WeightedLoss:
    """A linear combination of loss terms, ``offset + sum(weights[name] * term(name))``.

    Parameters
    ----------
    weights : mapping of str to float
        Weight of each term (names in :data:`LOSS_TERMS`). Terms where higher is better
        (PSNR, SSIM, MS-SSIM) need negative weights to be maximised.
    offset : float
        Constant added to the sum (does not change gradients; keeps the paper's scale).
    name : str
        Label used in logs.
    linear_gain : float
        Factor applied to the normalised values before the linear-scale terms (which then
        see ``min(gain * x, 1)``). 1 for the sqrt stretch; :data:`~xsa_enhance.models.
        normalise.HDR_GAIN` for the ``hdr`` stretch, whose values below the constant clamp are
        the sqrt stretch divided by that gain: the linear terms then measure the same errors
        as for a constant-clamp model, and leave what lies above the constant clamp to the
        stretched-scale terms (PSNR, SSIM), where a linear error would be hundreds of times
        larger.
    stretch : {"sqrt", "hdr"}
        The stretch of the normalised values, for the terms in :data:`FLUX_TERMS`, which
        see the whole linear scale in units of the constant clamp.
    """

    weights: Mapping[str, float]
    offset: float = 0.0
    name: str = "custom"
    linear_gain: float = 1.0
    stretch: str = "sqrt"
    _terms: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(LOSS_TERMS))
        if unknown:
            raise ConfigError(
                f"unknown loss term(s) {unknown}; choose from {sorted(LOSS_TERMS)}"
            )
        if not self.weights:
            raise ConfigError("a loss needs at least one term")
        object.__setattr__(self, "_terms", tuple(sorted(self.weights)))

    @property
    def min_side(self) -> int:
        """Smallest image side the loss accepts."""
        return MS_SSIM_MIN_SIDE if "ms_ssim" in self.weights else SSIM_WINDOW

    def terms(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw value of every term of this loss."""
        if self.linear_gain != 1.0 and LINEAR_TERMS & set(self._terms):
            g = float(self.linear_gain)
            lin = ((pred * g).clamp(max=1.0), (target * g).clamp(max=1.0))
        else:
            lin = (pred, target)
        if FLUX_TERMS & set(self._terms):
            flux = (self._constant_clamp_units(pred), self._constant_clamp_units(target))
        out = {}
        for name in self._terms:
            args = lin if name in LINEAR_TERMS else flux if name in FLUX_TERMS else (pred, target)
            out[name] = LOSS_TERMS[name](*args)
        return out

    def _constant_clamp_units(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised values -> linear values in units of the constant clamp."""
        if self.stretch == "hdr":
            return stretch_inverse(x.clamp(0.0, 1.0), "hdr") / HDR_KNEE
        if self.stretch != "sqrt":
            raise ConfigError(f"flux loss terms need the sqrt or hdr stretch, not {self.stretch!r}")
        return sqrt_inverse(x)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The combined loss (a scalar tensor with gradients)."""
        values = self.terms(pred, target)
        total = torch.as_tensor(self.offset, dtype=pred.dtype, device=pred.device)
        for name, value in values.items():
            total = total + float(self.weights[name]) * value
        return total


def normalised_loss(
    untrained: Mapping[str, float],
    trained: Mapping[str, float],
    *,
    mix: Mapping[str, float] | None = None,
    name: str = "normalised",
) -> WeightedLoss:
    """The paper's loss normalisation: each term mapped linearly so untrained -> 1, trained -> 0.

    For a term ``L`` with value ``u`` for an untrained model and ``t`` for a trained one, the
    normalised term is ``(L - t) / (u - t)``. The result is ``sum(mix[name] * normalised)``
    written as one :class:`WeightedLoss` (offset and weights).

    Parameters
    ----------
    untrained, trained : mapping of str to float
        Term values of an untrained and of a trained model (same keys).
    mix : mapping of str to float, optional
        Relative weight of each normalised term (default 1 each).
    name : str
        Label of the loss.

    Returns
    -------
    WeightedLoss
        ``offset = -sum(mix * t / (u - t))``, ``weights = mix / (u - t)``.
    """
    if set(untrained) != set(trained):
        raise ConfigError("untrained and trained loss values must name the same terms")
    mix = dict(mix) if mix is not None else {k: 1.0 for k in untrained}
    weights: dict[str, float] = {}
    offset = 0.0
    for key in untrained:
        u, t = float(untrained[key]), float(trained[key])
        if u == t:
            raise ConfigError(f"loss term {key!r}: untrained and trained values are equal")
        scale = mix.get(key, 0.0) / (u - t)
        weights[key] = scale
        offset -= scale * t
    return WeightedLoss(weights=weights, offset=offset, name=name)


#: The paper's final loss, ``Lc = 5.43 - 0.0609 * L_psnr - 1.51 * L_ms_ssim``.
LC_PAPER = WeightedLoss(weights={"psnr": -0.0609, "ms_ssim": -1.51}, offset=5.43, name="lc")


def loss_from_config(spec: str | Mapping[str, object]) -> WeightedLoss:
    """Build a loss from a config entry.

    Parameters
    ----------
    spec : str or mapping
        ``"lc"`` (the paper's final loss), a single term name (``"l1"``: weight 1, or
        weight -1 for terms where higher is better), a mapping ``{"weights": {...},
        "offset": x}``, or ``{"untrained": {...}, "trained": {...}, "mix": {...}}`` for the
        paper's normalisation.

    Returns
    -------
    WeightedLoss
    """
    if isinstance(spec, str):
        if spec == "lc":
            return LC_PAPER
        if spec in LOSS_TERMS:
            sign = -1.0 if spec in HIGHER_IS_BETTER else 1.0
            return WeightedLoss(weights={spec: sign}, name=spec)
        raise ConfigError(f"unknown loss {spec!r}; use 'lc', a term in {sorted(LOSS_TERMS)} or a mapping")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"loss must be a name or a mapping, got {type(spec).__name__}")
    if "untrained" in spec:
        return normalised_loss(
            spec["untrained"],  # type: ignore[arg-type]
            spec.get("trained", {}),  # type: ignore[arg-type]
            mix=spec.get("mix"),  # type: ignore[arg-type]
            name=str(spec.get("name", "normalised")),
        )
    weights = spec.get("weights")
    if not isinstance(weights, Mapping):
        raise ConfigError("loss mapping needs 'weights' (term -> weight) or 'untrained'/'trained'")
    return WeightedLoss(
        weights={str(k): float(v) for k, v in weights.items()},
        offset=float(spec.get("offset", 0.0)),  # type: ignore[arg-type]
        name=str(spec.get("name", "custom")),
    )
