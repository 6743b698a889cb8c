"""Who can reach gradio_server.py: loopback by default, gradio's login with --auth, bad flags exit 2 early."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from tests.ui.conftest import job_args

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import gradio_server  # noqa: E402


def _listen_addresses(port: int) -> set[str]:
    """Local addresses listening on ``port`` (Linux /proc/net/tcp{,6}); hex as the kernel writes them."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                out.add(addr)
    return out


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def test_default_server_answers_on_loopback_only(ui_server):
    addrs = _listen_addresses(ui_server.port)
    if not addrs and not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to read listening sockets from")
    assert addrs == {"0100007F"}, addrs  # 127.0.0.1, not 0.0.0.0 / ::
    ip = _non_loopback_address()
    if ip is not None:
        with pytest.raises(OSError):
            socket.create_connection((ip, ui_server.port), timeout=3).close()


def test_auth_refuses_a_client_without_credentials_and_serves_one_with_them(tiny_ckpts, tmp_path):
    pytest.importorskip("gradio_client")
    import httpx
    from gradio_client import Client

    from hyvideo.testing.webui import Server

    auth_file = tmp_path / "users.txt"
    auth_file.write_text("# users\nalice:wonderland\n")
    with Server("--model-base", str(tiny_ckpts), "--precision", "fp32", "--save-path", str(tmp_path / "out"),
                "--auth-file", str(auth_file), log_dir=tmp_path) as server:
        assert httpx.get(server.url + "config").status_code == 401
        with pytest.raises(Exception, match="(?i)login|auth|401|credentials"):
            Client(server.url, verbose=False).predict(*job_args("A cat."), api_name="/generate")
        with pytest.raises(Exception, match="(?i)login|auth|401|credentials|incorrect"):
            Client(server.url, auth=("alice", "wrong"), verbose=False)
        client = Client(server.url, auth=("alice", "wonderland"), verbose=False)
        _, _, params, _ = client.predict(*job_args("A cat.", seed=2), api_name="/generate")
        assert params["seed"] == 2 and params["frames"] == 9


def test_exposed_server_without_login_warns():
    assert gradio_server.exposure_warning("127.0.0.1", []) is None
    assert gradio_server.exposure_warning("::1", []) is None
    assert gradio_server.exposure_warning("0.0.0.0", [("a", "b")]) is None
    warning = gradio_server.exposure_warning("0.0.0.0", [])
    assert "without a login" in warning and "--auth USER:PASS" in warning


@pytest.mark.parametrize("flags, message", [
    (["--auth", "nocolon"], "--auth: expected USER:PASS"),
    (["--auth", "user:"], "--auth: expected USER:PASS"),
    (["--lora-dir", "/nonexistent/loras"], "--lora-dir /nonexistent/loras is not a folder"),
    (["--max-upload-mb", "0"], "--max-upload-mb must be > 0"),
    (["--precision", "fp8"], "unknown --precision 'fp8'"),
    (["--use-cpu-offload", "--model-cpu-offload"], "choose one offload flag"),
])
def test_bad_flags_exit_2_before_loading(flags, message, tiny_ckpts, tmp_path, capsys):
    code = gradio_server.main(["--model-base", str(tiny_ckpts), "--save-path", str(tmp_path), *flags])
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_model_tree_exits_2(tmp_path, capsys):
    assert gradio_server.main(["--model-base", str(tmp_path / "absent"), "--save-path", str(tmp_path)]) == 2
    assert "--model-base folder not found" in capsys.readouterr().err


def test_model_flags_are_shared_with_sample_video():
    import sample_video

    def model_flags(parser):
        group = next(g for g in parser._action_groups if g.title == "model")
        return sorted(a.dest for a in group._group_actions)

    assert model_flags(gradio_server.build_parser()) == model_flags(sample_video.build_parser())
    assert gradio_server.build_parser().get_default("model_base") == sample_video.build_parser().get_default(
        "model_base")
