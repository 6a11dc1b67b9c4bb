"""Networks: encoders and heads, completed inside modules where sizes are known."""

from rlbench.networks.mlp import MLP
from rlbench.networks.numpy_forward import feature_dim, numpy_forward

__all__ = ["MLP", "feature_dim", "numpy_forward"]
