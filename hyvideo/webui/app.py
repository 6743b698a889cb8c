"""The gradio page of ``gradio_server.py``: inputs, progress, the video player, this session's history.

Everything runs through one :class:`hyvideo.webui.engine.Engine` (one model in memory). gradio's queue serialises
the ``generate`` event (``default_concurrency_limit=1``; the page shows each user's queue position); the engine's
lock also holds when a cancelled job is still finishing its step. Cancel (the button, or a client's
``job.cancel()``) cancels the event's task, which sets the job's cancel flag: sampling stops at the next step or
decode tile. Errors are shown as messages in the page; the server keeps serving.

Offline: no analytics (``GRADIO_ANALYTICS_ENABLED=False``, set by ``gradio_server.py`` before gradio is imported),
no server-side rendering (node), system fonts instead of Google Fonts, so the page needs nothing but this server.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from pathlib import Path

import gradio as gr

from hyvideo.webui.engine import IMAGE_FORMATS, RANDOM_SEED_MAX, Engine, Job, JobCancelled, JobError

log = logging.getLogger(__name__)
NO_LORA = "(none)"
HISTORY_HEADERS = ["#", "seed", "prompt", "size (HxW)", "frames", "steps", "seconds", "video"]
FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # local fonts: no Google Fonts fetch
MONO_FONTS = ["ui-monospace", "monospace"]


def image_upload(**kwargs) -> gr.Image:
    """A ``gr.Image`` whose unreadable uploads become a message in the page instead of a preprocessing traceback
    (the engine then checks format and size: :meth:`Engine.check_image`).

    Wraps the instance's ``preprocess`` rather than subclassing: gradio writes a ``.pyi`` stub beside any module
    that defines a component subclass.
    """
    image = gr.Image(**kwargs)
    inner = image.preprocess

    def preprocess(payload):
        try:
            return inner(payload)
        except (OSError, ValueError, SyntaxError) as e:  # PIL.UnidentifiedImageError is an OSError
            name = getattr(payload, "orig_name", None) or "the upload"
            raise gr.Error(f"{name} is not a readable image ({e.__class__.__name__}); accepted: "
                           f"{', '.join(IMAGE_FORMATS)}", duration=None, print_exception=False) from None

    image.preprocess = preprocess
    return image


def theme() -> gr.themes.Base:
    return gr.themes.Default(font=FONTS, font_mono=MONO_FONTS)


def _aspect_update(engine: Engine, tier: str, aspect: str | None):
    aspects = engine.sizes.aspects(tier)
    value = aspect if aspect in aspects else aspects[0]
    return gr.update(choices=[(engine.sizes.label(tier, a), a) for a in aspects], value=value)


def _size_text(engine: Engine, tier: str, aspect: str) -> str:
    try:
        h, w = engine.sizes.size(tier, aspect)
    except ValueError as e:
        return str(e)
    return f"Size: **{h} x {w}** pixels (H x W)"


def _history_rows(history: list[dict]) -> list[list]:
    rows = []
    for i, item in enumerate(history, 1):
        p = item["params"]
        a = p.get("args", {})
        rows.append([i, item["seed"], a.get("prompt", "")[:80], f"{p.get('height')}x{p.get('width')}",
                     p.get("frames"), a.get("infer_steps"), p.get("seconds"), Path(item["video"]).name])
    return rows


def _result_text(item: dict) -> str:
    p = item["params"]
    return (f"Seed **{item['seed']}**, {p.get('frames')} frames at {p.get('height')}x{p.get('width')} (H x W), "
            f"{p.get('seconds')} s; saved to `{p.get('video')}`")


def make_generate(engine: Engine):
    """The ``generate`` event handler (async, so a cancelled event reaches the running job)."""

    async def generate(prompt, negative_prompt, resolution, aspect, video_length, infer_steps, seed, flow_shift,
                       embedded_guidance_scale, cfg_scale, cache_threshold, vae_tiling, image, lora, lora_scale,
                       history, progress=gr.Progress()):  # noqa: B008 - gradio injects the tracker
        job = Job(prompt=prompt or "", negative_prompt=negative_prompt or "", resolution=resolution,
                  aspect=aspect, video_length=video_length, infer_steps=infer_steps,
                  seed=None if seed is None else seed, flow_shift=flow_shift,
                  embedded_guidance_scale=embedded_guidance_scale, cfg_scale=cfg_scale,
                  cache_threshold=cache_threshold, vae_tiling=vae_tiling, image=image or None,
                  lora=None if lora in (None, "", NO_LORA) else lora, lora_scale=lora_scale)
        cancel = threading.Event()

        def report(phase: str, done: int, total: int) -> None:
            progress((done, total), desc=phase, unit="tiles" if phase == "VAE decode" else "steps")

        progress(0, desc="waiting for the model")
        try:  # to_thread copies this task's context, so progress() in the worker reaches this event
            result = await asyncio.to_thread(engine.run, job, report, cancel)
        except asyncio.CancelledError:
            cancel.set()  # the worker stops at its next step / tile and releases the model
            raise
        except JobCancelled as e:
            raise gr.Error(f"cancelled ({e})", print_exception=False) from None
        except JobError as e:
            raise gr.Error(str(e), duration=None, print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - a bug must not take the server down; the log has the traceback
            log.exception("job failed")
            raise gr.Error(f"internal error: {e.__class__.__name__}: {e}", duration=None,
                           print_exception=False) from None
        item = {"video": str(result.video), "params": result.params, "seed": result.seed}
        history = [*(history or []), item]
        return str(result.video), _result_text(item), result.params, _history_rows(history), history

    return generate


def build_demo(engine: Engine, *, title: str = "hyvideo", model_note: str = "",
               default_cache_threshold: float = 0.0) -> gr.Blocks:
    """The page. API: ``/generate`` (inputs in page order, see :func:`make_generate`), ``/random_seed``.

    Returns:
        The ``gr.Blocks`` (not launched; ``demo.queue(...)`` and ``demo.launch(...)`` are the caller's).
    """
    kind = "image-to-video" if engine.is_i2v else "text-to-video"
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"## {title}: {kind}\n{model_note}", elem_id="header")
        history = gr.State([])
        with gr.Row():
            with gr.Column(scale=1):
                inp = _inputs(engine, default_cache_threshold)
            with gr.Column(scale=1):
                out = {"video": gr.Video(label="Video", buttons=["download"], interactive=False, height=400,
                                         elem_id="video"),
                       "result": gr.Markdown("", elem_id="result"),
                       "params": gr.JSON(label="Parameters (sidecar JSON)", max_height=320, elem_id="params"),
                       "history": gr.Dataframe(headers=HISTORY_HEADERS, value=[], interactive=False,
                                               label="This session's videos (select a row to show it)",
                                               elem_id="history")}
        _wire(demo, engine, inp, out, history)
    return demo


def _inputs(engine: Engine, default_cache_threshold: float) -> dict:
    """The input components, in the ``/generate`` API order, plus the page-only buttons."""
    table = engine.sizes
    d = {"video_length": min(129, table.max_video_length), "infer_steps": 50, "flow_shift": 7.0,
         "embedded_guidance_scale": 6.0, "cfg_scale": 1.0, "negative_prompt": "", **table.defaults}
    tier0 = table.tiers()[0]
    aspect0 = table.aspects(tier0)[0]
    c = {"prompt": gr.Textbox(label="Prompt", lines=3, elem_id="prompt",
                              placeholder="A cat walks on the grass, realistic style."),
         "negative": gr.Textbox(label="Negative prompt (used when cfg scale > 1)", lines=1,
                                value=d["negative_prompt"], elem_id="negative-prompt"),
         "image": image_upload(label="Image (first frame)", type="filepath", image_mode=None, sources=["upload"],
                               visible=engine.is_i2v, elem_id="image")}
    with gr.Row():
        c["resolution"] = gr.Dropdown(table.tiers(), value=tier0, label="Resolution", elem_id="resolution")
        c["aspect"] = gr.Dropdown([(table.label(tier0, a), a) for a in table.aspects(tier0)], value=aspect0,
                                  label="Aspect ratio (W:H)", elem_id="aspect")
    c["size"] = gr.Markdown(_size_text(engine, tier0, aspect0), elem_id="size")
    c["video_length"] = gr.Slider(1, table.max_video_length, value=d["video_length"], step=4,
                                  label="Video length (frames, 4n+1)", elem_id="video-length")
    c["steps"] = gr.Slider(1, 100, value=d["infer_steps"], step=1, label="Denoising steps", elem_id="steps")
    with gr.Row():
        c["seed"] = gr.Number(-1, precision=0, label="Seed (-1 = random)", elem_id="seed", scale=4)
        c["dice"] = gr.Button("Random seed", elem_id="random-seed", scale=1)
    c["flow_shift"] = gr.Slider(1.0, 20.0, value=d["flow_shift"], step=0.5, label="Flow shift",
                                elem_id="flow-shift")
    c["guidance"] = gr.Slider(1.0, 20.0, value=d["embedded_guidance_scale"], step=0.5,
                              label="Embedded guidance scale", elem_id="guidance")
    c["cfg"] = gr.Slider(1.0, 20.0, value=d["cfg_scale"], step=0.5,
                         label="CFG scale (> 1 runs the negative prompt too: 2x slower)", elem_id="cfg")
    with gr.Row(visible=engine.lora_dir is not None):
        c["lora"] = gr.Dropdown([NO_LORA, *engine.loras()], value=NO_LORA, label="LoRA", elem_id="lora")
        c["lora_scale"] = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="LoRA scale", elem_id="lora-scale")
    with gr.Accordion("Advanced speed options", open=False):
        c["cache"] = gr.Slider(0.0, 1.0, value=default_cache_threshold, step=0.01, elem_id="cache-threshold",
                               label="Step cache threshold (0 = off; 0.15 skips ~2/3 of the DiT steps)")
        c["tiling"] = gr.Checkbox(True, label="VAE tiling (less memory)", elem_id="vae-tiling")
    with gr.Row():
        c["go"] = gr.Button("Generate", variant="primary", elem_id="generate")
        c["stop"] = gr.Button("Cancel", variant="stop", elem_id="cancel")
    return c


API_INPUTS = ("prompt", "negative", "resolution", "aspect", "video_length", "steps", "seed", "flow_shift", "guidance",
              "cfg", "cache", "tiling", "image", "lora", "lora_scale")


def _wire(demo: gr.Blocks, engine: Engine, c: dict, out: dict, history: gr.State) -> None:
    """The events: size labels, random seed, generate (queued), cancel, history selection, LoRA list refresh."""
    c["resolution"].change(lambda t, a: (_aspect_update(engine, t, a), _size_text(engine, t, _pick(engine, t, a))),
                           [c["resolution"], c["aspect"]], [c["aspect"], c["size"]], api_visibility="private",
                           queue=False)
    c["aspect"].change(lambda t, a: _size_text(engine, t, a), [c["resolution"], c["aspect"]], c["size"],
                       api_visibility="private", queue=False)
    c["dice"].click(lambda: random.randint(0, RANDOM_SEED_MAX), None, c["seed"], api_name="random_seed", queue=False)
    shown = [out["video"], out["result"], out["params"]]
    event = c["go"].click(make_generate(engine), [*(c[k] for k in API_INPUTS), history],
                          [*shown, out["history"], history], api_name="generate")
    c["stop"].click(None, None, None, cancels=[event], api_visibility="private")
    out["history"].select(_show_item, history, shown, api_visibility="private", queue=False)
    if engine.lora_dir is not None:  # LoRA files added while the server runs appear on the next page load
        demo.load(lambda: gr.update(choices=[NO_LORA, *engine.loras()]), None, c["lora"], api_visibility="private",
                  queue=False)


def _pick(engine: Engine, tier: str, aspect: str) -> str:
    aspects = engine.sizes.aspects(tier)
    return aspect if aspect in aspects else aspects[0]


def _show_item(history: list[dict], evt: gr.SelectData):
    item = history[evt.index[0]]
    return item["video"], _result_text(item), item["params"]
