"""Run a tool once per argv, each in a forked child of one interpreter that imported the tool's modules
once: every case is a real process (own exit code and output) without paying the ~4 s torch/Detectron2
import per case. The child's address space is capped so a case that tries a giant allocation fails."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEADROOM = 1536 << 20  # bytes of address space a case may add to the parent's (1.5 GiB)

# Each case is a real process (own exit code and stderr) forked from one interpreter that imported the
# tool's modules once; the child's address space is capped at the parent's size + HEADROOM.
FORK_DRIVER = r"""
import json, os, resource, runpy, sys, tempfile, traceback
tool, cases, modules, headroom = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
for m in modules.split(","):
    __import__(m)
vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
out = []
for argv in cases:
    log = tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        resource.setrlimit(resource.RLIMIT_AS, (vm + headroom, vm + headroom))
        os.dup2(log.fileno(), 2)
        os.dup2(log.fileno(), 1)
        sys.argv = [tool, *argv]
        try:
            runpy.run_path(tool, run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    log.seek(0)
    out.append({"code": os.waitstatus_to_exitcode(status), "log": log.read().decode(errors="replace")})
print(json.dumps(out))
"""


def run_cases(tool: str, modules: str, argvs: list[list[str]]) -> list[dict]:
    """Run ``tool`` once per argv in forked children; -> [{"code": exit code, "log": stdout+stderr}]."""
    args = [sys.executable, "-c", FORK_DRIVER, tool, json.dumps(argvs), modules, str(HEADROOM)]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])
