"""Probe the CLIs with bad and edge-case inputs, as a careful user would; count how each one ends.

    python scripts/probe_bad_inputs.py                 # all CLIs (~10 min on 2 cores)
    python scripts/probe_bad_inputs.py --only sample   # sample | train | curate
    python scripts/probe_bad_inputs.py --json probe.json

Every probe runs the real CLI in a subprocess (``sample_video.py``, ``train_dit.py`` / ``train_vae.py``,
``scripts/curate.py``) on tiny models and real clips, with a time limit, and is classified:

- ``clean``: the expected outcome: a refused input exits 2 with one ``error:`` line naming the value and no
  traceback; an accepted edge case exits 0 with its output (a logged skip counts as clean);
- ``crash``: a traceback, or an exit status other than the expected one;
- ``garbage``: a bad input accepted without a word (exit 0), or an output that fails its check;
- ``lost``: a finished result that was not saved;
- ``hang``: the time limit was reached.

The curation probes are the cases of ``tests/curation/test_curate_bad_inputs.py`` (one list for both).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PY = sys.executable
PROMPT = "a red circle moves to the right"


@dataclass
class Probe:
    """One invocation and what it should do (``expect`` "reject": exit 2; "accept": exit 0 and ``check`` holds)."""

    cli: str
    name: str
    argv: list[str]
    expect: str = "reject"
    token: str = ""  # must appear in the error line (reject) or in the output (accept)
    check: object = None  # accept: callable(workdir) -> "" (ok) or "lost: ..." / "garbage: ..."
    env: dict = field(default_factory=dict)


def _mp4s(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("*.mp4")) if Path(folder).is_dir() else []


def _saved(folder):
    def check(_work):
        files = _mp4s(folder)
        if not files:
            return f"lost: no video in {folder}"
        return "" if all(f.with_suffix(".json").is_file() and len(f.name.encode()) <= 255 for f in files) \
            else "garbage: missing sidecar or over-long name"
    return check


def sample_probes(w: Path) -> list[Probe]:
    tiny, out = str(w / "tiny"), str(w / "out")
    base = ["--model-base", tiny, "--prompt", PROMPT, "--video-size", "32", "32", "--video-length", "5",
            "--infer-steps", "2", "--seed", "1", "--device", "cpu", "--save-path", out]

    def s(name, *changes, expect="reject", token="", check=None, drop=()):
        argv = [a for a in base]
        for flag in drop:
            i = argv.index(flag)
            del argv[i: i + 2]
        return Probe("sample", name, ["sample_video.py", *argv, *changes], expect, token, check)

    bad_file = w / "notaweight.pt"
    bad_file.write_text("not a checkpoint")
    return [
        s("length_not_4n1", "--video-length", "10", token="4n+1"),
        s("length_zero", "--video-length", "0", token="4n+1"),
        s("size_not_16", "--video-size", "30", "32", token="multiples of 16"),
        s("size_negative", "--video-size", "-32", "32", token="multiples of 16"),
        s("size_three_values", "--video-size", "32", "32", "32", token="--video-size"),
        s("size_huge", "--video-size", "100000", "100000", "--no-vae-tiling", token="GiB"),
        s("prompt_empty", "--prompt", "", token="prompt is empty"),
        s("prompt_blank", "--prompt", "   ", token="prompt is empty"),
        s("prompt_missing", drop=("--prompt",), token="prompt is empty"),
        s("steps_zero", "--infer-steps", "0", token="must be >= 1"),
        s("batch_zero", "--batch-size", "0", token="must be >= 1"),
        s("num_videos_zero", "--num-videos", "0", token="must be >= 1"),
        s("fps_zero", "--fps", "0", token="--fps"),
        s("seed_negative", "--seed", "-1", token="outside"),
        s("seed_over_64bit", "--seed", str(2**64), token="outside"),
        s("flow_shift_zero", "--flow-shift", "0", token="flow shift"),
        s("flow_shift_nan", "--flow-shift", "nan", token="flow shift"),
        s("guidance_nan", "--embedded-cfg-scale", "nan", token="finite"),
        s("guidance_inf", "--embedded-cfg-scale", "inf", token="finite"),
        s("cfg_nan", "--cfg-scale", "nan", token="finite"),
        s("cache_negative", "--cache-threshold", "-1", token="--cache-threshold"),
        s("precision_unknown", "--precision", "fp8", token="unknown --precision"),
        s("vae_precision_unknown", "--vae-precision", "int8", token="unknown --vae-precision"),
        s("ulysses_zero", "--ulysses-degree", "0", token="--ulysses-degree"),
        s("ulysses_no_torchrun", "--ulysses-degree", "2", token="not divisible"),
        s("two_offload_flags", "--use-cpu-offload", "--model-cpu-offload", token="one offload flag"),
        s("save_path_is_file", "--save-path", str(bad_file), token="is a file"),
        s("model_base_missing", "--model-base", str(w / "absent"), token=str(w / "absent")),
        s("dit_weight_missing", "--dit-weight", str(w / "nope.pt"), token="nope.pt"),
        s("dit_weight_not_a_checkpoint", "--dit-weight", str(bad_file), token="notaweight.pt"),
        s("dit_weight_nan", "--dit-weight", str(w / "nan" / "mp_rank_00_model_states.pt"), token="non-finite"),
        s("dit_weight_pickle_payload", "--dit-weight", str(w / "payload" / "mp_rank_00_model_states.pt"),
          token="refused to unpickle"),
        s("dit_weight_wrong_size", "--dit-weight", str(w / "wrong" / "mp_rank_00_model_states.pt"),
          token="do not match"),
        s("preset_unknown", "--model", "HYVideo-T/9", "--model-base", str(w / "nocfg"), token="HYVideo-T/9"),
        s("lora_missing", "--lora-path", str(w / "none.safetensors"), token="does not exist"),
        s("lora_scale_count", "--lora-path", str(bad_file), "--lora-scale", "1", "--lora-scale", "2",
          token="--lora-scale values"),
        s("prompt_file_missing", "--prompt-file", str(w / "none.txt"), drop=("--prompt",), token="does not exist"),
        s("prompt_and_prompt_file", "--prompt-file", str(w / "prompts.txt"), token="either --prompt"),
        s("prompt_cjk_long", "--prompt", "一只猫在草地上慢慢地走着，阳光明媚，" * 6, "--save-path", str(w / "cjk"),
          expect="accept", check=_saved(w / "cjk")),
        s("prompt_with_slash_and_newline", "--prompt", "a/b\nc", "--save-path", str(w / "slash"), expect="accept",
          check=_saved(w / "slash")),
        s("prompt_file_with_bad_lines", "--prompt-file", str(w / "prompts.txt"), "--save-path", str(w / "batch"),
          drop=("--prompt",), expect="accept", token="blank prompt; skipped", check=_saved(w / "batch")),
        s("save_path_new_nested", "--save-path", str(w / "a" / "b" / "c"), expect="accept",
          check=_saved(w / "a" / "b" / "c")),
        s("precision_fp16_on_cpu", "--precision", "fp16", "--save-path", str(w / "fp16"), expect="accept",
          check=_saved(w / "fp16")),
    ]


def train_probes(w: Path) -> list[Probe]:
    m = str(w / "clips.jsonl")

    def t(name, script, *sets, token="", expect="reject", cfg=None, check=None):
        cfg = cfg or ("configs/train/tiny.yaml" if script == "train_dit.py" else "configs/train/tiny_vae.yaml")
        argv = [script, "--config", cfg, "--set", f"run.out_dir={w / 'runs' / name}"]
        for s_ in (f"data.manifest={m}", *sets):
            argv += ["--set", s_]
        return Probe("train", name, argv, expect, token, check)

    bad_json = w / "bad.jsonl"
    bad_json.write_text(Path(m).read_text().splitlines()[0] + "\n{\"path\": 3\n")
    return [
        t("dit_manifest_missing", "train_dit.py", "data.manifest=/nonexistent/c.jsonl", token="/nonexistent/c.jsonl"),
        t("dit_manifest_bad_json", "train_dit.py", f"data.manifest={bad_json}", token=":2"),
        t("dit_lr_negative", "train_dit.py", "optim.lr=-1e-4", token="optim.lr"),
        t("dit_lr_zero", "train_dit.py", "optim.lr=0", token="optim.lr"),
        t("dit_max_steps_zero", "train_dit.py", "run.max_steps=0", token="run.max_steps"),
        t("dit_unknown_key", "train_dit.py", "optim.learning_rate=3", token="learning_rate"),
        t("dit_frames_not_4n1", "train_dit.py", "data.num_frames=6", token="num_frames"),
        t("dit_resolution_unknown", "train_dit.py", "data.resolutions=[300]", token="300"),
        t("dit_sp_without_ranks", "train_dit.py", "parallel.sp_degree=2", token="sp_degree"),
        t("dit_init_from_missing", "train_dit.py", "run.init_from=/nonexistent/dit.pt", token="/nonexistent"),
        t("dit_init_from_payload", "train_dit.py", f"run.init_from={w / 'payload' / 'mp_rank_00_model_states.pt'}",
          token="payload"),
        t("dit_text_encoder_missing", "train_dit.py", "model.text_encoder=/nonexistent/enc", token="/nonexistent"),
        t("dit_clips_too_short", "train_dit.py", "data.num_frames=101", token="clips"),
        t("dit_text_dropout_1.5", "train_dit.py", "flow.text_dropout=1.5", token="text_dropout"),
        t("dit_lora_rank_negative", "train_dit.py", "lora.rank=-1", token="lora.rank"),
        t("dit_lora_target_typo", "train_dit.py", "lora.rank=4", "lora.target_modules=[img_attn_qvk]", token="img_attn_qvk"),
        t("dit_config_missing", "train_dit.py", "model.dit_config=/nonexistent.json", token="/nonexistent.json"),
        t("dit_engine_deepspeed", "train_dit.py", "parallel.engine=deepspeed", token="deepspeed"),
        t("vae_manifest_missing", "train_vae.py", "data.manifest=/nonexistent/c.jsonl", token="/nonexistent/c.jsonl"),
        t("vae_lr_negative", "train_vae.py", "optim.lr=-1", token="optim.lr"),
        t("vae_sp_degree", "train_vae.py", "parallel.sp_degree=2", token="sp_degree"),
        t("vae_lpips_missing", "train_vae.py", "loss.lpips_vgg=/nonexistent/vgg.pth", token="/nonexistent"),
        t("vae_init_weights_payload", "train_vae.py", f"model.init_weights={w / 'payload' / 'mp_rank_00_model_states.pt'}",
          token="payload"),
    ]


def curate_probes(w: Path) -> list[Probe]:
    from tests.curation.test_curate_bad_inputs import CASES  # noqa: PLC0415 - the one list of curation cases

    good = w / "good.mp4"
    probes = []
    for case in CASES:
        tmp = w / "curate" / case.name
        tmp.mkdir(parents=True, exist_ok=True)
        argv, token = case.build(tmp, good)
        probes.append(Probe("curate", case.name, ["scripts/curate.py", *argv], "reject", token))
    return probes


def prepare(w: Path) -> None:
    """Tiny model tree, bad weight files, a clip manifest, a short real clip, a prompt file."""
    import torch  # noqa: PLC0415

    from scripts_make_tiny import write_official  # noqa: PLC0415

    write_official(w / "tiny", seed=0)
    src = w / "tiny" / "hunyuan-video-t2v-720p" / "transformers"
    sd = torch.load(src / "mp_rank_00_model_states.pt", weights_only=True)["module"]
    for name, mutate in (("nan", lambda d: d["final_layer.linear.weight"].fill_(float("nan"))),
                         ("wrong", lambda d: d.pop("final_layer.linear.weight"))):
        d = {k: v.clone() for k, v in sd.items()}
        mutate(d)
        (w / name).mkdir()
        torch.save({"module": d}, w / name / "mp_rank_00_model_states.pt")
        (w / name / "config.json").write_text((src / "config.json").read_text())
    (w / "payload").mkdir()
    (w / "payload" / "mp_rank_00_model_states.pt").write_bytes(_payload_pickle(w / "PWNED"))
    import shutil  # noqa: PLC0415

    shutil.copytree(w / "tiny", w / "nocfg")
    (w / "nocfg" / "hunyuan-video-t2v-720p" / "transformers" / "config.json").unlink()
    subprocess.run([PY, "scripts/make_clip_manifest.py", "--out", str(w / "clips.jsonl")], cwd=ROOT, check=True,
                   capture_output=True)
    (w / "prompts.txt").write_text(f"{PROMPT}\n\n{'x' * 3000}\n{PROMPT}\na blue star grows\n")
    from tests.curation.conftest import real_frames  # noqa: PLC0415
    from hyvideo.data.curation.video import write_video  # noqa: PLC0415

    write_video(real_frames("bikes", 0, 30), w / "good.mp4", 25)


def _payload_pickle(marker: Path) -> bytes:
    """A checkpoint whose unpickling would create ``marker`` (what ``weights_only=True`` must refuse)."""
    import pickle  # noqa: PLC0415

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    import io  # noqa: PLC0415
    import zipfile  # noqa: PLC0415

    import torch  # noqa: PLC0415

    buf = io.BytesIO()
    torch.save({"module": {"w": Payload()}}, buf)
    data = buf.getvalue()
    assert zipfile.is_zipfile(io.BytesIO(data)) and pickle  # a real torch zip checkpoint
    return data


def classify(p: Probe, rc: int | None, out: str, err: str, work: Path) -> tuple[str, str]:
    if rc is None:
        return "hang", "time limit reached"
    if "Traceback (most recent call last)" in err or "Traceback (most recent call last)" in out:
        return "crash", err.strip().splitlines()[-1] if err.strip() else "traceback"
    if (work / "PWNED").exists():
        return "garbage", "a pickle payload ran"
    if p.expect == "reject":
        if rc == 0:
            return "garbage", "accepted without a word"
        lines = [ln for ln in err.splitlines() if "error:" in ln.lower()]
        if rc != 2 or not lines:
            return "crash", f"exit {rc}: {err.strip().splitlines()[-1:] if err.strip() else ''}"
        if p.token and p.token not in err:
            return "crash", f"message does not name {p.token!r}: {lines[0][:120]}"
        return "clean", lines[0][:140]
    if rc != 0:
        return "crash", f"exit {rc}: {err.strip().splitlines()[-1:] if err.strip() else ''}"
    if p.token and p.token not in out + err:
        return "garbage", f"expected {p.token!r} in the output"
    problem = p.check(work) if p.check else ""
    if problem:
        kind, _, why = problem.partition(": ")
        return kind, why
    return "clean", "ok"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["sample", "train", "curate"], default=None)
    ap.add_argument("--json", default=None, help="write every probe's outcome here")
    ap.add_argument("--timeout", type=int, default=240, help="seconds per probe")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="probe_"))
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("scripts_make_tiny", ROOT / "scripts" / "make_tiny_checkpoints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["scripts_make_tiny"] = module
    prepare(work)
    probes = [p for kind, make in (("sample", sample_probes), ("train", train_probes), ("curate", curate_probes))
              if args.only in (None, kind) for p in make(work)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    results = []
    from tqdm import tqdm  # noqa: PLC0415

    for p in tqdm(probes, desc="probes", unit="probe"):
        try:
            r = subprocess.run([PY, *p.argv], cwd=ROOT, env={**env, **p.env}, capture_output=True, text=True,
                               timeout=args.timeout)
            rc, out, err = r.returncode, r.stdout, r.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = None, str(e.stdout or ""), str(e.stderr or "")
        kind, why = classify(p, rc, out, err, work)
        results.append({"cli": p.cli, "name": p.name, "outcome": kind, "detail": why})
    counts = Counter(r["outcome"] for r in results)
    print(f"\n{len(results)} bad or edge-case inputs tried: " + ", ".join(
        f"{k} {counts.get(k, 0)}" for k in ("clean", "crash", "garbage", "lost", "hang")))
    for r in results:
        if r["outcome"] != "clean":
            print(f"  {r['outcome']:<8} {r['cli']:<7} {r['name']}: {r['detail']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
        print(f"written: {args.json}")
    return 0 if all(r["outcome"] == "clean" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
