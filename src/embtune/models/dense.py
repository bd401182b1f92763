"""Dense: an optional linear projection (+ activation) after pooling, as in sentence-transformers' Dense."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import EmbtuneError

# Activation names as sentence-transformers writes them in 2_Dense/config.json.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "torch.nn.modules.activation.Tanh": nn.Tanh,
    "torch.nn.modules.linear.Identity": nn.Identity,
    "torch.nn.modules.activation.ReLU": nn.ReLU,
    "torch.nn.modules.activation.GELU": nn.GELU,
    "torch.nn.modules.activation.Sigmoid": nn.Sigmoid,
}
_SHORT = {"tanh": "Tanh", "identity": "Identity", "relu": "ReLU", "gelu": "GELU", "sigmoid": "Sigmoid"}


def _activation_name(name: str) -> str:
    if not isinstance(name, str):
        raise EmbtuneError(f"Dense activation must be a name such as 'tanh', got {name!r}")
    if name in ACTIVATIONS:
        return name
    short = _SHORT.get(name.lower())
    if short is not None:
        return next(k for k in ACTIVATIONS if k.endswith("." + short))
    raise EmbtuneError(f"unknown Dense activation {name!r}; use one of: {', '.join(_SHORT)}")


class Dense(nn.Module):
    """y = activation(W x + b): (B, in_features) -> (B, out_features)."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, activation: str = "tanh"
    ) -> None:
        super().__init__()
        if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in (in_features, out_features)):
            raise EmbtuneError(
                f"Dense in_features and out_features must be positive integers, got {in_features!r}, {out_features!r}"
            )
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.use_bias = bool(bias)
        self.activation_name = _activation_name(activation)
        self.linear = nn.Linear(self.in_features, self.out_features, bias=self.use_bias)
        self.activation = ACTIVATIONS[self.activation_name]()

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.linear(x))

    def get_config(self) -> dict:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.use_bias,
            "activation_function": self.activation_name,
        }

    @classmethod
    def from_config(cls, config: dict) -> Dense:
        try:
            return cls(
                config["in_features"],
                config["out_features"],
                config.get("bias", True),
                config.get("activation_function", "tanh"),
            )
        except KeyError as exc:
            raise EmbtuneError(f"Dense config is missing {exc.args[0]!r}; 2_Dense/config.json needs it") from None

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load 'linear.weight'/'linear.bias' from a safetensors state dict (ST's key names)."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing:
            raise EmbtuneError(f"Dense weights are missing {missing}; the Dense folder's model.safetensors is incomplete")
