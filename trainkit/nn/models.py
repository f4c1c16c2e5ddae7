"""Models: named recipes that assemble layers into a Network.

Input and output sizes come from the data (outputs: y's columns for regression, the number
of classes for multiclass, 1 for binary) unless the config gives them.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, field_validator

from trainkit import registry
from trainkit.config.base import Component, InitConfig, InitScheme, named_union
from trainkit.nn.layers import Dropout, DropoutConfig, Linear, LinearConfig
from trainkit.nn.network import Network, layer_name
from trainkit.nn.spatial import ShapeError, fmt_shape
from trainkit.registry import register

Init = InitConfig


def activations() -> list[str]:
    """Names of the registered activation layers (asked when needed, not at import time)."""
    return [e.name for e in registry.entries("layers") if getattr(e.build, "activation", False)]


def _layer(cfg):
    return registry.build("layers", cfg)


def _activation_layer(name_or_cfg):
    entry = registry.get("layers", name_or_cfg if isinstance(name_or_cfg, str) else name_or_cfg.name)
    cfg = entry.schema() if isinstance(name_or_cfg, str) else name_or_cfg
    return entry.build(cfg)


class ModelConfig(Component):
    init: Init = Field(
        default_factory=lambda: InitScheme(name="default"),
        description="default (torch.nn.Linear's), xavier_*, kaiming_*, normal, zeros, or {from: FILE.npz}",
    )


def _check_activation(v):
    if v is not None and v not in (names := activations()):
        import difflib

        close = difflib.get_close_matches(v, names, n=1)
        raise ValueError(
            f"unknown activation {v!r}; "
            + (f"did you mean {close[0]!r}?" if close else f"choose one of: {', '.join(names)}")
        )
    return v


class LinearModelConfig(ModelConfig):
    """Linear regression y = x W^T + b (parameters `weight`, `bias`)."""

    name: Literal["linear"] = "linear"
    out_features: Optional[int] = Field(None, ge=1, description="default: from the data")
    bias: bool = True


@register("models", LinearModelConfig)
def linear_model(cfg: LinearModelConfig, in_features: int, out_features: int, dtype) -> Network:
    return Network([Linear(LinearConfig(bias=cfg.bias), out_features)], in_features, dtype, names="flat")


class LogisticModelConfig(ModelConfig):
    """Logistic regression for binary labels: p = sigmoid(x w^T + b)."""

    name: Literal["logistic"] = "logistic"


@register("models", LogisticModelConfig)
def logistic_model(cfg: LogisticModelConfig, in_features: int, out_features: int, dtype) -> Network:
    return Network([Linear(LinearConfig(), 1), _activation_layer("sigmoid")], in_features, dtype, names="flat")


class SoftmaxModelConfig(ModelConfig):
    """Multinomial logistic regression: logits x W^T + b, trained with cross_entropy."""

    name: Literal["softmax"] = "softmax"


@register("models", SoftmaxModelConfig)
def softmax_model(cfg: SoftmaxModelConfig, in_features: int, out_features: int, dtype) -> Network:
    return Network([Linear(LinearConfig(), out_features)], in_features, dtype, names="flat")


class MLPConfig(ModelConfig):
    """Multi-layer perceptron: [linear, activation, (dropout)] per hidden layer, then linear."""

    name: Literal["mlp"] = "mlp"
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [64], description="hidden layer sizes")
    activation: str = Field("relu", description="activation after each hidden layer")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout probability after each hidden activation")
    output_activation: Optional[str] = Field(None, description="e.g. sigmoid; none for logits")
    out_features: Optional[int] = Field(None, ge=1, description="default: from the data")

    @field_validator("activation", "output_activation")
    @classmethod
    def _known_activation(cls, v):
        return _check_activation(v)


@register("models", MLPConfig)
def mlp_model(cfg: MLPConfig, in_features: int, out_features: int, dtype) -> Network:
    layers = []
    for h in cfg.hidden:
        layers += [Linear(LinearConfig(), h), _activation_layer(cfg.activation)]
        if cfg.dropout > 0:
            layers.append(Dropout(DropoutConfig(p=cfg.dropout)))
    layers.append(Linear(LinearConfig(), out_features))
    if cfg.output_activation:
        layers.append(_activation_layer(cfg.output_activation))
    return Network(layers, in_features, dtype)


LayerSpec = named_union("layers")


class SequentialConfig(ModelConfig):
    """Any stack of layers, listed explicitly (names as in `trainkit list layers`)."""

    name: Literal["sequential"] = "sequential"
    layers: list[LayerSpec] = Field(min_length=1)

    @field_validator("layers")
    @classmethod
    def _sizes(cls, layers):
        linear = [i for i, lay in enumerate(layers) if lay.name == "linear"]
        missing = [i for i in linear[:-1] if layers[i].out_features is None]
        if missing:
            raise ValueError(
                f"layers[{missing[0]}] needs out_features (only the last linear layer takes it from the data)"
            )
        return layers


@register("models", SequentialConfig)
def sequential_model(cfg: SequentialConfig, in_features: int | tuple, out_features: int, dtype) -> Network:
    """`in_features` is the data's per-sample shape when it has one ((C, L), (C, H, W))."""
    layers = []
    last_linear = max((i for i, lay in enumerate(cfg.layers) if lay.name == "linear"), default=None)
    for i, lay in enumerate(cfg.layers):
        if lay.name == "linear":
            layers.append(Linear(lay, lay.out_features or (out_features if i == last_linear else None)))
        else:
            layers.append(_layer(lay))
    return _flat_output(Network(layers, in_features, dtype))


