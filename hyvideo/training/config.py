"""Run configs of ``train_dit.py`` and ``train_vae.py``: frozen dataclasses filled from YAML and ``--set``.

Precedence: dataclass defaults < YAML file (``--config``) < ``--set a.b=c`` overrides (values parsed as
YAML scalars, so ``--set optim.lr=3e-4`` is a float and ``--set data.resolutions=[256,512]`` a list).
Unknown keys raise :class:`ConfigError` naming the allowed keys, so a typo never silently trains with a
default. Every checkpoint stores the resolved config (:func:`to_dict`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config key or value is invalid (unknown key, bad type, inconsistent values); the training CLIs print
    its message and exit with status 2."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


# ---------------------------------------------------------------------------------------------- sections
@dataclass(frozen=True, kw_only=True)
class RunConfig:
    out_dir: str = "runs/debug"  # checkpoints/, tb/, samples/ are written below it (rank 0 only)
    seed: int = 0  # base seed: data order, noise, t and dropout derive from (seed, step, sample index)
    max_steps: int = 10  # optimizer steps
    log_every: int = 1  # steps between console/TensorBoard scalars
    ckpt_every: int = 0  # steps between atomic checkpoints (0 = only at the end)
    sample_every: int = 0  # steps between sample videos written to TensorBoard (0 = never)
    resume: str = "auto"  # "auto" (latest in out_dir if any), "never", or a checkpoint path
    init_from: str = ""  # previous stage's checkpoint: weights (+EMA) only, fresh optimizer and step 0
    stop_after: int = 0  # debugging/tests: exit cleanly after this step without finishing (0 = off)
    async_checkpoint: bool = False  # write checkpoints in a background thread (torch.distributed.checkpoint)
    tensorboard: bool = True
    tqdm: bool = True

    def __post_init__(self):
        _require(self.max_steps > 0, f"run.max_steps must be > 0 (optimizer steps to train), got {self.max_steps}")
        _require(self.log_every >= 1, f"run.log_every must be >= 1, got {self.log_every}")
        for key in ("ckpt_every", "sample_every", "stop_after"):
            _require(getattr(self, key) >= 0, f"run.{key} must be >= 0 (0 = off), got {getattr(self, key)}")
        _require(bool(self.resume), "run.resume must be 'auto', 'never' or a checkpoint path, got ''")
        _require(bool(self.out_dir), "run.out_dir must be a folder, got ''")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    manifest: str = ""  # JSONL or Parquet manifest (see hyvideo/data/manifest.py); "" = none
    latent_cache: str = ""  # DiT only: directory written by scripts/encode_latents.py (used instead of decoding)
    resolutions: tuple[str, ...] = ("256",)  # bucket tiers (hyvideo/data/buckets.py BUCKET_BASES)
    num_frames: int = 1  # frames per video sample, 1 + 4k (images are always 1 frame)
    fps: float = 24.0  # frames are sampled at this rate (stride = round(source_fps / fps), >= 1)
    video_batch_size: int = 1  # micro-batch per rank for video buckets
    image_batch_size: int = 1  # micro-batch per rank for image (1-frame) buckets
    mix: tuple[tuple[str, int], ...] = (("video", 1), ("image", 1))  # batches per kind in each cycle
    use_images_from_videos: bool = False  # also draw 1-frame samples from video clips (image kind)
    num_workers: int = 0  # DataLoader workers per rank
    random_crop: bool = False  # False = centre crop to the bucket (deterministic)
    native_crop: bool = False  # crop buckets at the source resolution (no downscale): VAE training on crops

    def __post_init__(self):
        if self.num_frames < 1 or (self.num_frames - 1) % 4:
            raise ConfigError(f"data.num_frames must be 1 + 4k, got {self.num_frames}")
        if self.video_batch_size < 1 or self.image_batch_size < 1:
            raise ConfigError("data.video_batch_size and data.image_batch_size must be >= 1")
        for kind, weight in self.mix:
            if kind not in ("video", "image") or weight < 0:
                raise ConfigError(f"data.mix entries are (video|image, weight >= 0), got {(kind, weight)}")
        _require(any(w > 0 for _, w in self.mix), f"data.mix needs a kind with weight > 0, got {list(self.mix)}")
        _require(_finite(self.fps) and self.fps > 0, f"data.fps must be > 0 (frames per second), got {self.fps}")
        _require(self.num_workers >= 0, f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    lr: float = 1e-4  # AdamW peak lr (released I2V trainer: 1e-4)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warmup from warmup_min_lr to lr, then constant
    warmup_min_lr: float = 1e-6
    decay_steps: int = 0  # > 0: cosine decay from lr (after warmup) to min_lr at this step, then min_lr; 0 = constant
    min_lr: float = 0.0  # floor of the cosine decay (used only when decay_steps > 0)
    grad_clip: float = 1.0  # max global grad norm (0 = off)
    grad_accum: int = 1  # micro-steps per optimizer step
    ema_decay: float = 0.0  # 0 = no EMA weights; e.g. 0.9999

    def __post_init__(self):
        if self.grad_accum < 1:
            raise ConfigError(f"optim.grad_accum must be >= 1, got {self.grad_accum}")
        if self.decay_steps < 0 or (self.decay_steps and self.decay_steps <= self.warmup_steps):
            raise ConfigError(f"optim.decay_steps must be 0 (no decay) or > warmup_steps={self.warmup_steps}, "
                              f"got {self.decay_steps}")
        if self.min_lr < 0:
            raise ConfigError(f"optim.min_lr must be >= 0, got {self.min_lr}")
        _require(_finite(self.lr) and self.lr > 0, f"optim.lr must be a finite number > 0, got {self.lr}")
        _require(all(_finite(b) and 0.0 <= b < 1.0 for b in self.betas),
                 f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}")
        _require(_finite(self.eps) and self.eps > 0, f"optim.eps must be > 0, got {self.eps}")
        _require(_finite(self.weight_decay) and self.weight_decay >= 0,
                 f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        _require(self.warmup_steps >= 0, f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        _require(_finite(self.warmup_min_lr) and self.warmup_min_lr >= 0,
                 f"optim.warmup_min_lr must be >= 0, got {self.warmup_min_lr}")
        _require(_finite(self.grad_clip) and self.grad_clip >= 0,
                 f"optim.grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        _require(_finite(self.ema_decay) and 0.0 <= self.ema_decay < 1.0,
                 f"optim.ema_decay must be in [0, 1) (0 = no EMA), got {self.ema_decay}")


@dataclass(frozen=True, kw_only=True)
class ParallelConfig:
    engine: str = "fsdp"  # "fsdp" (FSDP2 fully_shard), "deepspeed" (ZeRO, if installed), "none"
    zero_stage: int = 2  # deepspeed only
    sp_degree: int = 1  # Ulysses sequence-parallel degree; world_size % sp_degree == 0
    precision: str = "fp32"  # "bf16" (FSDP2 MixedPrecisionPolicy, fp32 master/reduce) or "fp32"
    activation_checkpointing: bool = False  # per DiT/VAE block
    compile: bool = False  # torch.compile per block (GPU)
    backend: str = ""  # process-group backend; "" = nccl on CUDA, gloo on CPU

    def __post_init__(self):
        if self.engine not in ("fsdp", "deepspeed", "none"):
            raise ConfigError(f"parallel.engine must be fsdp|deepspeed|none, got {self.engine!r}")
        if self.precision not in ("bf16", "fp32"):
            raise ConfigError(f"parallel.precision must be bf16|fp32, got {self.precision!r}")
        if self.sp_degree < 1:
            raise ConfigError(f"parallel.sp_degree must be >= 1, got {self.sp_degree}")


@dataclass(frozen=True, kw_only=True)
class FlowConfig:
    timestep_sampling: str = "logit_normal"  # or "uniform"
    shift: float = 1.0  # SD3 shift applied to training sigmas (released I2V script: 7.0)
    logit_mean: float = 0.0
    logit_std: float = 1.0
    text_dropout: float = 0.1  # probability of replacing a caption by "" (CFG training)
    guidance_scale: float = 6.0  # embedded guidance fed to guidance_in (only if the DiT has one)
    sample_steps: int = 20  # Euler steps for sample videos
    sample_shift: float = 7.0
    i2v_prob: float = 1.0  # image-to-video DiTs: share of samples conditioned on their first frame (rest: T2V)

    def __post_init__(self):
        _require(_finite(self.i2v_prob) and 0.0 <= self.i2v_prob <= 1.0,
                 f"flow.i2v_prob must be in [0, 1], got {self.i2v_prob}")
        if self.timestep_sampling not in ("logit_normal", "uniform"):
            raise ConfigError(f"flow.timestep_sampling must be logit_normal|uniform, got {self.timestep_sampling!r}")
        if not 0.0 <= self.text_dropout <= 1.0:
            raise ConfigError(f"flow.text_dropout must be in [0, 1], got {self.text_dropout}")
        for key in ("shift", "logit_std", "sample_shift"):
            _require(_finite(getattr(self, key)) and getattr(self, key) > 0,
                     f"flow.{key} must be > 0, got {getattr(self, key)}")
        _require(self.sample_steps >= 1, f"flow.sample_steps must be >= 1, got {self.sample_steps}")


@dataclass(frozen=True, kw_only=True)
class DiTModelConfig:
    dit_config: str = "hyvideo/configs/dit_tiny.json"  # JSON of HYVideoDiffusionTransformer kwargs
    vae_config: str = "hyvideo/configs/vae_tiny.json"  # JSON of AutoencoderKLCausal3D kwargs (on-the-fly latents)
    vae_weights: str = ""  # VAE state dict (.pt/.safetensors); "" = random (tests only)
    vae_tiling: bool = True  # tiled VAE encode/decode (bounded memory; needed from 360p up on a GPU)
    text_encoder: str = "tiny"  # "tiny" (hyvideo.testing.tiny_text, offline) or a directory of released encoders
    text_max_length: int = 32  # LLM tokens kept (released: 256)
    latent_scale: float = 0.476986  # multiplies VAE latents (caches store them unscaled)
    # DiT text tokens: "llm+clip" (released: LLM states as tokens, CLIP pooled as the vector) or "clip" (the
    # ablation: CLIP's per-token states as tokens; dit_config's text_states_dim must be CLIP's hidden size)
    text_conditioning: str = "llm+clip"

    def __post_init__(self):
        _require(self.text_conditioning in TEXT_CONDITIONINGS, f"model.text_conditioning must be one of "
                 f"{list(TEXT_CONDITIONINGS)}, got {self.text_conditioning!r}")


TEXT_CONDITIONINGS = ("llm+clip", "clip")
LORA_BASE_DTYPES = ("fp32", "bf16", "fp8")


@dataclass(frozen=True, kw_only=True)
class LoraConfig:
    """LoRA fine-tuning (``hyvideo.lora``): a frozen base DiT, trainable low-rank adapters. ``rank: 0`` = full
    training. Defaults target the attention and MLP linears of the dual- and single-stream blocks."""

    rank: int = 0  # LoRA rank r (0 = off: full fine-tune)
    alpha: float | None = None  # delta_W = alpha / rank * B A; None = rank (scale 1)
    dropout: float = 0.0  # on the LoRA branch input
    target_modules: list[str] = field(default_factory=list)  # linear-name suffixes; [] = hyvideo.lora.DEFAULT_TARGETS
    include_modulation: bool = False  # also adapt img_mod / txt_mod / modulation linears
    base_dtype: str = "bf16"  # frozen base weights: fp32, bf16, or fp8 (e4m3 block linears, hyvideo.accel.fp8)
    block_swap: bool = False  # base block weights in CPU memory, swapped in per use (hyvideo.accel.block_swap)
    export_style: str = "diffusers"  # exported file's key style: diffusers, musubi, comfyui

    def __post_init__(self):
        _require(isinstance(self.rank, int) and self.rank >= 0, f"lora.rank must be an integer >= 0 (0 = full "
                 f"fine-tune), got {self.rank!r}")
        _require(self.alpha is None or (_finite(self.alpha) and self.alpha > 0),
                 f"lora.alpha must be > 0 (or null = rank), got {self.alpha!r}")
        _require(_finite(self.dropout) and 0.0 <= self.dropout < 1.0, f"lora.dropout must be in [0, 1), got "
                 f"{self.dropout!r}")
        _require(self.base_dtype in LORA_BASE_DTYPES, f"lora.base_dtype {self.base_dtype!r} is not one of "
                 f"{LORA_BASE_DTYPES}")
        _require(self.export_style in ("diffusers", "musubi", "comfyui"), f"lora.export_style "
                 f"{self.export_style!r} is not one of diffusers, musubi, comfyui")


@dataclass(frozen=True, kw_only=True)
class DiTTrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    model: DiTModelConfig = field(default_factory=DiTModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass(frozen=True, kw_only=True)
class VAELossConfig:
    l1_weight: float = 1.0
    mse_weight: float = 0.0  # squared error on top of L1 (nano: small objects on flat backgrounds, see vae.yaml)
    sample_posterior: bool = True  # decode z ~ q(z|x) (released); False = its mean (diffusers' sample_posterior=False)
    lpips_weight: float = 0.1
    adv_weight: float = 0.05  # generator hinge loss weight once the discriminator is on
    kl_weight: float = 1e-6
    disc_start: int = 1000  # step at which the 3D patch discriminator (and the adversarial term) starts
    disc_lr: float = 1e-4
    disc_channels: int = 64
    disc_layers: int = 3
    lpips_vgg: str = ""  # torchvision vgg16 state dict; "" = random trunk (tests only)
    lpips_lin: str = ""  # lpips package's weights/v0.1/vgg.pth; "" = random heads (tests only)

    def __post_init__(self):
        for key in ("l1_weight", "mse_weight", "lpips_weight", "adv_weight", "kl_weight"):
            _require(_finite(getattr(self, key)) and getattr(self, key) >= 0,
                     f"loss.{key} must be >= 0, got {getattr(self, key)}")
        _require(_finite(self.disc_lr) and self.disc_lr > 0, f"loss.disc_lr must be > 0, got {self.disc_lr}")
        _require(self.disc_start >= 0, f"loss.disc_start must be >= 0, got {self.disc_start}")
        _require(self.disc_channels >= 1 and self.disc_layers >= 1,
                 f"loss.disc_channels and loss.disc_layers must be >= 1, got {self.disc_channels}, "
                 f"{self.disc_layers}")


@dataclass(frozen=True, kw_only=True)
class CurriculumStage:
    start_step: int = 0  # first step at which this stage's data settings apply
    resolutions: tuple[str, ...] = ("256",)
    num_frames: int = 17
    video_batch_size: int = 0  # micro-batch of this stage's video buckets; 0 = data.video_batch_size
    image_batch_size: int = 0  # micro-batch of this stage's image buckets; 0 = data.image_batch_size
    crop_px: int = 0  # > 0: train on a random crop_px x crop_px window of each sample (multiple of 8); 0 = whole

    def __post_init__(self):
        for key in ("video_batch_size", "image_batch_size"):
            _require(getattr(self, key) >= 0,
                     f"curriculum {key} must be >= 0 (0 = data.{key}), got {getattr(self, key)}")
        _require(self.crop_px >= 0 and self.crop_px % 8 == 0,
                 f"curriculum crop_px must be 0 or a positive multiple of 8 px, got {self.crop_px}")


@dataclass(frozen=True, kw_only=True)
class VAEModelConfig:
    vae_config: str = "hyvideo/configs/vae_tiny.json"
    init_weights: str = ""  # optional VAE state dict to start from


@dataclass(frozen=True, kw_only=True)
class VAETrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    model: VAEModelConfig = field(default_factory=VAEModelConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(mix=(("video", 4), ("image", 1))))
    loss: VAELossConfig = field(default_factory=VAELossConfig)
    curriculum: tuple[CurriculumStage, ...] = ()  # low-to-high resolution; empty = data.* throughout
    optim: OptimConfig = field(default_factory=OptimConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)


# ---------------------------------------------------------------------------------------------- loading
def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Convert a YAML value to the annotated type ``tp`` (dataclasses, tuples, scalars)."""
    origin = typing.get_origin(tp)
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, f"{where}.")
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, dict):  # {"video": 4} -> (("video", 4),)
            value = list(value.items())
        if not isinstance(value, (list, tuple)):
            value = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, data: dict, where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown config key(s) {[f'{where}{k}' for k in unknown]} in {cls.__name__}; "
                          f"allowed: {names}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if _is_dataclass_type(hints[f.name]) and isinstance(value, dict) \
                and f.default_factory is not dataclasses.MISSING:
            value = {**to_dict(f.default_factory()), **value}  # keep this section's own defaults (e.g. VAE mix 4:1)
        kwargs[f.name] = _coerce(hints[f.name], value, f"{where}{f.name}")
    return cls(**kwargs)


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {k} is not a section")
    node[keys[-1]] = value


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()):
    """Build a frozen config of type ``cls`` from defaults, a YAML file and ``a.b=c`` overrides.

    Args:
        cls: the top-level dataclass (e.g. :class:`DiTTrainConfig`).
        path: YAML file whose nested mapping mirrors ``cls``; None = defaults only.
        overrides: strings ``"section.key=value"``; the value is parsed with ``yaml.safe_load``.

    Returns:
        An instance of ``cls``; nested sections are their dataclasses, lists become tuples.

    Raises:
        ConfigError: missing or malformed file, unknown key, malformed override, a value of the wrong type or
            out of range.
    """
    tree: dict = {}
    if path:
        if not Path(path).is_file():
            raise ConfigError(f"--config file not found: {path}")
        try:
            tree = yaml.safe_load(Path(path).read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"--config {path} is not valid YAML: {e}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not a YAML scalar/list: {e}") from None
        _set_path(tree, key.strip(), value)
    return _build(cls, tree)


def to_dict(cfg: Any) -> dict:
    """Plain nested dict (lists for tuples) of a config, for checkpoints and YAML dumps."""
    def conv(x):
        if dataclasses.is_dataclass(x):
            return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (list, tuple)):
            return [conv(v) for v in x]
        return x
    return conv(cfg)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
