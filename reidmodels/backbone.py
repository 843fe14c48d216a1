"""The CLIP backbone over open_clip, shaped for person crops.

- Built with no network access: ``pretrained`` is None (random init), an open_clip
  tag (``openai``: downloaded by open_clip where the network allows) or a local
  checkpoint path; when neither can be had the error says which and what to do.
- OpenAI CLIP's architecture with **QuickGELU** in every block (``force_quick_gelu``):
  every method here is defined on OpenAI's weights, which were trained with it, and
  plain GELU under them loses accuracy silently (open_clip issue #771).
- Input 256x128 (H x W): the 16x16 patches give a 16x8 grid. Pretrained weights
  come at 224x224 (14x14); their positional embeddings are resized **bilinearly**, as
  the CLIP-ReID, LATex and VSLA-CLIP code do.
- Weights load strictly: a checkpoint must hold every key of the architecture but
  those in ``ALLOWED_MISSING`` (none), and nothing else.
- ``image_features`` gives the penultimate block's class token (CLIP-ReID's layer-11
  feature), the ``ln_post`` class token, its projection and the patch tokens;
  ``encode_image`` the projected feature and tokens. Both can insert deep visual
  prompt tokens (learned tokens after the class token, new ones at every block, as
  in VPT-deep / LATex).
- ``encode_text_embeddings`` runs the text encoder on token *embeddings*, so learned
  or computed tokens can sit inside a tokenized template (CLIP-ReID's ID tokens).
- ``reid-tiny``: a registered tiny config (2 layers, width 64) for fast CPU tests.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CLIPBackbone", "TINY", "build_clip", "load_vifi", "vifi_state"]

TINY = "reid-tiny"
# a 2-layer, 64-wide CLIP for tests and the embedded default: model_configs/reid-tiny.json
MODEL_CONFIGS = Path(__file__).parent / "model_configs"
IMAGE_SIZE = (256, 128)  # height, width of person crops
MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's normalisation
STD = (0.26862954, 0.26130258, 0.27577711)


def _open_clip():
    # Offline unless told otherwise: with the hub unreachable, open_clip retries for a
    # minute before failing. Must be set before open_clip (huggingface_hub) is imported.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import open_clip

    if TINY not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIGS)  # our configs, named by their file names
    return open_clip


ALLOWED_MISSING: tuple[str, ...] = ()  # keys a pretrained checkpoint may lack: none


def _resize_positions(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Class position + a (h, w) grid resized bilinearly from the checkpoint's square grid."""
    cls, patches = pos[:1], pos[1:]
    side = int(round(patches.shape[0] ** 0.5))
    patches = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=grid, mode="bilinear", align_corners=False)
    return torch.cat([cls, patches.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)])


def _pretrained_state(open_clip, name: str, pretrained: str) -> dict:
    path = Path(pretrained)
    try:
        if path.is_file():
            try:  # a state dict, read as plain data only; its keys are checked by _load_strictly
                state = torch.load(path, map_location="cpu", weights_only=True)
            except (RuntimeError, pickle.UnpicklingError):  # OpenAI's TorchScript file: open_clip's own loader
                return open_clip.load_openai_model(str(path), device="cpu").state_dict()
            if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                state = state["state_dict"]
            if not isinstance(state, dict):
                raise ValueError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
            return {k.removeprefix("module."): v for k, v in state.items()}
        elif pretrained in open_clip.list_pretrained_tags_by_model(name):
            model = open_clip.create_model(name, pretrained=pretrained)
        else:
            raise ValueError(
                f"pretrained {pretrained!r} is neither a file nor an open_clip tag of {name} "
                f"(tags: {', '.join(open_clip.list_pretrained_tags_by_model(name)) or 'none'})"
            )
    except ValueError:
        raise
    except Exception as exc:
        raise RuntimeError(
            f"could not get pretrained weights {pretrained!r} for {name} ({type(exc).__name__}: {exc}). "
            "Offline, download the checkpoint elsewhere and pass its local path (for OpenAI ViT-B-16, "
            "the ViT-B-16.pt file); online, unset HF_HUB_OFFLINE."
        ) from exc
    return model.state_dict()


