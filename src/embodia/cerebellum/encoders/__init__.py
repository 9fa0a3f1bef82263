"""From-scratch image encoders of the general core, one file each, named here.

Every encoder maps images [N, 3, H, W] (float, in [-1, 1]; any H×W) and an optional FiLM
condition [N, cond_dim] (the frozen sentence embedding) to tokens [N, T, d_model]. One
encoder is shared by all cameras; the policy adds a learned camera embedding to its tokens.
"""

from __future__ import annotations

from embodia.cerebellum.encoders.base import EncoderSpec, ImageEncoder
from embodia.cerebellum.encoders.patch_vit import PatchTransformer
from embodia.cerebellum.encoders.resnet import ResNetKeypoints

ENCODERS: dict[str, type[ImageEncoder]] = {
    "resnet": ResNetKeypoints,
    "vit": PatchTransformer,
}


def build_encoder(spec: EncoderSpec) -> ImageEncoder:
    if spec.kind not in ENCODERS:
        raise ValueError(f"unknown encoder {spec.kind!r}; the encoders are: {', '.join(ENCODERS)}")
    return ENCODERS[spec.kind](spec)


__all__ = ["ENCODERS", "EncoderSpec", "ImageEncoder", "build_encoder"]
