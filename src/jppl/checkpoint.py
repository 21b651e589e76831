"""Checkpoints of jppl states: one atomic writer and one format for MCMC, SVI and Trainer.

:func:`save` writes a pytree (dicts, lists, tuples, NamedTuples, ``None`` and arrays; PRNG
keys as their key data and implementation) with a JSON record that names it a jppl
checkpoint, its ``kind`` (``"mcmc"``, ``"svi"``, ``"trainer"``), the format version, the
tree's structure and the front end's settings. :func:`load` reads it back, checked against
a template's structure, shapes and dtypes and put on the template's shardings.

* **Storage.** A state whose arrays are all on this process (one process; or several
  processes with a replicated state) is one ``<path>.npz`` file, written by process 0. A state
  split over the devices of several processes is an Orbax directory ``<path>`` (each process
  writes its own shards, and :func:`load` restores them onto any other mesh or sharding, taken
  from the template). ``save("ckpt")``, ``load("ckpt")`` and ``load("ckpt.npz")`` name the
  same checkpoint.
* **Atomic.** A file is written to a temporary ``.<name>.tmp-<host>-<pid>-<random>`` in the
  same directory, flushed and fsynced, renamed onto ``<name>`` and the directory fsynced: a
  crash at any point leaves the previous checkpoint whole, and a temporary is never read as a
  checkpoint (a later save of the same name removes those of dead processes). Orbax finalizes
  its directory by a rename too (``AtomicRenameTemporaryPath``: a ``commit_success.txt`` then
  ``rename(tmp, final)``, no fsync); here it writes into a temporary directory whose files are
  fsynced and which is then swapped onto ``<path>`` in one ``renameat2(RENAME_EXCHANGE)`` (two
  renames where the kernel lacks it; :func:`resolve` then also finds the moved-aside old one).
* **Safe to read.** Nothing is unpickled (object arrays are refused); a file that is not a jppl
  checkpoint, or is truncated or corrupt, raises :class:`CheckpointError` ``not a jppl
  checkpoint or incomplete: <path>: <reason>``; a template mismatch or an invalid MCMC state
  (:func:`check_mcmc_state`) raises it with the field's name.

Measured reason for keeping ``.npz`` for states on one process (``python
tests/checkpoint_worker.py bench``: one CPU device, 2 shared cores, ext4; median of 7 rounds
after a warm-up; the range over 3 runs; both fsync what they wrote):

=======================================  ================  ==================
state                                    npz save / load   Orbax save / load
=======================================  ================  ==================
MCMC: 4 chains x 10 dims + 1000 draws    8-14 / 4-7 ms     106-189 / 19-28 ms
(0.22 MB)
SVI: params + Adam state, 10 MB          24-30 / 10-13 ms  121-282 / 27-32 ms
=======================================  ================  ==================

Orbax is 4-14x slower to save and 2-5x slower to load (its TensorStore/OCDBT files, metadata
and barriers), so it is used only where it is needed: for shards that no single process has.

Directories of checkpoints (:class:`~jppl.nn.Trainer`): :func:`save_step` writes
``step_<9 digits>.npz`` (or the Orbax directory ``step_<9 digits>``) and keeps the last
``keep``; :func:`load_latest` takes the newest readable one, warning about each one skipped.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import re
import secrets
import shutil
import socket
import sys
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "CheckpointWarning",
    "LoadedCheckpoint",
    "check_mcmc_state",
    "check_tree",
    "is_checkpoint_dir",
    "latest",
    "list_steps",
    "load",
    "load_latest",
    "resolve",
    "save",
    "save_step",
]

FORMAT = "jppl-checkpoint"
"""The ``format`` entry of every checkpoint's record."""

FORMAT_VERSION = 1
"""The newest format version this module writes and reads."""

