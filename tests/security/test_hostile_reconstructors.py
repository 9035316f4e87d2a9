"""Hostile reconstructors: every dangerous callable, in every position a tree can name it.

pickle's REDUCE calls any importable callable; skjar's tree can only *name* things,
and every name must be declared in the header and trusted for the use the node
makes of it. Each test writes the attack directly at the format level (jarcraft:
digests recomputed, as an attacker would), with arguments that would create the
canary if the callable ever ran.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

import jarcraft
import skjar

from .hostile import DECOYS, FORMS, TARGETS, Target

UNTRUSTED = "untrusted name (header check, before import)"


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("target", TARGETS, ids=[t.id for t in TARGETS])
def test_hostile_name_declared_for_its_use(
    target: Target, form: str, canary: Path, refused: Any
) -> None:
    """The header honestly declares the hostile name: refused by trust, before any import."""
    tree, names = FORMS[form](target, canary)
    data = jarcraft.build(tree, names)
    was_imported = target.module in sys.modules
    exc = refused(lambda: skjar.loads(data), UNTRUSTED)
    assert target.name in exc.names  # type: ignore[attr-defined]
    assert (target.module in sys.modules) == was_imported, f"{target.module} was imported"
    # audit (the scanner) reports exactly what the loader refused
    audit = {n.name: n.trusted for n in skjar.audit(data)}
    assert audit[target.name] is False


# Forms whose other names (FunctionTransformer, functools.partial as object) are trusted:
# with only trusted names declared, the tree's use of the hostile name is the one lie.
MISMATCH_FORMS = [f for f in FORMS if f not in ("partial_call", "reduce_wrapper")]
SYSTEM = next(t for t in TARGETS if t.id == "os.system")


@pytest.mark.parametrize("form", MISMATCH_FORMS)
def test_hostile_name_hidden_behind_trusted_declarations(
    form: str, canary: Path, refused: Any
) -> None:
    """The header declares only trusted names; the tree uses os.system anyway."""
    tree, names = FORMS[form](SYSTEM, canary)
    declared = [n for n in names if n["name"] != SYSTEM.name]
    declared += [DECOYS[use] for n in names if n["name"] == SYSTEM.name for use in n["uses"]]
    data = jarcraft.build(tree, declared)
    assert not [n for n in skjar.audit(data) if not n.trusted], "audit sees only trusted names"
    refused(lambda: skjar.loads(data), "header/tree use mismatch", match="'os.system'")


@pytest.mark.parametrize("declared_use", ["value", "object"])
@pytest.mark.parametrize("target", TARGETS[:12], ids=[t.id for t in TARGETS[:12]])
def test_hostile_name_declared_for_another_use(
    target: Target, declared_use: str, canary: Path, refused: Any
) -> None:
    """Declared (and even trusted by the caller) as a value or class, used as a call."""
    tree, _ = FORMS["reconstruct"](target, canary)
    names = [jarcraft.name_entry(target.name, target.module, (declared_use,))]
    data = jarcraft.build(tree, names)
    refused(lambda: skjar.loads(data), UNTRUSTED)
    if "__" in target.name:
        return  # trusted= refuses dunder names outright (TrustSpecError)
    # The caller trusting it for that other use changes nothing for the call.
    refused(
        lambda: skjar.loads(data, trusted=[(target.name, declared_use)]),
        "header/tree use mismatch",
    )


@pytest.mark.parametrize("path_kind", ["bytes", "path", "mmap", "file object"])
def test_hostile_reconstructor_through_every_input_kind(
    path_kind: str, canary: Path, refused: Any, tmp_path: Path
) -> None:
    tree, names = FORMS["reconstruct"](SYSTEM, canary)
    data = jarcraft.build(tree, names)
    path = tmp_path / "attack.skjar"
    path.write_bytes(data)
    loaders = {
        "bytes": lambda: skjar.loads(data),
        "path": lambda: skjar.load(path),
        "mmap": lambda: skjar.load(path, mmap=True),
        "file object": lambda: skjar.load(open(path, "rb")),  # noqa: SIM115
    }
    refused(loaders[path_kind], UNTRUSTED)


def test_the_crafted_payload_is_live(tmp_path: Path) -> None:
    """Control: the same jar, with the caller explicitly trusting os.system as a call,
    really runs the command. So the refusals above stop a working payload."""
    trace = tmp_path / "LIVE"
    tree, names = FORMS["reconstruct"](SYSTEM, trace)
    data = jarcraft.build(tree, names)
    assert not trace.exists()
    result = skjar.loads(data, trusted=[("os.system", "call")])
    assert result == 0 and trace.exists(), "the crafted RECONSTRUCT is a working payload"


def test_hostile_names_are_refused_all_at_once(canary: Path, refused: Any) -> None:
    """One jar naming every target in every form: the error names them all, imports none."""
    items, names = [], {}
    for target in TARGETS:
        for form in ("reconstruct", "value", "instance"):
            tree, entries = FORMS[form](target, canary)
            items.append(tree)
            for e in entries:
                names.setdefault(e["name"], {**e, "uses": set()})["uses"].update(e["uses"])
    data = jarcraft.build(items, [{**e, "uses": sorted(e["uses"])} for e in names.values()])
    before = set(sys.modules)
    exc = refused(lambda: skjar.loads(data), UNTRUSTED)
    assert set(exc.names) == {t.name for t in TARGETS}  # type: ignore[attr-defined]
    assert set(sys.modules) == before, "refusing the file imported modules"
    assert os.path.exists(canary.parent)
