"""The JSON report: strict JSON, every field, NaN as null."""

from __future__ import annotations

import dataclasses
import json

from test_render_text import failing_report


def test_to_json_round_trips_every_field():
    data = json.loads(failing_report().to_json())
    assert data["status"] == "fail" and data["passed"] is False
    assert data["mode"] == "sample" and data["miss_probability"] == 0.001
    assert list(data["blocks"]) == ["layer1.weight", "layer2.weight", "bias"]
    block = data["blocks"]["layer2.weight"]
    assert block["wrong_elements"] == [[3, 1], [0, 2]]
    assert block["worst"][0]["index"] == [3, 1] and block["worst"][0]["analytic"] == 0.5
    assert block["diagnosis"]["kind"] == "scale"
    assert data["blocks"]["layer1.weight"]["kinks"] == [[1, 1]]


def test_nan_and_inf_become_null():
    report = dataclasses.replace(failing_report(), difference=float("nan"))
    text = report.to_json(indent=None)
    assert "NaN" not in text and json.loads(text)["difference"] is None
