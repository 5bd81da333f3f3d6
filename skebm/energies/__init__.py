"""Energy modules (layer C): ``forward(x) -> E(x)`` of shape ``(n,)``.

p(x) = exp(-E(x)) / Z. Every module here is an ``nn.Module`` built as
``Energy(n_features, ...)``, twice differentiable in ``x`` (score matching
needs second derivatives) and picklable. One file a family:

- :mod:`~skebm.energies.continuous`: :class:`MLPEnergy`,
  :class:`QuadraticEnergy`, :class:`LinearInParametersEnergy` on R^d;
- :mod:`~skebm.energies.autoregressive`: :class:`MaskedAutoregressiveEnergy`
  and :class:`AutoregressiveCorrectedEnergy`;
- :mod:`~skebm.energies.boltzmann`: :class:`BoltzmannEnergy` and
  :class:`IsingEnergy`; :mod:`~skebm.energies.binary_mlp`:
  :class:`BinaryMLPEnergy`; :mod:`~skebm.energies.flips`:
  :func:`flip_energy_differences` for any binary energy.

A binary energy that knows its local fields implements
``site_updates(x, values)``, which the Gibbs sampler calls (see
:func:`skebm.samplers.gibbs`).
"""

from ._activations import ACTIVATIONS
from .autoregressive import (
    AutoregressiveCorrectedEnergy,
    BoundedConditionals,
    MaskedAutoregressiveEnergy,
)
from .binary_mlp import BinaryMLPEnergy
from .boltzmann import BoltzmannEnergy, IsingEnergy
from .continuous import LinearInParametersEnergy, MLPEnergy, QuadraticEnergy
from .flips import flip_energy_differences

# The name under which model files written by skebm 0.1.0 before the energies
# became a package refer to a bounded user correction.
_BoundedConditionals = BoundedConditionals

__all__ = [
    "ACTIVATIONS",
    "AutoregressiveCorrectedEnergy",
    "BinaryMLPEnergy",
    "BoltzmannEnergy",
    "IsingEnergy",
    "LinearInParametersEnergy",
    "MLPEnergy",
    "MaskedAutoregressiveEnergy",
    "QuadraticEnergy",
    "flip_energy_differences",
]
