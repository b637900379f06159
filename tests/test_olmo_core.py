"""`mixer export olmo-core` and the token arrays, read by OLMo-core itself (ai2-olmo-core):
NumpyFSLDataset, NumpyPaddedFSLDataset and NumpyVSLDataset with the boundaries taken from the
csv.gz metadata (OLMO_DATA_PREP_USE_ARRAY_IF_LOCAL=false, as for any URL path), a per-source
SourceMixtureDatasetConfig from the export, and batches from NumpyDataLoader."""

from __future__ import annotations

import math
import os
import runpy
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from small_run import small_run

from mixer.cli import main
from mixer.io import read_json

olmo_data = pytest.importorskip("olmo_core.data")
from olmo_core.data import (  # noqa: E402
    NumpyDataLoaderConfig,
    NumpyFSLDatasetConfig,
    NumpyPaddedFSLDatasetConfig,
    NumpyVSLDatasetConfig,
)
from olmo_core.data.utils import iter_document_indices  # noqa: E402

SEQ = 64
BATCH = 8 * SEQ


@pytest.fixture(scope="module")
def wd(tmp_path_factory) -> Path:
    return small_run(tmp_path_factory.mktemp("olmocore"), per_source=True)


@pytest.fixture(autouse=True)
def metadata_boundaries(monkeypatch):
    """OLMo-core reads document boundaries from part-NNNNN.csv.gz, not by scanning for EOS."""
    monkeypatch.setenv("OLMO_DATA_PREP_USE_ARRAY_IF_LOCAL", "false")


def _invoke(args: list[str], code: int = 0) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    return result.output


def _export(wd: Path, tmp: Path, *args: str, name: str = "data.py") -> dict:
    out = tmp / name
    _invoke(["export", "olmo-core", str(wd), "--sequence-length", str(SEQ),
             "--global-batch-size", str(BATCH), "--out", str(out), *args])  # fmt: skip
    return runpy.run_path(str(out)) if out.suffix == ".py" else {"path": out}


def _documents(tokens_dir: Path, info: dict) -> list[tuple[str, np.ndarray, list[dict]]]:
    """Per part, in tokens.json order: (path, the array, mixer's index rows)."""
    out = []
    for p in info["parts"]:
        arr = np.fromfile(tokens_dir / p["file"], dtype=info["dtype"])
        out.append(
            (str(tokens_dir / p["file"]), arr, pq.read_table(tokens_dir / p["index"]).to_pylist())
        )
    return out