class CLIPBackbone(nn.Module):
    """An open_clip CLIP model with ReID-shaped image input and token-level access."""

    def __init__(self, clip: nn.Module, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.clip = clip
        self.visual = clip.visual
        self.image_size = image_size
        self.grid = patch_grid(self.visual, image_size)
        self.width = self.visual.conv1.out_channels
        self.embed_dim = int(clip.text_projection.shape[1])

    # --- image -----------------------------------------------------------------

    def encode_image(
        self, images: torch.Tensor, prompts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(projected pooled feature (N, D), patch tokens (N, h*w, width)).

        ``prompts`` (layers, n, width): deep visual prompts; layer 0's are inserted
        after the class token, and every later block replaces them with its own.
        """
        x, n, _ = self._blocks(images, prompts)
        return self._project(torch.cat([x[:, :1], x[:, 1 + n :]], dim=1))  # prompts out: class + patches

    def encode_image_prompts(
        self, images: torch.Tensor, prompts, keep: int, *, ln_post: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(projected class feature (N, D), the last block's first ``keep`` prompt outputs
        (N, keep, D)), both through ``ln_post`` (unless ``ln_post=False``, as LATex's code)
        and the projection: LATex's global feature and attribute tokens."""
        x, n, _ = self._blocks(images, prompts)
        tokens = torch.cat([x[:, :1], x[:, 1 : 1 + keep]], dim=1)
        if ln_post:
            tokens = self.visual.ln_post(tokens)
        if self.visual.proj is not None:
            tokens = tokens @ self.visual.proj
        return tokens[:, 0], tokens[:, 1:]

    def image_features(
        self, images: torch.Tensor, prompts: torch.Tensor | None = None, class_shift: torch.Tensor | None = None
    ) -> dict:
        """``penultimate``: the class token after all blocks but the last, as it leaves that
        block (CLIP-ReID's layer-11 feature, width); ``cls``: the last block's class token
        through ``ln_post`` (width); ``proj``: that projected (embed_dim); ``tokens``: the
        patch tokens through ``ln_post`` and the projection. ``class_shift`` (N, width): added
        to the class token before the positional embedding (CLIP-ReID's SIE camera embedding)."""
        x, n, penultimate = self._blocks(images, prompts, class_shift)
        x = self.visual.ln_post(torch.cat([x[:, :1], x[:, 1 + n :]], dim=1))
        projected = x @ self.visual.proj if self.visual.proj is not None else x
        return {"penultimate": penultimate, "cls": x[:, 0], "proj": projected[:, 0], "tokens": projected[:, 1:]}

    def embed_patches(self, images: torch.Tensor, class_shift: torch.Tensor | None = None) -> torch.Tensor:
        """The tokens the first block sees (N, 1 + h*w, width): what open_clip's
        ``VisionTransformer._embeds`` computes (the same operations in the same order),
        with ``class_shift`` (N, width) added to the class token when given (SIE, views)."""
        v = self.visual
        x = v.conv1(images).flatten(2).transpose(1, 2)  # (N, grid, width)
        cls = v.class_embedding.to(x.dtype)
        cls = cls.expand(x.shape[0], -1) if class_shift is None else cls + class_shift.to(x.dtype)
        x = torch.cat([cls.unsqueeze(1), x], dim=1) + v.positional_embedding.to(x.dtype)
        return v.ln_pre(v.patch_dropout(x))

    def _blocks(self, images: torch.Tensor, prompts, class_shift=None) -> tuple[torch.Tensor, int, torch.Tensor]:
        """The blocks' output, the number of prompt tokens in it (after the class token) and
        the penultimate block's class token. ``prompts[i]`` (n_i, width): block i's deep
        prompts (a tensor (layers, n, width) or a list, one per block; fewer than the blocks:
        the later blocks run without); each block's replace the ones before."""
        x = self.embed_patches(images, class_shift)  # (N, 1 + h*w, width), ln_pre applied
        blocks = self.visual.transformer.resblocks
        penultimate, n = x[:, 0], 0
        for i, block in enumerate(blocks):
            if prompts is not None and i < len(prompts):
                layer = prompts[i].to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
                x = torch.cat([x[:, :1], layer, x[:, 1 + n :]], dim=1)
                n = layer.shape[1]
            x = self._block(block, x)
            if i == len(blocks) - 2:
                penultimate = x[:, 0]
        return x, n, penultimate

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, tokens = self.visual._pool(x)
        if self.visual.proj is not None:
            pooled = pooled @ self.visual.proj
        return pooled, tokens

    def _block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if getattr(self.visual.transformer, "batch_first", True):
            return block(x)
        return block(x.transpose(0, 1)).transpose(0, 1)

    # --- text ------------------------------------------------------------------

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        open_clip = _open_clip()
        return open_clip.tokenize(texts)

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.clip.token_embedding(tokens)

    def encode_text_embeddings(
        self, embeddings: torch.Tensor, eot: torch.Tensor, *, causal: bool = True
    ) -> torch.Tensor:
        """Text features of token embeddings (N, L, width); ``eot``: each row's end-token
        position. ``causal=False``: every token sees every other (LATex's code builds its
        text encoder without CLIP's mask)."""
        clip = self.clip
        x = embeddings + clip.positional_embedding.to(embeddings.dtype)
        x = clip.transformer(x, attn_mask=clip.attn_mask if causal else None)
        x = clip.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        return x @ clip.text_projection


class _DropMessage(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def patch_grid(visual: nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
    """The patch grid of ``image_size`` crops: (size - patch) // stride + 1 per side."""
    (ph, pw), (sh, sw) = visual.conv1.kernel_size, visual.conv1.stride
    return (image_size[0] - ph) // sh + 1, (image_size[1] - pw) // sw + 1


def _overlap(visual: nn.Module, stride: int, image_size: tuple[int, int]) -> None:
    """Overlapping patches (CLIP-ReID's ``STRIDE_SIZE``): the patch convolution at ``stride``,
    the positional embedding resized to the larger grid (bilinearly, as for a checkpoint's)."""
    visual.conv1.stride = (stride, stride)
    grid = patch_grid(visual, image_size)
    resized = _resize_rect_positions(visual.positional_embedding.detach(), grid, visual)
    visual.positional_embedding = nn.Parameter(resized)


def _resize_rect_positions(pos: torch.Tensor, grid: tuple[int, int], visual: nn.Module) -> torch.Tensor:
    """Class position + the patch positions of a (h, w) grid, from the current (h0, w0) grid."""
    h0 = visual.image_size[0] // visual.patch_size[0] if hasattr(visual, "image_size") else None
    count = pos.shape[0] - 1
    if h0 is None or count % h0:
        return _resize_positions(pos, grid)
    cls, patches = pos[:1], pos[1:].reshape(1, h0, count // h0, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=grid, mode="bilinear", align_corners=False)
    return torch.cat([cls, patches.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)])


def build_clip(
    name: str = "ViT-B-16",
    *,
    pretrained: str | None = None,
    image_size: tuple[int, int] = IMAGE_SIZE,
    stride: int | None = None,
) -> CLIPBackbone:
    """A CLIP backbone for ``image_size`` crops, random or from ``pretrained`` (tag or path);
    ``stride``: overlapping patches (CLIP-ReID's OLP, 12), the positions resized to the grid."""
    open_clip = _open_clip()
    if name not in open_clip.list_models():
        raise ValueError(f"unknown model {name!r}: open_clip has {', '.join(open_clip.list_models()[:8])}, ...")
    root = logging.getLogger()  # open_clip warns "No pretrained weights loaded": we load them ourselves below
    quiet = _DropMessage("No pretrained weights loaded")
    root.addFilter(quiet)
    try:
        model = open_clip.create_model(name, pretrained=None, force_image_size=image_size, force_quick_gelu=True)
    finally:
        root.removeFilter(quiet)
    if stride is not None and stride != model.visual.conv1.stride[0]:  # before loading: one resize, as CLIP-ReID
        _overlap(model.visual, stride, image_size)
    if pretrained:
        state = _pretrained_state(open_clip, name, pretrained)
        pos = "visual.positional_embedding"
        grid = patch_grid(model.visual, image_size)
        if state[pos].shape != model.visual.positional_embedding.shape:
            state[pos] = _resize_positions(state[pos], grid)
        _load_strictly(model, state, pretrained)
    return CLIPBackbone(model, image_size)


def _load_strictly(model: nn.Module, state: dict, source: str) -> None:
    """Every key of the architecture from ``state`` (but ``ALLOWED_MISSING``), no key it does not have."""
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in ALLOWED_MISSING]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{source}: not a checkpoint of this architecture: missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]} ({len(missing)} and {len(result.unexpected_keys)} in all)"
        )