sequential_model.takes_shape = True


def _flat_output(net: Network) -> Network:
    if len(net.out_shape) != 1:
        raise ShapeError(
            f"gives an output of shape {fmt_shape(net.out_shape)} per sample; end with flatten and a linear layer",
            len(net.layers) - 1,
            layer_name(net.layers[-1]),
        )
    return net


class CNNConfig(ModelConfig):
    """Convolutional network: conv blocks of `channels`, then dense layers of sizes `hidden`.

    Each block: conv (padding 'same'), optional batch norm, the activation, a pool."""

    name: Literal["cnn"] = "cnn"
    channels: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [16, 32], min_length=1, description="output channels of each conv block"
    )
    kernel_size: int = Field(3, ge=1)
    pool: Literal["max", "avg", "none"] = Field("max", description="pooling after each conv block")
    pool_size: int = Field(2, ge=1)
    batch_norm: bool = Field(False, description="batch norm after each conv")
    global_pool: bool = Field(False, description="global average pooling before the dense layers")
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [64], description="dense layer sizes")
    activation: str = "relu"
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each hidden dense activation")
    dims: Literal["auto", 1, 2] = Field(
        "auto",
        description="1-D or 2-D convolutions; auto: 1-D for (L,) samples, else 2-D ((H, W) is a grey image; "
        "(C, L) signals need dims: 1)",
    )
    out_features: Optional[int] = Field(None, ge=1, description="default: from the data")

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, v):
        return _check_activation(v)


@register("models", CNNConfig)
def cnn_model(cfg: CNNConfig, in_features: int | tuple, out_features: int, dtype) -> Network:
    shape = (in_features,) if isinstance(in_features, int) else tuple(in_features)
    d = cfg.dims if cfg.dims != "auto" else (1 if len(shape) == 1 else 2)
    layers = []
    for c in cfg.channels:
        layers.append(_layer_named(f"conv{d}d", out_channels=c, kernel_size=cfg.kernel_size, padding="same"))
        if cfg.batch_norm:
            layers.append(_layer_named(f"batch_norm{d}d"))
        layers.append(_activation_layer(cfg.activation))
        if cfg.pool != "none":
            layers.append(_layer_named(f"{cfg.pool}_pool{d}d", kernel_size=cfg.pool_size))
    if cfg.global_pool:
        layers.append(_layer_named(f"adaptive_avg_pool{d}d"))
    layers.append(_layer_named("flatten"))
    for h in cfg.hidden:
        layers += [Linear(LinearConfig(), h), _activation_layer(cfg.activation)]
        if cfg.dropout > 0:
            layers.append(Dropout(DropoutConfig(p=cfg.dropout)))
    layers.append(Linear(LinearConfig(), out_features))
    return Network(layers, in_features, dtype)


cnn_model.takes_shape = True


def _layer_named(name: str, **kwargs):
    entry = registry.get("layers", name)
    return entry.build(entry.schema(**kwargs))


def declared_out_features(cfg) -> int | None:
    """The output size a model config states itself, if any (to check against the data)."""
    if cfg.name in ("linear", "mlp", "cnn"):
        return cfg.out_features
    if cfg.name == "logistic":
        return 1
    if cfg.name == "sequential":
        lin = [lay for lay in cfg.layers if lay.name == "linear"]
        return lin[-1].out_features if lin else None
    return None
