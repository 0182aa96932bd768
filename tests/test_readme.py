"""The README says what is true: its numbers are the results files' (rendered by benchmarks/readme_numbers.py),
and its layout section lists the modules the tree has."""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import readme_numbers  # noqa: E402


def test_readme_numbers_match_the_results_files():
    text = readme_numbers.README.read_text()
    blocks = readme_numbers.BLOCK.findall(text)
    assert len(blocks) >= 8, "the README's measured numbers live in numbers blocks"
    rendered = readme_numbers.render(text)
    for old, new in zip(readme_numbers.BLOCK.finditer(text), readme_numbers.BLOCK.finditer(rendered)):
        assert old.group("body") == new.group("body"), (
            f"README block {old.group('name')!r} differs from benchmarks/results: run "
            "python benchmarks/readme_numbers.py --write")


def test_results_files_record_what_they_measured():
    for name in ("conversion_report_ml1m.json", "conversion_report_ml1m_ensemble.json", "runtime_latency.json",
                 "delta_sync.json", "speedup.json", "kiosk.json", "demo_quick.json", "fleet.json", "teacher_ensemble.json"):
        record = readme_numbers.load(name)["machine"]
        assert {"commit", "cpu", "cores", "interpreter", "measured"} <= set(record), name
    for name in ("conversion_report_ml1m.json", "conversion_report_ml1m_ensemble.json", "runtime_latency.json",
                 "delta_sync.json", "speedup.json", "kiosk.json", "fleet.json", "cold_start.json", "cold_start_id_dropout.json"):
        assert len(readme_numbers.load(name)["machine"]["bundle_manifest_sha256"]) == 64, name


def test_no_measured_number_outside_the_blocks():
    """Outside the generated blocks, a decimal figure with a unit (ms, MB, KB, %) would be a hand-typed measurement."""
    text = readme_numbers.BLOCK.sub("", readme_numbers.README.read_text())
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    hand_typed = re.findall(r"\b\d+\.\d+ ?(?:ms|MB|KB|KiB|s\b|%)", prose)
    assert not hand_typed, hand_typed


def test_layout_section_matches_the_tree():
    text = readme_numbers.README.read_text()
    layout = text[text.index("## Project layout"):text.index("## Licence")]
    for package in ("edge_rec", "converter"):
        for module in sorted((ROOT / package).glob("*.py")):
            if module.name != "__init__.py":
                assert re.search(rf"\b{re.escape(module.name)}\b", layout), f"{package}/{module.name} is not in the layout"
    for folder in ("converter/data", "converter/teacher", "converter/search", "sample_apps", "benchmarks", "device_tests"):
        assert Path(folder).name + "/" in layout, folder
    for module in sorted((ROOT / "converter" / "search").glob("*.py")):
        if module.name != "__init__.py":
            assert module.name in layout, f"converter/search/{module.name} is not in the layout"
    for name in re.findall(r"^  (\w+\.py)\b", layout, re.M):
        assert any((ROOT / p / name).is_file() for p in ("edge_rec", "converter")), f"the layout lists {name}, which is gone"
