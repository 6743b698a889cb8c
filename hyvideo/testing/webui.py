"""Drive ``gradio_server.py`` for tests and scripts: start it on a free port, and a headless Chromium page.

The browser is Debian's ``chromium`` + ``chromium-driver`` through Selenium (``.ci/run`` installs them), started
with the flags a closed network needs (no background networking, component updates, sync or QUIC) and a fresh
profile. :func:`browser_missing` says why a browser test must skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("HYVIDEO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("HYVIDEO_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--mute-audio", "--autoplay-policy=no-user-gesture-required")


def free_port() -> int:
    """A TCP port free on the loopback address right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python gradio_server.py ARGS`` in a subprocess (context manager: stopped on exit).

    Attributes:
        url: ``http://127.0.0.1:PORT/``.
        log: the file holding the server's stdout and stderr.
    """

    def __init__(self, *args: str, port: int | None = None, log_dir: str | Path | None = None,
                 timeout: float = 240.0):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = Path(log_dir or tempfile.mkdtemp(prefix="hyvideo_ui_")) / f"server_{self.port}.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "GRADIO_ANALYTICS_ENABLED": "False"}
        self._out = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "gradio_server.py"), "--server-port",
                                      str(self.port), *args], stdout=self._out, stderr=subprocess.STDOUT,
                                     cwd=ROOT, env=env)
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gradio_server.py exited with {self.proc.returncode}:\n{self.output()}")
            try:
                urllib.request.urlopen(self.url + "gradio_api/info", timeout=5)  # noqa: S310 - loopback
                return
            except urllib.error.HTTPError:  # up, but e.g. asking for a login
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"gradio_server.py did not answer within {timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def browser_missing() -> str | None:
    """Why a headless Chromium cannot be driven here (None when it can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() or shutil.which(path)):
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401, PLC0415
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


def new_browser(width: int = 1400, height: int = 1800):
    """A headless Chromium WebDriver with a fresh profile (``driver.quit()`` removes the browser)."""
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='hyvideo_chromium_')}",
                 f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


VIDEO_JS = """
const v = document.querySelector('#video video');
if (!v) return null;
return {src: v.currentSrc || v.src, readyState: v.readyState, duration: v.duration, width: v.videoWidth,
        height: v.videoHeight, currentTime: v.currentTime, error: v.error ? v.error.code : null};
"""


class Page:
    """The hyvideo page in a WebDriver: fill inputs, generate, read the video element and error messages."""

    def __init__(self, driver, url: str, timeout: float = 60.0):
        from selenium.webdriver.common.by import By  # noqa: PLC0415
        from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

        self.d, self.By, self.Wait = driver, By, WebDriverWait
        driver.get(url)
        self.wait(timeout).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#generate"))

    def wait(self, timeout: float):
        return self.Wait(self.d, timeout, poll_frequency=0.2)

    def css(self, selector: str):
        return self.d.find_element(self.By.CSS_SELECTOR, selector)

    def wait_text(self, selector: str, text: str, timeout: float = 30.0) -> str:
        """Wait until the element's text contains ``text`` (a server round trip updates it, slower when the
        machine is loaded); returns the text. Raises selenium's TimeoutException with the last text seen."""
        from selenium.common.exceptions import TimeoutException  # noqa: PLC0415

        seen = [""]

        def has(_):
            seen[0] = self.css(selector).text
            return text in seen[0]

        try:
            self.wait(timeout).until(has)
        except TimeoutException as e:  # name what was there instead
            msg = f"{selector} never showed {text!r} in {timeout} s; last text {seen[0]!r}"
            raise TimeoutException(msg) from e
        return seen[0]

    def set_prompt(self, text: str) -> None:
        box = self.css("#prompt textarea")
        box.clear()
        if text:
            box.send_keys(text)

    def pick(self, elem_id: str, label_prefix: str) -> None:
        """Open dropdown ``#elem_id`` and click the option whose label starts with ``label_prefix``."""
        self.css(f"#{elem_id} input").click()
        option = self.wait(10).until(lambda d: d.find_elements(
            self.By.CSS_SELECTOR, f'#{elem_id} li[role="option"][aria-label^="{label_prefix}"]'))[0]
        option.click()
        self.wait(10).until(lambda d: self.css(f"#{elem_id} input").get_attribute("value").startswith(label_prefix))

    def video(self) -> dict | None:
        return self.d.execute_script(VIDEO_JS)

    def errors(self) -> list[str]:
        """Texts of the error messages (toasts) now in the page."""
        return [e.text for e in self.d.find_elements(self.By.CSS_SELECTOR, '[data-testid="toast-body"]')
                if e.text.strip()]

    def generate(self, timeout: float = 180.0) -> dict:
        """Click Generate and wait until a new video plays or an error appears.

        Returns:
            ``{"video": {src, duration, width, height, ...}}`` or ``{"error": text}``.
        """
        before = (self.video() or {}).get("src")
        n_err = len(self.errors())
        self.css("#generate").click()

        def done(_):
            errs = self.errors()
            if len(errs) > n_err:
                return {"error": errs[-1]}
            v = self.video()
            if v and v["src"] and v["src"] != before and v["readyState"] >= 1 and v["duration"] > 0:
                return {"video": v}
            return False

        return self.wait(timeout).until(done)

    def play(self, timeout: float = 30.0) -> dict:
        """Play the video element from the start until it ends (proves the source decodes); returns its state."""
        self.d.execute_script("const v = document.querySelector('#video video'); v.muted = true; "
                              "v.currentTime = 0; v.play();")
        self.wait(timeout).until(lambda d: d.execute_script(
            "const v = document.querySelector('#video video'); return v.ended || v.currentTime > 0;"))
        return self.video()

    def requested_hosts(self) -> set[str]:
        """Hosts of every network request the page made so far (from Chromium's performance log)."""
        import json  # noqa: PLC0415
        from urllib.parse import urlsplit  # noqa: PLC0415

        hosts = set()
        for entry in self.d.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                url = msg["params"]["request"]["url"]
                if url.startswith(("http:", "https:", "ws:", "wss:")):  # not data:, blob:, chrome://
                    hosts.add(urlsplit(url).hostname)
        return hosts
