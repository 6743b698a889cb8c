"""Screenshot of the web UI after a generation: starts gradio_server.py, drives headless Chromium, saves a PNG.

    python scripts/bench/webui_screenshot.py                       # tiny random models (built in a temp folder)
    python scripts/bench/webui_screenshot.py --model-base ckpts --resolution 540p --aspect 16:9 --steps 30 \\
        --server-args "--use-cpu-offload"

Needs Debian's chromium + chromium-driver and selenium (see tests/ui/test_browser.py). Prints where the PNG went
and what the page's video element reports (size, duration).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hyvideo.testing.webui import Page, Server, browser_missing, new_browser  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-base", default=None, help="model tree (default: tiny random models in a temp folder)")
    p.add_argument("--out", default="results/webui_screenshot.png")
    p.add_argument("--prompt", default="A red ball bounces on green grass, realistic style.")
    p.add_argument("--resolution", default=None, help="tier label prefix (default: the page's first)")
    p.add_argument("--aspect", default="16:9", help="aspect label prefix")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the page's)")
    p.add_argument("--server-args", default="--precision fp32", help="more gradio_server.py flags")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the video")
    args = p.parse_args(argv)
    missing = browser_missing()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="hyvideo_webui_shot_"))
    model_base = args.model_base
    if model_base is None:
        sys.path.insert(0, str(ROOT / "scripts"))
        from make_tiny_checkpoints import write_official  # noqa: PLC0415

        model_base = str(write_official(work / "tiny_ckpts", seed=0))
    with Server("--model-base", model_base, "--save-path", str(work / "results"), *shlex.split(args.server_args),
                log_dir=work, timeout=1800) as server:
        driver = new_browser(1400, 1250)
        try:
            page = Page(driver, server.url)
            page.set_prompt(args.prompt)
            if args.resolution:
                page.pick("resolution", args.resolution)
            page.pick("aspect", args.aspect)
            if args.steps:
                box = page.css("#steps input[type=number]")
                box.clear()
                box.send_keys(str(args.steps))
            t0 = time.perf_counter()
            result = page.generate(timeout=args.timeout)
            seconds = time.perf_counter() - t0
            if "error" in result:
                print(f"error: the page says: {result['error']}", file=sys.stderr)
                return 1
            video = page.play()
            driver.execute_script("const v = document.querySelector('#video video'); v.pause(); "
                                  "v.currentTime = v.duration / 2;")
            time.sleep(0.5)
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(out))
        finally:
            driver.quit()
    print(f"saved {out} (page at {server.url}; video {video['width']}x{video['height']} (WxH), "
          f"{video['duration']:.3f} s, generated in {seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
