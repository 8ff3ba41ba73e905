"""`python -m inhouse.tuning.trainer JOB_DIR`: the child process that trains one job.

Exit status 0 when final/ is written; 2 after an `error` event for a known failure (bad
data, a refused file, out of memory, the tuning extra missing); 1 on a crash (also with an
`error` event, and a traceback on stderr). Before anything else the child lowers its
priority (serving wins the CPU) and caps its memory at the spec's `max_memory_mb`.
"""

from __future__ import annotations

import os
import resource
import sys
import traceback
from pathlib import Path

from inhouse.errors import InhouseError
from inhouse.tuning.trainer.progress import Progress
from inhouse.tuning.trainer.spec import TrainSpec, tuning_available

NICENESS = 10
KNOWN_ERROR, CRASH = 2, 1
_OOM_TEXT = ("can't allocate memory", "out of memory", "cannot allocate memory")


def limit(spec: TrainSpec) -> None:
    """Lower priority, cap the address space, and set torch's thread count (via env)."""
    os.nice(NICENESS)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(spec.threads)
    if spec.max_memory_mb is not None:
        cap = spec.max_memory_mb << 20
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))  # soft: lifted to report a failure


def _lift() -> int:
    """Lift the memory cap (to the hard limit) and return it, in MB (0: none): a child that
    ran out of memory may otherwise be unable even to write why."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    return 0 if soft == resource.RLIM_INFINITY else soft >> 20


def main(argv: list[str]) -> int:
    """Train the job in argv[0]; the exit status says how it went."""
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m inhouse.tuning.trainer JOB_DIR (a folder)", file=sys.stderr)
        return KNOWN_ERROR
    job_dir = Path(argv[0])
    progress = Progress(job_dir)
    try:
        from inhouse.tuning.trainer.loop import read_spec, run

        limit(read_spec(job_dir))
        run(job_dir)
    except InhouseError as exc:
        _lift()
        progress.emit("error", code=exc.code or exc.type, message=exc.message)
        return KNOWN_ERROR
    except ImportError as exc:
        cap = _lift()
        missing = tuning_available()
        code, message = ("tuning_unavailable", missing) if missing else _oom(exc, cap)
        progress.emit("error", code=code, message=message)
        return KNOWN_ERROR
    except (MemoryError, RuntimeError, OSError) as exc:
        cap = _lift()
        if not isinstance(exc, MemoryError) and not _is_oom(exc):
            return _crash(progress, exc)
        progress.emit("error", code="out_of_memory", message=_oom(exc, cap)[1])
        return KNOWN_ERROR
    except Exception as exc:
        _lift()
        return _crash(progress, exc)
    return 0


def _is_oom(exc: BaseException) -> bool:
    return any(text in str(exc).lower() for text in _OOM_TEXT)


def _oom(exc: BaseException, cap_mb: int) -> tuple[str, str]:
    cap = f"{cap_mb} MB" if cap_mb else "no limit"
    detail = f": {exc}" if str(exc) else ""
    return "out_of_memory", f"out of memory (max_memory_mb: {cap}){detail}"


def _crash(progress: Progress, exc: BaseException) -> int:
    progress.emit("error", code="internal_error", message=f"{type(exc).__name__}: {exc}")
    traceback.print_exc()
    return CRASH


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