# ViFi-CLIP's trainer names the two encoders; VSLA-CLIP's converted file uses CLIP's own names.
VIFI_PREFIXES = (("image_encoder.", "visual."), ("text_encoder.", ""))
VIFI_DROPPED = (
    "prompt_learner.",
    "token_embedding.",
)  # FT-CLIP keeps CLIP's token table (VSLA-CLIP model/make_model.py:208)


def vifi_state(state: dict, source: str) -> dict:
    """A ViFi-CLIP checkpoint as CLIP parameter names: ``{"model": ...}`` or a bare state dict,
    ``module.`` prefixes, the trainer's ``image_encoder.`` / ``text_encoder.`` names mapped to
    CLIP's ``visual.`` / top-level ones, prompt learners and the token table left out."""
    if isinstance(state.get("model"), dict):
        state = state["model"]
    out = {}
    for key, value in state.items():
        if not isinstance(key, str) or not torch.is_tensor(value):
            raise ValueError(f"{source}: not a state dict (key {key!r} holds {type(value).__name__})")
        key = key.removeprefix("module.")
        for old, new in VIFI_PREFIXES:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        if not key.startswith(VIFI_DROPPED):
            out[key] = value
    return out


def load_vifi(backbone: CLIPBackbone, path: str | Path) -> None:
    """Replace both encoders of ``backbone`` by a ViFi-CLIP checkpoint's (FT-CLIP's official
    start, ``USE_VIFI_WEIGHT``): every CLIP parameter but the token table, strictly."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no ViFi-CLIP checkpoint there (FT-CLIP's official start; get vifi_weight.pth from the "
            "ViFi-CLIP release, or drop the vifi option to start from the pretrained CLIP)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path}: refused: not a plain-data state dict ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    state = vifi_state(state, str(path))
    pos = "visual.positional_embedding"
    if pos in state and state[pos].shape != backbone.visual.positional_embedding.shape:
        state[pos] = _resize_positions(state[pos], backbone.grid)
    state["token_embedding.weight"] = backbone.clip.token_embedding.weight.detach().clone()
    _load_strictly(backbone.clip, state, str(path))