SUFFIX = ".npz"
_RECORD = "__jppl__"  # the npz member (a uint8 array of UTF-8 JSON) holding the record
_RECORD_FILE = "jppl.json"  # the record in an Orbax checkpoint directory
_ARRAYS = "arrays"  # the Orbax PyTree checkpoint inside that directory
_STEP = re.compile(r"^step_(\d{9})(\.npz)?$")
_PREFIX = "not a jppl checkpoint or incomplete"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: not one of ours, truncated or corrupt (``not a jppl
    checkpoint or incomplete: <path>: <reason>``), of another kind or format version, or not
    matching the template / not a valid state (``checkpoint <path>: <field> ...``)."""


class CheckpointWarning(UserWarning):
    """:func:`load_latest` skipped an unreadable checkpoint (the message names it and why)."""


class LoadedCheckpoint(NamedTuple):
    """What :func:`load` returns.

    Attributes:
        tree: the saved pytree (in the template's structure if one was given).
        kind: the kind given to :func:`save` (``"mcmc"``, ``"svi"``, ``"trainer"``, ...).
        meta: the JSON ``meta`` given to :func:`save` (``{}`` if none).
        path: the file or directory that was read.
    """

    tree: Any
    kind: str
    meta: dict[str, Any]
    path: str


def _corrupt(path: str, reason: str) -> CheckpointError:
    return CheckpointError(f"{_PREFIX}: {path}: {reason}")


# ---------------------------------------------------------------------------------------------
# The structure of a pytree as JSON
# ---------------------------------------------------------------------------------------------


def _is_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


def _encode(node: Any, leaves: list, records: list) -> dict:
    """The JSON structure of ``node``; its arrays go to ``leaves`` (PRNG keys as key data,
    Python scalars as 0-d arrays) and their descriptions to ``records``."""
    if node is None:
        return {"t": "none"}
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        cls = type(node)
        return {
            "t": "namedtuple",
            "module": cls.__module__,
            "name": cls.__qualname__,
            "f": list(node._fields),
            "c": [_encode(child, leaves, records) for child in node],
        }
    if isinstance(node, tuple | list):
        return {"t": type(node).__name__, "c": [_encode(c, leaves, records) for c in node]}
    if isinstance(node, dict):
        keys = list(node)
        if not all(isinstance(k, str) for k in keys):
            raise TypeError(f"checkpoint: dict keys must be str, got {keys!r}")
        return {"t": "dict", "k": keys, "c": [_encode(node[k], leaves, records) for k in keys]}
    if isinstance(node, jax.Array | np.ndarray | np.generic | int | float | bool | complex):
        record: dict[str, Any] = {}
        value = node
        if _is_key(node):
            record["key_impl"] = str(jax.random.key_impl(node))
            value = jax.random.key_data(node)
        elif not isinstance(node, jax.Array | np.ndarray | np.generic):
            record["python"] = type(node).__name__
            value = np.asarray(node)
        elif not isinstance(node, jax.Array):
            value = np.asarray(node)
        if value.dtype == object:
            raise TypeError("checkpoint: object arrays cannot be stored (no pickling).")
        record["shape"] = list(value.shape)
        record["dtype"] = jnp.dtype(value.dtype).name
        records.append(record)
        leaves.append(value)
        return {"t": "leaf", "i": len(leaves) - 1}
    raise TypeError(
        f"checkpoint: cannot store a {type(node).__name__}; only dicts, lists, tuples, "
        "NamedTuples, None, arrays and Python numbers are supported."
    )


def _namedtuple_class(entry: dict, where: str) -> type:
    # Only classes of modules that are already imported: nothing is imported (or run) on
    # behalf of a file.
    cls: Any = sys.modules.get(entry["module"])
    for part in str(entry["name"]).split("."):
        cls = getattr(cls, part, None) if cls is not None else None
    if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise CheckpointError(
            f"checkpoint {where}: NamedTuple {entry['module']}.{entry['name']} is not "
            "available (import its module first, or load with a template)."
        )
    fields, saved = list(cls._fields), list(entry.get("f", cls._fields))
    # A class may gain trailing fields with defaults (e.g. SVIState.mutable_state): a file
    # written before still loads, the new fields taking their defaults.
    added = fields[len(saved) :]
    if fields[: len(saved)] != saved or any(f not in cls._field_defaults for f in added):
        raise CheckpointError(
            f"checkpoint {where}: NamedTuple {entry['module']}.{entry['name']} has fields "
            f"{list(cls._fields)}, the file {entry['f']}."
        )
    return cls


def _decode(entry: dict, leaves: list, where: str) -> Any:
    kind = entry["t"]
    if kind == "none":
        return None
    if kind == "leaf":
        return leaves[entry["i"]]
    children = [_decode(c, leaves, where) for c in entry.get("c", [])]
    if kind == "tuple":
        return tuple(children)
    if kind == "list":
        return children
    if kind == "dict":
        return dict(zip(entry["k"], children, strict=True))
    if kind == "namedtuple":
        cls = _namedtuple_class(entry, where)
        if len(children) != len(entry.get("f", cls._fields)):
            raise _corrupt(where, f"{len(children)} values for the NamedTuple {cls.__name__}")
        return cls(*children)
    raise _corrupt(where, f"unknown structure entry {kind!r}")


def _leaf_paths(entry: dict, prefix: str = "") -> list[tuple[str, int]]:
    """``[(key path as jax.tree_util.keystr writes it, leaf index)]`` in ``entry``."""
    kind = entry["t"]
    if kind == "leaf":
        return [(prefix, entry["i"])]
    if kind == "none":
        return []
    children = entry.get("c", [])
    if kind == "dict":
        names = [f"[{k!r}]" for k in entry["k"]]
    elif kind == "namedtuple":
        names = [f".{f}" for f in entry.get("f", range(len(children)))]
    else:
        names = [f"[{i}]" for i in range(len(children))]
    return [
        p for name, c in zip(names, children, strict=True) for p in _leaf_paths(c, prefix + name)
    ]


def _check_structure(entry: Any, count: int, where: str) -> None:
    """Every leaf index of the structure is in ``range(count)`` and used once."""
    try:
        indices = sorted(i for _, i in _leaf_paths(entry))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _corrupt(where, f"malformed structure in the record ({e!r})") from None
    if indices != list(range(count)):
        raise _corrupt(where, "the record's structure does not match its leaves")


# ---------------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------------


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "", socket.gethostname()) or "host"


def _tmp_name(name: str, tag: str = "tmp") -> str:
    return f".{name}.{tag}-{_host()}-{os.getpid()}-{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


_TEMPORARY = re.compile(
    r"^\.(?P<name>.+)\.(?P<tag>tmp|old)-(?P<host>[A-Za-z0-9.]+)-(?P<pid>\d+)-[0-9a-f]{8}$"
)


def _clean_stale(directory: str, names: Sequence[str] | None = None) -> None:
    """Remove the temporaries of ``names`` (default: any) that dead processes of this host
    left in ``directory`` (a live process, or one of another host sharing the directory, may
    still be writing its own), and old checkpoints moved aside once their successor is there."""
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return
    host = _host()
    for entry in entries:
        m = _TEMPORARY.match(entry)
        if m is None or (names is not None and m["name"] not in names) or m["host"] != host:
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        if m["tag"] == "old" and not os.path.exists(os.path.join(directory, m["name"])):
            continue  # the only copy left (see resolve)
        _remove(os.path.join(directory, entry))


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def _fsync_tree(root: str) -> None:
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            fd = os.open(os.path.join(dirpath, filename), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(dirpath)


def _write_atomic(final: str, write) -> None:
    """Call ``write(file)`` on a temporary in ``final``'s directory, fsync it and rename it
    onto ``final``; the temporary is removed if anything fails."""
    directory = os.path.dirname(final) or "."
    name = os.path.basename(final)
    _clean_stale(directory, [name])
    tmp = os.path.join(directory, _tmp_name(name))
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(directory)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Swap two directory entries atomically (Linux ``renameat2``); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _commit_dir(tmp: str, final: str) -> None:
    """Put the finished directory ``tmp`` at ``final``, replacing what is there atomically."""
    directory = os.path.dirname(final) or "."
    if not os.path.lexists(final):
        os.rename(tmp, final)
    elif _exchange(tmp, final):
        _remove(tmp)  # now the old checkpoint
    else:  # two renames: a crash between them leaves the old one as .<name>.old-* (resolve)
        old = os.path.join(directory, _tmp_name(os.path.basename(final), "old"))
        os.rename(final, old)
        os.rename(tmp, final)
        _remove(old)
    _fsync_dir(directory)


# ---------------------------------------------------------------------------------------------
# Multi-process helpers
# ---------------------------------------------------------------------------------------------


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _shared_tmp_name(name: str) -> str:
    """One temporary name for every process (process 0's, broadcast)."""
    tmp = _tmp_name(name)
    if jax.process_count() == 1:
        return tmp
    from jax.experimental import multihost_utils

    buf = np.zeros(512, np.uint8)
    raw = np.frombuffer(tmp.encode()[:512], np.uint8)
    buf[: raw.size] = raw
    out = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    return bytes(out).rstrip(b"\0").decode()


def _is_split_across_processes(leaves: list) -> bool:
    return any(
        isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated
        for x in leaves
    )


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------


def _stem(path: str | os.PathLike) -> str:
    p = os.fspath(path)
    return p[: -len(SUFFIX)] if p.endswith(SUFFIX) else p


def _npz_member(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with zf.open(name + ".npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, array, allow_pickle=False)


def _to_host(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biufc":  # bfloat16, float8...: stored as their bytes
        arr = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    return arr


def save(
    path: str | os.PathLike,
    tree: Any,
    *,
    kind: str,
    meta: dict[str, Any] | None = None,
    storage: str | None = None,
) -> str:
    """Write ``tree`` as a jppl checkpoint of ``kind``, atomically.

    Every process must call it with the same ``path`` (a collective with several processes).

    Args:
        path: ``<stem>`` or ``<stem>.npz``: the file ``<stem>.npz``, or the directory
            ``<stem>`` for a state split over several processes.
        tree: pytree of dicts (str keys), lists, tuples, NamedTuples, ``None``, arrays
            (NumPy or JAX, PRNG keys included) and Python numbers.
        kind: what the tree is (``"mcmc"``, ``"svi"``, ``"trainer"``, ...), checked by
            :func:`load`.
        meta: JSON-serializable settings stored with it (returned by :func:`load`).
        storage: ``"npz"`` or ``"orbax"`` to force one (default: Orbax only for a state split
            over several processes, see the module docstring for the measured reason).

    Returns:
        the path written (the ``.npz`` file or the Orbax directory).
    """
    leaves: list = []
    records: list = []
    structure = _encode(tree, leaves, records)
    record = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": str(kind),
        "structure": structure,
        "leaves": records,
        "meta": dict(meta or {}),
    }
    text = json.dumps(record)  # fails here, before any file is touched
    if storage is None:
        storage = "orbax" if _is_split_across_processes(leaves) else "npz"
    if storage not in ("npz", "orbax"):
        raise ValueError(f"checkpoint.save: storage must be 'npz' or 'orbax', got {storage!r}")
    if storage == "npz" and _is_split_across_processes(leaves):
        raise ValueError("checkpoint.save: a state split over processes needs storage='orbax'.")
    stem = _stem(path)
    directory = os.path.dirname(stem) or "."
    if jax.process_index() == 0:
        os.makedirs(directory, exist_ok=True)
    if storage == "orbax":
        final = stem
        _save_orbax(final, text, leaves)
    else:
        final = stem + SUFFIX
        if jax.process_index() == 0:

            def write(f) -> None:
                with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                    _npz_member(zf, _RECORD, np.frombuffer(text.encode(), np.uint8))
                    for i, leaf in enumerate(leaves):
                        _npz_member(zf, f"leaf_{i}", _to_host(leaf))

            _write_atomic(final, write)
    if jax.process_index() == 0:
        # The other storage's checkpoint of the same name is superseded.
        other = stem if storage == "npz" else stem + SUFFIX
        if os.path.isdir(other) == (storage == "npz") and _read_kind_quietly(other):
            _remove(other)
    _barrier(f"jppl-checkpoint-saved:{final}")
    return final


def _save_orbax(final: str, record_text: str, leaves: list) -> None:
    import orbax.checkpoint as ocp

    directory = os.path.dirname(final) or "."
    name = os.path.basename(final)
    tmp = os.path.join(directory, _shared_tmp_name(name))
    if jax.process_index() == 0:
        _clean_stale(directory, [name])
        os.makedirs(tmp)
    _barrier(f"jppl-checkpoint-tmp:{tmp}")
    items = {f"leaf_{i}": leaf for i, leaf in enumerate(leaves)}
    try:
        with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as checkpointer:
            checkpointer.save(
                os.path.abspath(os.path.join(tmp, _ARRAYS)), args=ocp.args.PyTreeSave(items)
            )
        if jax.process_index() == 0:
            with open(os.path.join(tmp, _RECORD_FILE), "w", encoding="utf-8") as f:
                f.write(record_text)
        _fsync_tree(tmp)  # Orbax renames without fsync
        _barrier(f"jppl-checkpoint-written:{tmp}")
        if jax.process_index() == 0:
            _commit_dir(tmp, final)
            _clean_stale(directory, [name])  # an old one moved aside is superseded now
    except BaseException:
        if jax.process_index() == 0:
            _remove(tmp)
        raise


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _old_dirs(stem: str) -> list[str]:
    directory = os.path.dirname(stem) or "."
    prefix = f".{os.path.basename(stem)}.old-"
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [os.path.join(directory, e) for e in entries if e.startswith(prefix)]


def resolve(path: str | os.PathLike) -> str:
    """The checkpoint that ``path`` names: ``<stem>.npz`` or the Orbax directory ``<stem>``
    (the newer if both exist, e.g. after a crash between writing one and removing the other),
    else ``path`` itself if it is a file.

    Raises:
        FileNotFoundError: nothing there.
    """
    p = os.fspath(path)
    stem = _stem(p)
    npz = stem + SUFFIX if os.path.isfile(stem + SUFFIX) else None
    directory = stem if os.path.isdir(stem) else None
    if npz and directory:
        if not os.path.isfile(os.path.join(directory, _RECORD_FILE)):
            return npz
        return max((npz, directory), key=os.path.getmtime)
    if npz or directory:
        return npz or directory
    if os.path.isfile(p):
        return p
    # The old directory moved aside by a two-rename commit that crashed half-way.
    old = [d for d in _old_dirs(stem) if os.path.isfile(os.path.join(d, _RECORD_FILE))]
    if old:
        return max(old, key=os.path.getmtime)
    tried = stem + SUFFIX if p == stem else p
    raise FileNotFoundError(f"no checkpoint at {tried} (nor a directory {stem})")


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is one checkpoint saved as an Orbax directory (not a directory of
    ``step_*`` checkpoints)."""
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, name)) for name in (_RECORD_FILE, _ARRAYS)
    )


def _parse_record(raw: bytes, where: str) -> dict:
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _corrupt(where, f"its record is not valid JSON ({e})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise _corrupt(where, f"its record does not say {FORMAT!r}")
    version = record.get("version")
    if not isinstance(version, int) or version < 1:
        raise _corrupt(where, f"bad format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {where}: format version {version} is newer than this jppl reads "
            f"({FORMAT_VERSION}); upgrade jppl."
        )
    leaves = record.get("leaves")
    if not isinstance(leaves, list) or not all(
        isinstance(r, dict) and isinstance(r.get("shape"), list) and isinstance(r.get("dtype"), str)
        for r in leaves
    ):
        raise _corrupt(where, "malformed leaf list in the record")
    for r in leaves:
        try:
            jnp.dtype(r["dtype"])
        except TypeError:
            raise _corrupt(where, f"unknown dtype {r['dtype']!r} in the record") from None
    _check_structure(record.get("structure"), len(leaves), where)
    if not isinstance(record.get("meta", {}), dict):
        raise _corrupt(where, "malformed meta in the record")
    return record


def _zip_read(zf: zipfile.ZipFile, member: str, where: str) -> bytes:
    try:
        return zf.read(member)  # reads it whole: checks its CRC-32
    except KeyError:
        raise _corrupt(where, f"member {member} is missing") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        raise _corrupt(where, f"member {member} is damaged ({e})") from None


def _npy(raw: bytes, member: str, where: str) -> np.ndarray:
    buf = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            _, _, dtype = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            _, _, dtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as e:
        raise _corrupt(where, f"member {member} is not a NumPy array ({e})") from None
    if dtype.hasobject:
        raise _corrupt(where, f"member {member} holds Python objects (never unpickled)")
    buf.seek(0)
    try:
        return np.lib.format.read_array(buf, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise _corrupt(where, f"member {member} is truncated or damaged ({e})") from None


def _npz_record(zf: zipfile.ZipFile, where: str) -> dict:
    names = zf.namelist()
    legacy = {"__meta__.npy", "__jppl_svi_state__.npy"} & set(names)
    if legacy and _RECORD + ".npy" not in names:
        raise _corrupt(
            where,
            "an .npz of an older jppl (before the jppl.checkpoint format, with "
            f"{legacy.pop().removesuffix('.npy')}); this version does not read it",
        )
    if _RECORD + ".npy" not in names:
        shown = ", ".join(n.removesuffix(".npy") for n in names[:5])
        more = ", ..." if len(names) > 5 else ""
        raise _corrupt(
            where, f"no jppl record ({_RECORD}) in the archive; it holds [{shown}{more}]"
        )
    raw = _npy(_zip_read(zf, _RECORD + ".npy", where), _RECORD, where)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _corrupt(where, "its record is not a byte string")
    return _parse_record(raw.tobytes(), where)


def _open_zip(where: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(where)
    except zipfile.BadZipFile as e:
        size = os.path.getsize(where)
        detail = "the file is empty" if size == 0 else f"{e} ({size} bytes)"
        raise _corrupt(
            where, f"not a complete .npz archive (truncated or another format): {detail}"
        ) from None
    except (OSError, EOFError, ValueError) as e:
        raise _corrupt(where, f"cannot read it as an .npz archive ({e})") from None


def _read_kind_quietly(path: str) -> str | None:
    """The kind of the jppl checkpoint at ``path`` (None if it is not a readable one)."""
    try:
        return _read_record(path)["kind"]
    except (CheckpointError, OSError):
        return None


def _read_record(path: str) -> dict:
    if os.path.isdir(path):
        record_file = os.path.join(path, _RECORD_FILE)
        if not os.path.isfile(record_file):
            raise _corrupt(path, f"a directory without {_RECORD_FILE}")
        with open(record_file, "rb") as f:
            return _parse_record(f.read(), path)
    with _open_zip(path) as zf:
        return _npz_record(zf, path)


def _npz_arrays(path: str, record: dict) -> list[np.ndarray]:
    out = []
    with _open_zip(path) as zf:
        for i, leaf in enumerate(record["leaves"]):
            member = f"leaf_{i}"
            arr = _npy(_zip_read(zf, member + ".npy", path), member, path)
            dtype, shape = jnp.dtype(leaf["dtype"]), tuple(leaf["shape"])
            if arr.dtype.kind == "u" and arr.dtype.itemsize == 1 and dtype.kind not in "biufc":
                if arr.size != int(np.prod(shape)) * dtype.itemsize:
                    raise _corrupt(
                        path, f"member {member} has {arr.size} bytes, not {shape} {dtype}"
                    )
                arr = arr.view(dtype).reshape(shape)
            if arr.shape != shape or arr.dtype != dtype:
                raise _corrupt(
                    path,
                    f"member {member} has shape {arr.shape} and dtype {arr.dtype}; the record "
                    f"says {shape} {dtype}",
                )
            out.append(arr)
    return out


def _orbax_arrays(path: str, record: dict, shardings: list) -> list:
    import orbax.checkpoint as ocp

    arrays_dir = os.path.abspath(os.path.join(path, _ARRAYS))
    if not os.path.isdir(arrays_dir):
        raise _corrupt(path, f"the directory has no {_ARRAYS}/ (Orbax checkpoint)")
    restore_args = {}
    for i, sharding in enumerate(shardings):
        if sharding is None:
            restore_args[f"leaf_{i}"] = ocp.RestoreArgs(restore_type=np.ndarray)
        else:
            restore_args[f"leaf_{i}"] = ocp.ArrayRestoreArgs(sharding=sharding)
    try:
        with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as checkpointer:
            items = checkpointer.restore(
                arrays_dir, args=ocp.args.PyTreeRestore(restore_args=restore_args)
            )
    except Exception as e:  # Orbax and TensorStore raise many types for bad data
        raise _corrupt(path, f"Orbax could not read the arrays ({type(e).__name__}: {e})") from None
    out = []
    for i, leaf in enumerate(record["leaves"]):
        arr = items.get(f"leaf_{i}") if isinstance(items, dict) else None
        if arr is None:
            raise _corrupt(path, f"leaf_{i} is missing from the Orbax checkpoint")
        dtype, shape = jnp.dtype(leaf["dtype"]), tuple(leaf["shape"])
        if tuple(arr.shape) != shape or jnp.dtype(arr.dtype) != dtype:
            raise _corrupt(
                path,
                f"leaf_{i} has shape {tuple(arr.shape)} and dtype {arr.dtype}; the record says "
                f"{shape} {dtype}",
            )
        out.append(arr)
    return out


def _stored_form(leaf: Any) -> tuple[tuple[int, ...], np.dtype, str | None]:
    """``(shape, dtype, key impl)`` of ``leaf`` as it would be stored (keys as key data)."""
    if _is_key(leaf):
        data = jax.eval_shape(jax.random.key_data, leaf)
        return tuple(data.shape), jnp.dtype(data.dtype), str(jax.random.key_impl(leaf))
    if isinstance(leaf, jax.ShapeDtypeStruct | jax.Array | np.ndarray | np.generic):
        return tuple(leaf.shape), jnp.dtype(leaf.dtype), None
    arr = np.asarray(leaf)
    return arr.shape, arr.dtype, None


def _same_dtype(a: np.dtype, b: np.dtype) -> bool:
    # float64 in a file and float32 in the template are the same without jax_enable_x64.
    canon = jax.dtypes.canonicalize_dtype
    return a == b or canon(a) == canon(b)


def _describe(shape, dtype, impl) -> str:
    if impl is not None:
        return f"PRNG keys ({impl}) with key data of shape {tuple(shape)}"
    return f"shape {tuple(shape)} and dtype {jnp.dtype(dtype).name}"


def _match_template(record: dict, template: Any, where: str, name: str) -> tuple[Any, list[int]]:
    """Check the file's leaves against ``template``; return the template's treedef and, for
    each template leaf, the index of the file's leaf."""
    file_paths = dict(_leaf_paths(record["structure"]))
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    order = []
    template_paths = set()
    for key_path, leaf in flat:
        p = jax.tree_util.keystr(key_path)
        template_paths.add(p)
        if p not in file_paths:
            raise CheckpointError(
                f"checkpoint {where}: {name}{p} is missing from the file (it holds "
                f"{', '.join(name + q for q in list(file_paths)[:8]) or 'no arrays'})."
            )
        i = file_paths[p]
        saved = record["leaves"][i]
        shape, dtype, impl = tuple(saved["shape"]), jnp.dtype(saved["dtype"]), saved.get("key_impl")
        t_shape, t_dtype, t_impl = _stored_form(leaf)
        if shape != t_shape or not _same_dtype(dtype, t_dtype) or impl != t_impl:
            raise CheckpointError(
                f"checkpoint {where}: {name}{p} has {_describe(shape, dtype, impl)} in the "
                f"file; expected {_describe(t_shape, t_dtype, t_impl)} (as in the template)."
            )
        order.append(i)
    extra = [p for p in file_paths if p not in template_paths]
    if extra:
        raise CheckpointError(
            f"checkpoint {where}: the file holds {name}{extra[0]}, which the template has not."
        )
    return treedef, order


def _data_sharding(leaf: Any):
    """Where the stored array of a template leaf goes (``None``: a host array)."""
    if isinstance(leaf, jax.Array):
        # (a key array's sharding, applied to its key data with a trailing dim)
        return jax.random.key_data(leaf).sharding if _is_key(leaf) else leaf.sharding
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf.sharding
    return None


def _place(arr: Any, sharding) -> jax.Array:
    if sharding is None or (isinstance(arr, jax.Array) and arr.sharding == sharding):
        return jnp.asarray(arr)
    if sharding.is_fully_addressable:
        return jax.device_put(arr, sharding)
    host = np.asarray(arr)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _finish_leaf(arr: Any, saved: dict, sharding) -> Any:
    value = _place(arr, sharding)
    if "key_impl" in saved:
        return jax.random.wrap_key_data(value, impl=saved["key_impl"])
    if "python" in saved and sharding is None:
        kind = {"int": int, "float": float, "bool": bool, "complex": complex}.get(saved["python"])
        if kind is not None:
            return kind(np.asarray(arr).item())
    return value


def load(
    path: str | os.PathLike,
    *,
    kind: str | Sequence[str] | None = None,
    template: Any = None,
    name: str = "state",
) -> LoadedCheckpoint:
    """Read a checkpoint written by :func:`save`.

    Every process must call it with the same arguments when the checkpoint is an Orbax
    directory or the template's arrays span several processes.

    Args:
        path: ``<stem>`` or ``<stem>.npz`` (see :func:`resolve`).
        kind: the kind (or kinds) expected; ``None`` accepts any.
        template: optional pytree like the saved one (e.g. ``svi.init(...)``; arrays or
            ``jax.ShapeDtypeStruct``). The file must have its structure, shapes and dtypes,
            and the result takes its structure and, for JAX-array leaves, their shardings
            (any mesh, not necessarily the one that saved it). Without it the stored structure
            is rebuilt (NamedTuple classes only from modules already imported) as host arrays.
        name: how errors name the root of the tree (``state.step_size``, ``params['loc']``).

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointError: not a jppl checkpoint, truncated or corrupt, another kind, or not
            matching the template.
    """
    where = resolve(path)
    record = _read_record(where)
    if kind is not None:
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        if record.get("kind") not in kinds:
            raise CheckpointError(
                f"checkpoint {where}: it holds a {record.get('kind')!r} checkpoint; expected "
                f"{' or '.join(repr(k) for k in kinds)}."
            )
    n = len(record["leaves"])
    shardings: list = [None] * n
    treedef, order = None, None
    if template is not None:
        treedef, order = _match_template(record, template, where, name)
        for i, leaf in zip(order, jax.tree_util.tree_leaves(template), strict=True):
            shardings[i] = _data_sharding(leaf)
    if os.path.isdir(where):
        arrays = _orbax_arrays(where, record, shardings)
    else:
        arrays = _npz_arrays(where, record)
    leaves = [
        _finish_leaf(arr, saved, sharding)
        for arr, saved, sharding in zip(arrays, record["leaves"], shardings, strict=True)
    ]
    if treedef is not None:
        tree = jax.tree_util.tree_unflatten(treedef, [leaves[i] for i in order])
    else:
        tree = _decode(record["structure"], leaves, where)
    return LoadedCheckpoint(tree, record["kind"], dict(record.get("meta", {})), where)


def check_tree(tree: Any, template: Any, where: str, name: str = "state") -> None:
    """Check that ``tree`` has ``template``'s structure, shapes and dtypes.

    Raises:
        CheckpointError: naming the first leaf that differs (``state.params['loc']``).
    """
    leaves: list = []
    records: list = []
    structure = _encode(tree, leaves, records)
    _match_template({"structure": structure, "leaves": records}, template, where, name)


# ---------------------------------------------------------------------------------------------
# MCMC states
# ---------------------------------------------------------------------------------------------


def _host_array(x: Any) -> np.ndarray:
    if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def check_mcmc_state(state: Any, where: str, num_chains: int | None = None) -> None:
    """Check a loaded MCMC state (an :class:`~jppl.mcmc.state.MCMCState`): one leading chain
    dim ``C`` on every field (``num_chains`` if given), a finite positive step size, a finite
    inverse mass matrix (positive diagonal ``(C, d)``, or symmetric ``(C, d, d)`` with a
    positive diagonal), and a finite position, log density and gradient.

    Raises:
        CheckpointError: e.g. ``checkpoint <path>: state.step_size of chain 2 is nan; expected
            a finite positive number``.
    """
    fields = ("position", "logdensity", "logdensity_grad", "step_size", "inverse_mass_matrix")
    values = {f: _host_array(getattr(state, f)) for f in (*fields, "step")}
    chains = {f: (v.shape[0] if v.ndim else None) for f, v in values.items()}
    count = chains["position"]
    for f, c in chains.items():
        if c is None or c != count:
            raise CheckpointError(
                f"checkpoint {where}: state.{f} has shape {values[f].shape}; expected a leading "
                f"chain dim of {count} (as state.position {values['position'].shape})."
            )
    if num_chains is not None and count != num_chains:
        raise CheckpointError(
            f"checkpoint {where}: the state holds {count} chains; expected {num_chains}."
        )
    dim = values["position"].shape[1:]
    expected = {
        "logdensity": (),
        "logdensity_grad": dim,
        "step_size": (),
        "step": (),
    }
    for f, tail in expected.items():
        if values[f].shape[1:] != tail:
            raise CheckpointError(
                f"checkpoint {where}: state.{f} has shape {values[f].shape}; expected "
                f"{(count, *tail)}."
            )
    for c in range(count):
        step_size = values["step_size"][c]
        if not (np.isfinite(step_size) and step_size > 0):
            raise CheckpointError(
                f"checkpoint {where}: state.step_size of chain {c} is {step_size}; expected a "
                "finite positive number."
            )
        for f in ("position", "logdensity", "logdensity_grad"):
            bad = ~np.isfinite(values[f][c])
            if np.any(bad):
                at = tuple(int(i) for i in np.argwhere(np.atleast_1d(bad))[0])
                value = np.atleast_1d(values[f][c])[at]
                raise CheckpointError(
                    f"checkpoint {where}: state.{f} of chain {c} is {value} at index {at}; "
                    "expected finite numbers."
                )
        if values["step"][c] < 0:
            raise CheckpointError(
                f"checkpoint {where}: state.step of chain {c} is {values['step'][c]}; expected "
                "a count >= 0."
            )
        _check_mass_matrix(values["inverse_mass_matrix"][c], c, where, tuple(dim))


def _check_mass_matrix(m: np.ndarray, chain: int, where: str, dim: tuple) -> None:
    what = f"checkpoint {where}: state.inverse_mass_matrix of chain {chain}"
    d = dim[0] if dim else 1
    if m.shape not in ((d,), (d, d)):
        raise CheckpointError(f"{what} has shape {m.shape}; expected ({d},) or ({d}, {d}).")
    if not np.all(np.isfinite(m)):
        raise CheckpointError(f"{what} has non-finite entries; expected finite numbers.")
    diag = m if m.ndim == 1 else np.diagonal(m)
    if np.any(diag <= 0):
        i = int(np.argmax(diag <= 0))
        raise CheckpointError(
            f"{what} has diagonal entry {diag[i]} at index {i}; expected positive numbers."
        )
    if m.ndim == 2:
        asym = float(np.max(np.abs(m - m.T)))
        if asym > 1e-6 * float(np.max(np.abs(m))):
            raise CheckpointError(f"{what} is not symmetric (max |M - M^T| = {asym:.3g}).")


# ---------------------------------------------------------------------------------------------
# Directories of checkpoints
# ---------------------------------------------------------------------------------------------


def list_steps(directory: str | os.PathLike) -> list[tuple[int, str]]:
    """``[(step, path)]`` of the ``step_<9 digits>[.npz]`` checkpoints in ``directory``,
    oldest first (for one step, the newer of a file and a directory last)."""
    if not os.path.isdir(directory):
        return []
    found = []
    for entry in os.listdir(directory):
        m = _STEP.match(entry)
        if m is None:
            continue
        full = os.path.join(os.fspath(directory), entry)
        if bool(m.group(2)) != os.path.isfile(full):
            continue
        found.append((int(m.group(1)), os.path.getmtime(full), full))
    return [(step, full) for step, _, full in sorted(found)]


def latest(directory: str | os.PathLike) -> str | None:
    """Path of the checkpoint with the largest step in ``directory`` (``None`` if none)."""
    found = list_steps(directory)
    return found[-1][1] if found else None


def save_step(
    directory: str | os.PathLike,
    step: int,
    tree: Any,
    *,
    kind: str,
    meta: dict[str, Any] | None = None,
    keep: int = 3,
) -> str:
    """:func:`save` ``tree`` as ``directory/step_<step>`` (``.npz``, or an Orbax directory)
    and remove all but the last ``keep`` steps. Returns the path written."""
    if keep < 1:
        raise ValueError(f"checkpoint.save_step: keep must be >= 1, got {keep}.")
    directory = os.fspath(directory)
    path = save(os.path.join(directory, f"step_{int(step):09d}"), tree, kind=kind, meta=meta)
    if jax.process_index() == 0:
        found = list_steps(directory)
        old_steps = sorted({s for s, _ in found})[:-keep]
        for s, p in found:
            if s in old_steps and p != path:
                _remove(p)
        _clean_stale(directory)
    _barrier(f"jppl-checkpoint-pruned:{path}")
    return path


def load_latest(
    directory: str | os.PathLike,
    *,
    kind: str | Sequence[str] | None = None,
    template: Any = None,
    name: str = "state",
) -> LoadedCheckpoint:
    """:func:`load` the newest checkpoint of ``directory`` that can be read, warning
    (:class:`CheckpointWarning`) about each newer one skipped and why.

    Raises:
        FileNotFoundError: no ``step_*`` checkpoint in ``directory``.
        CheckpointError: none of them can be read (the message lists why, for each).
    """
    found = list_steps(directory)
    if not found:
        raise FileNotFoundError(f"no step_<9 digits>[.npz] checkpoint in {directory}")
    reasons = []
    for _, path in reversed(found):
        try:
            return load(path, kind=kind, template=template, name=name)
        except CheckpointError as e:
            warnings.warn(f"skipped checkpoint {path}: {e}", CheckpointWarning, stacklevel=2)
            reasons.append(str(e))
    raise CheckpointError(f"no readable checkpoint in {directory}:\n" + "\n".join(reasons))
