"""The C++ extension's build is per CPU flavour and never hangs on a lock left by a killed build."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from hyvideo.accel.cpu import native


def test_flavour_name_carries_the_cpu_flags(monkeypatch):
    import dataclasses

    from hyvideo.accel import capability

    info = capability.cpu_info()
    here = native.flavour()
    monkeypatch.setattr(capability, "cpu_info", lambda: dataclasses.replace(info, flags=frozenset({"avx2"})))
    other = native.flavour()
    assert here.startswith("hyvideo_cpu_") and other.startswith("hyvideo_cpu_") and here != other


def test_stale_lock_of_a_killed_build_is_removed(tmp_path):
    # a build process that was killed: its pid is gone, its lock stays
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "lock").write_text("")
    (tmp_path / "lock.owner").write_text(f"{dead.pid} {os.uname().nodename}")
    t0 = time.time()
    assert native.wait_for_lock(tmp_path, timeout_s=60)
    assert time.time() - t0 < 5 and not (tmp_path / "lock").exists()


def test_old_lock_without_owner_is_removed_and_live_owner_times_out(tmp_path):
    lock = tmp_path / "lock"
    lock.write_text("")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    assert native.wait_for_lock(tmp_path, timeout_s=60) and not lock.exists()
    lock.write_text("")  # a fresh lock held by a live process (this one): wait at most the timeout, then give up
    (tmp_path / "lock.owner").write_text(f"{os.getpid()} {os.uname().nodename}")
    t0 = time.time()
    assert not native.wait_for_lock(tmp_path, timeout_s=1.0)
    assert 0.9 < time.time() - t0 < 5 and lock.exists()


def test_a_killed_builds_lock_does_not_hang_the_next_run(tmp_path):
    """End to end: a lock with a dead owner in the flavour's build folder; a new process removes it and builds.

    The child uses its own extension cache (``TORCH_EXTENSIONS_DIR`` under tmp_path, so a real build running beside
    the test never has its lock planted over) and a stand-in for the compile step (the lock handling is what runs
    here, not a minute of C++ compilation)."""
    code = ("import sys, os, subprocess; import torch.utils.cpp_extension as ext; "
            "from hyvideo.accel.cpu import native; from hyvideo.accel import capability; "
            "capability.compiler_available = lambda: True; "
            "ext.load = lambda **kw: print('compiled in', kw['build_directory']); "
            "d = native.build_dir(native.flavour()); d.mkdir(parents=True, exist_ok=True); "
            "p = subprocess.Popen([sys.executable, '-c', 'pass']); p.wait(); "
            "(d / 'lock').write_text(''); (d / 'lock.owner').write_text(f'{p.pid} {os.uname().nodename}'); "
            "print(native.load(), (d / 'lock').exists(), d)")
    t0 = time.time()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                       env={**os.environ, native.TIMEOUT_ENV: "30", "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"),
                            native.ENV: "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith(f"True False {tmp_path / 'ext'}"), r.stdout  # built, stale lock gone, private cache
    assert lines[0].startswith("compiled in " + str(tmp_path / "ext"))
    assert "removing a stale C++ build lock" in r.stderr and time.time() - t0 < 30  # did not wait out the timeout
