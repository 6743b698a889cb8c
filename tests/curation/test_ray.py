"""The same shard stages on a local Ray Data instance give the same manifest as the local process pool."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from hyvideo.data.curation.runner import finalize, list_inputs, plan_shards, run_local, run_ray

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")


def test_ray_data_matches_local_run(tmp_path, videos, test_cfg):
    lst = tmp_path / "inputs.txt"
    lst.write_text(f"{videos['bunny']}\n{videos['carphone']}\n")
    vids = list_inputs(lst)
    shards = plan_shards(vids, tmp_path / "local", test_cfg)
    run_local(shards, tmp_path / "local", test_cfg, num_workers=1)
    local = finalize(tmp_path / "local", len(shards), test_cfg)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        shards = plan_shards(vids, tmp_path / "ray", test_cfg)
        clips = run_ray(shards, tmp_path / "ray", test_cfg)
    finally:
        ray.shutdown()
    remote = finalize(tmp_path / "ray", len(shards), test_cfg)
    assert clips == pq.read_table(local["manifest"]).num_rows > 0
    assert pq.read_table(remote["manifest"]).to_pylist() == pq.read_table(local["manifest"]).to_pylist()
