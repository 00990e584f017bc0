"""SwAV model: a ResNet trunk, the projection head, L2-normalised embeddings and the prototypes.

Parameter names follow PASSL's checkpoints: `res_model.encoder.<torchvision-style resnet keys>`,
`res_model.projection_head.{0,1,3}.*`, `res_model.prototypes.weight` ([output_dim, nmb_prototypes]).
"""

from __future__ import annotations

from typing import Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from swavbench.errors import ConfigError


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2D:
    # paddle's default Conv2D init, N(0, sqrt(2 / fan_in)), as PASSL's trunk (paddle.vision's ResNet) has it:
    # PASSL's fan_out loop runs before its encoder exists (the reference: fan_out; docs/passl-deviations.md)
    return nn.Conv2D(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias_attr=False)


def _bn(channels: int, zero: bool = False) -> nn.BatchNorm2D:
    weight = nn.initializer.Constant(0.0 if zero else 1.0)
    return nn.BatchNorm2D(channels, weight_attr=paddle.ParamAttr(initializer=weight))


class BasicBlock(nn.Layer):
    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int, zero_init_residual: bool) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv(in_ch, ch, 3, stride), _bn(ch)
        self.conv2, self.bn2 = _conv(ch, ch, 3), _bn(ch, zero_init_residual)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_ch != ch:
            self.downsample = nn.Sequential(_conv(in_ch, ch, 1, stride), _bn(ch))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Layer):
    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int, zero_init_residual: bool) -> None:
        super().__init__()
        out_ch = ch * self.expansion
        self.conv1, self.bn1 = _conv(in_ch, ch, 1), _bn(ch)
        self.conv2, self.bn2 = _conv(ch, ch, 3, stride), _bn(ch)
        self.conv3, self.bn3 = _conv(ch, out_ch, 1), _bn(out_ch, zero_init_residual)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(_conv(in_ch, out_ch, 1, stride), _bn(out_ch))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Layer):
    """ResNet trunk without the classifier: image batch -> [N, feature_dim] after global average pool."""

    def __init__(self, block: type, layers: Sequence[int], width: int = 64,
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2D(3, width, 7, stride=2, padding=3, bias_attr=False)  # paddle's init (see _conv)
        self.bn1 = _bn(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        in_ch = width
        for index, num_blocks in enumerate(layers):
            ch = width * 2**index
            blocks = []
            for b in range(num_blocks):
                stride = 2 if (index > 0 and b == 0) else 1
                blocks.append(block(in_ch, ch, stride, zero_init_residual))
                in_ch = ch * block.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.feature_dim = in_ch

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return paddle.flatten(self.avgpool(x), 1)


# name -> (block, blocks per stage, stem width). resnet_tiny is the CPU profile's trunk (128-d features).
BACKBONES: dict[str, tuple[type, tuple[int, ...], int]] = {
    "resnet50": (Bottleneck, (3, 4, 6, 3), 64),
    "resnet18": (BasicBlock, (2, 2, 2, 2), 64),
    "resnet_tiny": (BasicBlock, (1, 1, 1, 1), 16),
}
# PASSL spells the linear-probe trunk `swavresnet50`
BACKBONE_ALIASES = {"swavresnet50": "resnet50"}


def build_backbone(name: str, zero_init_residual: bool = False) -> ResNet:
    """A trunk by name from BACKBONES; a ConfigError names Model.backbone.type when unknown."""
    key = BACKBONE_ALIASES.get(name, name)
    if key not in BACKBONES:
        raise ConfigError(f"Model.backbone.type: unknown backbone {name!r} (known: {', '.join(BACKBONES)})")
    block, layers, width = BACKBONES[key]
    return ResNet(block, layers, width, zero_init_residual)


class SwAVNet(nn.Layer):
    """Trunk + projection head + prototypes (PASSL: `res_model`)."""

    def __init__(self, backbone: str, hidden_mlp: int, output_dim: int, nmb_prototypes: int,
                 normalize: bool = True, zero_init_residual: bool = False) -> None:
        super().__init__()
        self.encoder = build_backbone(backbone, zero_init_residual)
        feat = self.encoder.feature_dim
        if output_dim <= 0:
            raise ConfigError("Model.backbone.output_dim: pre-training needs output_dim > 0")
        if hidden_mlp > 0:
            self.projection_head = nn.Sequential(
                nn.Linear(feat, hidden_mlp), nn.BatchNorm1D(hidden_mlp), nn.ReLU(), nn.Linear(hidden_mlp, output_dim)
            )
        else:
            self.projection_head = nn.Linear(feat, output_dim)
        self.normalize = normalize
        self.prototypes = nn.Linear(output_dim, nmb_prototypes, bias_attr=False)

    def forward_trunk(self, crops: Sequence[paddle.Tensor]) -> paddle.Tensor:
        """All crops through the trunk, one pass per run of consecutive crops of the same resolution."""
        features, start = [], 0
        while start < len(crops):
            end = start + 1
            while end < len(crops) and crops[end].shape[-2:] == crops[start].shape[-2:]:
                end += 1
            batch = crops[start] if end - start == 1 else paddle.concat(list(crops[start:end]), axis=0)
            features.append(self.encoder(batch))
            start = end
        return features[0] if len(features) == 1 else paddle.concat(features, axis=0)

    def forward(self, crops: Sequence[paddle.Tensor]) -> tuple[paddle.Tensor, paddle.Tensor]:
        """crops: list of [B,3,H,W] in crop order -> (embeddings z [n*B, D], prototype scores [n*B, K])."""
        z = self.projection_head(self.forward_trunk(crops))
        if self.normalize:
            z = F.normalize(z, axis=1, p=2)
        return z, self.prototypes(z)


class SwAVPretrain(nn.Layer):
    """The pre-training model; the wrapper gives PASSL's `res_model.` key prefix."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.res_model = SwAVNet(**kwargs)

    def forward(self, crops: Sequence[paddle.Tensor]) -> tuple[paddle.Tensor, paddle.Tensor]:
        return self.res_model(crops)


@paddle.no_grad()
def normalize_prototypes(model: nn.Layer) -> None:
    """L2-normalise every prototype. Paddle's Linear weight is [in, out]: a prototype is a column."""
    net = model.res_model if hasattr(model, "res_model") else model
    weight = net.prototypes.weight
    weight.set_value(F.normalize(weight, axis=0, p=2))


def build_pretrain_model(config: dict) -> SwAVPretrain:
    """The SwAV pre-training model described by a config's Model section."""
    model_cfg = config.get("Model") or {}
    backbone = model_cfg.get("backbone") or {}
    return SwAVPretrain(
        backbone=backbone.get("type", "resnet50"),
        hidden_mlp=int(backbone.get("hidden_mlp", 2048)),
        output_dim=int(backbone.get("output_dim", 128)),
        nmb_prototypes=int(backbone.get("nmb_prototypes", 3000)),
        normalize=bool(backbone.get("normalize", True)),
        zero_init_residual=bool(backbone.get("zero_init_residual", True)),
    )
