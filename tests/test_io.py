import json

from selfsup.io import write_json


def test_write_json_makes_missing_folders_and_leaves_no_temporary_file(tmp_path):
    # the throughput suite keeps results in OUT/results/, which a fresh OUT lacks
    path = tmp_path / "fresh" / "results" / "simclr.json"
    write_json(path, {"engine": 1.5})
    assert json.loads(path.read_text()) == {"engine": 1.5}
    assert [p.name for p in path.parent.iterdir()] == ["simclr.json"]
