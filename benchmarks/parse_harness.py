"""
Time DAG files the way Airflow's dag processor pays for them: module execution in a forked child.

``benchmarks/run.py`` starts this script in a process of its own, so that nothing it imported itself
(the package under test above all) is already in ``sys.modules``. This process plays the dag
processor's long-running parent: it imports what the parent has imported (``airflow.sdk`` and the
configuration; with ``--parent processor`` also ``airflow.dag_processing.processor``, the module the
manager forks its parsing children from) and pre-imports the Airflow modules the files name, as
``DagFileProcessorProcess.start`` does when ``[dag_processor] parsing_pre_import_modules`` is on.
After an untimed warm-up that writes the bytecode caches (whatever PYTHONDONTWRITEBYTECODE says: a
deployment keeps them), for each repeat it forks one child per file, in alternating order (A B, then
B A), and each child times only the file's own execution: ``SourceFileLoader.exec_module`` under the
module name Airflow gives it, package modules the file imports included.

Prints one JSON object on stdout: the per-file samples in milliseconds and what each child saw.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

PARENTS = ("sdk", "processor")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("files", nargs=2, help="the two DAG files to time, A and B")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of each file")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each file first")
    parser.add_argument("--parent", choices=PARENTS, default="sdk", help="what the parent has imported")
    parser.add_argument("--plugins-folder", required=True, help="must be on sys.path, as Airflow puts it")
    return parser.parse_args(argv)


def _prepare_parent(parent: str, files: list[str], plugins_folder: str) -> list[str]:
    """Import what the dag processor's parent holds; return the Airflow modules pre-imported."""
    import airflow.sdk  # noqa: F401  (the parent has it; the children inherit it through fork)
    from airflow.configuration import conf
    from airflow.sdk.configuration import conf as sdk_conf

    conf.getboolean("dag_processor", "parsing_pre_import_modules", fallback=True)
    sdk_conf.get("core", "dags_folder", fallback="")
    if parent == "processor":
        importlib.import_module("airflow.dag_processing.processor")
    if plugins_folder not in sys.path:
        raise RuntimeError(
            f"Airflow did not put the plugins folder {plugins_folder} on sys.path; "
            "set AIRFLOW__CORE__PLUGINS_FOLDER before starting this harness"
        )
    from airflow.utils.file import iter_airflow_imports

    pre_imported: list[str] = []
    for path in files:  # the manager keeps what it pre-imported for every file it has parsed
        for module in iter_airflow_imports(path):
            importlib.import_module(module)
            pre_imported.append(module)
    if any(name == "parkmobile_token" or name.startswith("parkmobile_token.") for name in sys.modules):
        raise RuntimeError("the parent imported the package under test; the children would not pay for it")
    return sorted(set(pre_imported))


def _child_exec(path: str, write_fd: int) -> None:
    """In the forked child: execute the DAG file once, time it, report through the pipe, exit."""
    from airflow.sdk.definitions._internal.contextmanager import DagContext
    from airflow.utils.file import get_unique_dag_module_name

    report: dict[str, Any]
    try:
        mod_name = get_unique_dag_module_name(path)
        sys.modules.pop(mod_name, None)
        DagContext.current_autoregister_module_name = mod_name
        before = set(sys.modules)
        started_wall = time.time()
        started = time.perf_counter_ns()
        loader = importlib.machinery.SourceFileLoader(mod_name, path)
        spec = importlib.util.spec_from_loader(mod_name, loader)
        if spec is None:
            raise RuntimeError(f"no module spec for {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        loader.exec_module(module)
        elapsed_ns = time.perf_counter_ns() - started
        from airflow.sdk import DAG

        new_modules = set(sys.modules) - before - {mod_name}
        loaded = [sys.modules[name] for name in new_modules] + [module]
        report = {
            "compiled": sorted(
                loaded_module.__name__
                for loaded_module in loaded
                if _compiled_since(loaded_module, started_wall)
            ),
            "ms": elapsed_ns / 1e6,
            "dags": sum(isinstance(value, DAG) for value in vars(module).values()),
            "new_modules": len(new_modules),
            "package_modules": sorted(name for name in new_modules if name.startswith("parkmobile_token")),
        }
    except BaseException as err:  # reported to the parent, which fails the benchmark
        report = {"error": f"{type(err).__name__}: {err}"}
    os.write(write_fd, json.dumps(report).encode("utf-8"))
    os.close(write_fd)
    os._exit(0)


def _compiled_since(module: Any, moment: float) -> bool:
    """Whether a module loaded from source had no bytecode cache older than ``moment``."""
    cached = getattr(module, "__cached__", None)
    if not cached or not str(getattr(module, "__file__", "")).endswith(".py"):
        return False
    try:
        return os.path.getmtime(cached) >= moment
    except OSError:  # no cache file: compiled, and not written
        return True


def _run_in_child(path: str) -> dict[str, Any]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        _child_exec(path, write_fd)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        raise RuntimeError(f"the parsing child of {path} died (wait status {status})")
    report: dict[str, Any] = json.loads(b"".join(chunks))
    if "error" in report:
        raise RuntimeError(f"parsing {path} failed in the child: {report['error']}")
    return report


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # A deployed dag processor writes and reuses bytecode caches; PYTHONDONTWRITEBYTECODE would make
    # every child compile the package from source, a cost no deployment pays after its first pass.
    sys.dont_write_bytecode = False
    files = [str(Path(path).resolve()) for path in args.files]
    setup_started = time.perf_counter()
    pre_imported = _prepare_parent(args.parent, files, str(Path(args.plugins_folder).resolve()))
    setup_s = time.perf_counter() - setup_started

    for _ in range(args.warmup):  # writes the files' bytecode caches, as the processor's first pass does
        for path in files:
            _run_in_child(path)
    samples: dict[str, list[float]] = {path: [] for path in files}
    last: dict[str, dict[str, Any]] = {}
    compiled: set[str] = set()
    for repeat in range(args.repeats):
        order = files if repeat % 2 == 0 else files[::-1]
        for path in order:
            report = _run_in_child(path)
            samples[path].append(report["ms"])
            compiled.update(report["compiled"])
            last[path] = report
    result = {
        "parent": args.parent,
        "parent_setup_s": setup_s,
        "pre_imported": pre_imported,
        "compiled_while_timed": sorted(compiled),
        "files": [
            {
                "path": path,
                "samples_ms": samples[path],
                "dags": last[path]["dags"],
                "new_modules": last[path]["new_modules"],
                "package_modules": last[path]["package_modules"],
            }
            for path in files
        ],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