def test_export_paths_tokenizer_and_boundaries(wd, tmp_path):
    ns = _export(wd, tmp_path)
    tokens_dir = wd / "tokens" / "sample"
    info = read_json(tokens_dir / "tokens.json")
    assert info["layout"] == "per_source"
    ds = ns["dataset"]
    assert isinstance(ds, NumpyFSLDatasetConfig)
    assert ds.paths == [str((tokens_dir / p["file"]).resolve()) for p in info["parts"]]
    assert [m["label"] for m in ds.metadata] == [p["source"] for p in info["parts"]]
    tok = ns["tokenizer"]
    assert (tok.vocab_size, tok.eos_token_id, tok.bos_token_id) == (
        info["vocab_size"],
        info["eos_id"],
        None,
    )
    assert tok.pad_token_id == 1  # "<|pad|>" of the trained tokenizer, not EOS
    assert str(ds.dtype) == info["dtype"] == "uint16"
    # OLMo-core's own boundaries (from the csv.gz, no scanning) are mixer's index, part by part.
    for path, arr, rows in _documents(tokens_dir, info):
        got = list(iter_document_indices(path, use_array_if_local=False))
        assert got == [(r["start"], r["end"]) for r in rows]
        assert all(arr[e - 1] == info["eos_id"] for _, e in got)
    ds.work_dir = str(tmp_path / "fsl")
    fsl = ds.build()
    fsl.prepare()
    assert len(fsl) == sum(p["tokens"] // SEQ for p in info["parts"])
    first = _documents(tokens_dir, info)[0][1]
    assert fsl[0]["input_ids"].tolist() == first[:SEQ].tolist()
    assert fsl[0]["metadata"] == {"label": info["parts"][0]["source"]}


def test_padded_and_vsl_datasets_keep_documents_whole(wd, tmp_path):
    ns = _export(wd, tmp_path)
    tokens_dir = wd / "tokens" / "sample"
    info = read_json(tokens_dir / "tokens.json")
    tok, paths = ns["tokenizer"], ns["dataset"].paths
    docs = [
        arr[r["start"] : r["end"]] for _, arr, rows in _documents(tokens_dir, info) for r in rows
    ]
    longest = max(len(d) for d in docs)
    padded = NumpyPaddedFSLDatasetConfig(
        tokenizer=tok, paths=paths, dtype=ns["dataset"].dtype,
        sequence_length=1 << math.ceil(math.log2(longest)), work_dir=str(tmp_path / "pad"),
    ).build()  # fmt: skip
    padded.prepare()
    assert len(padded) == len(docs) == info["documents"]
    for i, doc in enumerate(docs):  # one instance per document, in order, padded after it
        item = padded[i]
        ids = item["input_ids"][item["label_mask"]].tolist()
        assert ids == doc.tolist()
        assert set(item["input_ids"][~item["label_mask"]].tolist()) <= {tok.pad_token_id}
    vsl = NumpyVSLDatasetConfig(
        tokenizer=tok, paths=paths, dtype=ns["dataset"].dtype, max_sequence_length=256,
        min_sequence_length=64, work_dir=str(tmp_path / "vsl"),
    ).build()  # fmt: skip
    vsl.prepare()
    assert len(vsl) > 0
    blobs = [d.astype("<u4").tobytes() for d in docs]
    for i in range(len(vsl)):  # every variable-length instance lies inside one document
        ids = vsl[i]["input_ids"].numpy().astype("<u4")
        assert 64 <= len(ids) <= 256
        needle = ids.tobytes()
        assert any(needle in b for b in blobs), f"instance {i} spans documents"


def test_source_mixture_from_manifest_and_data_loader(wd, tmp_path):
    ns = _export(wd, tmp_path)
    info = read_json(wd / "tokens" / "sample" / "tokens.json")
    manifest = read_json(wd / "mixes" / "sample.manifest.json") or read_json(
        wd / "mixes" / "sample" / "manifest.json"
    )
    mix = ns["source_mixture"]
    sources = {s.source_name: s for s in mix.source_list.sources}
    assert set(sources) == set(manifest["sources"]) == set(info["tokens_per_source"])
    assert math.isclose(sum(s.target_ratio for s in sources.values()), 1.0)
    assert mix.requested_tokens == info["total_tokens"] == manifest["total_selected_tokens"]
    for name, s in sources.items():
        m = manifest["sources"][name]
        assert math.isclose(
            s.target_ratio, m["selected_tokens"] / manifest["total_selected_tokens"]
        )
        copies = max(1, math.ceil(m["repetition_factor"]))
        assert s.max_repetition_ratio == max(1.0, m["max_repetition"] / copies)
        assert s.paths == [str((wd / "tokens" / "sample" / p["file"]).resolve())
                           for p in info["parts"] if p["source"] == name]  # fmt: skip
    config = ns["mixture_dataset"]
    config.work_dir = str(tmp_path / "mix")
    config.source_mixture_config.render_tables = False
    dataset = config.build()
    dataset.prepare()
    assert len(dataset) >= info["total_tokens"] // SEQ - len(info["parts"])
    loader = NumpyDataLoaderConfig(global_batch_size=BATCH, seed=0, num_workers=0).build(dataset)
    loader.reshuffle(epoch=1)
    batches = []
    for batch in loader:
        batches.append(batch["input_ids"])
        if len(batches) == 2:
            break
    assert [tuple(b.shape) for b in batches] == [(BATCH // SEQ, SEQ)] * 2
    assert int(max(b.max() for b in batches)) < info["vocab_size"]


def test_yaml_round_trips_through_olmo_core(wd, tmp_path):
    ns = _export(wd, tmp_path)
    for which, expected in (("mixture", ns["mixture_dataset"]), ("single", ns["dataset"])):
        path = _export(wd, tmp_path, "--dataset", which, name=f"{which}.yaml")["path"]
        loaded = NumpyFSLDatasetConfig.from_yaml(path)
        assert loaded.as_config_dict() == expected.as_config_dict()


def test_mix_file_format(wd, tmp_path):
    path = _export(wd, tmp_path, name="sample.txt")["path"]
    info = read_json(wd / "tokens" / "sample" / "tokens.json")
    rows = [
        line.split(",")
        for line in path.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert [label for label, _ in rows] == [p["source"] for p in info["parts"]]
    assert all(Path(p).is_file() and p.endswith(".npy") for _, p in rows)
    text = _invoke(["export", "olmo-core", str(wd / "mixes" / "sample"), "--format", "mix",
                    "--prefix", "s3://bucket/tokens/sample/"])  # fmt: skip
    assert "web,s3://bucket/tokens/sample/web/part-00000.npy" in text.splitlines()


def test_mixed_layout_exports_one_dataset(wd, tmp_path):
    out = tmp_path / "mixed"
    _invoke(["tokenize", str(wd / "mixes" / "sample"), "--tokenizer", str(wd / "tokenizer.json"),
             "--out", str(out), "--quiet", "--workers", "1", "--max-tokens-per-part", "20000"])  # fmt: skip
    ns = _export(out, tmp_path)
    info = read_json(out / "tokens.json")
    assert ns["source_mixture"] is None and len(ns["dataset"].paths) == len(info["parts"]) > 1
    ns["dataset"].work_dir = str(tmp_path / "w")
    built = ns["dataset"].build()
    built.prepare()
    assert len(built) == sum(p["tokens"] // SEQ for p in info["parts"])
    err = _invoke(["export", "olmo-core", str(out), "--dataset", "mixture", "--out",
                   str(tmp_path / "m.yaml")], code=2)  # fmt: skip
    assert "per-source" in err


def test_bad_inputs_are_one_line(tmp_path):
    assert "no tokens.json" in _invoke(["export", "olmo-core", str(tmp_path)], code=2)


SHARED = Path(os.environ.get("MIXER_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
DOLMA2 = SHARED / "tokenizers" / "allenai_dolma2.json"


@pytest.mark.skipif(not DOLMA2.is_file(), reason="shared tokenizers not present")
def test_dolma2_uint32_arrays_match_olmo_core_dolma2_config(wd, tmp_path):
    """OLMo 2's tokenizer: uint32 arrays, and the exported ids are OLMo-core's own dolma2 ids."""
    from olmo_core.data import TokenizerConfig

    out = tmp_path / "dolma2"
    _invoke(["tokenize", str(wd / "mixes" / "sample"), "--tokenizer", str(DOLMA2), "--out",
             str(out), "--per-source", "--quiet", "--workers", "1"])  # fmt: skip
    ns = _export(out, tmp_path)
    ref, tok = TokenizerConfig.dolma2(), ns["tokenizer"]
    assert (tok.vocab_size, tok.eos_token_id, tok.pad_token_id, tok.bos_token_id) == (
        ref.vocab_size, ref.eos_token_id, ref.pad_token_id, ref.bos_token_id,
    )  # fmt: skip
    info = read_json(out / "tokens.json")
    assert info["dtype"] == "uint32" and str(ns["dataset"].dtype) == "uint32"
    for path, _, rows in _documents(out, info):
        got = list(iter_document_indices(path, use_array_if_local=False))
        assert got == [(r["start"], r["end"]) for r in rows]
    config = ns["mixture_dataset"]
    config.work_dir = str(tmp_path / "w")
    config.source_mixture_config.render_tables = False
    dataset = config.build()
    dataset.prepare()
    ids = dataset[0]["input_ids"]
    assert len(ids) == SEQ and int(ids.max()) < ref.vocab_size
