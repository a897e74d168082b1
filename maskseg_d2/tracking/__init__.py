"""Experiment tracking (W&B). The writer itself arrives with the training issue; the mode rule lives here."""
from __future__ import annotations

import netrc
import os

__all__ = ["wandb_mode"]


def _logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode() -> tuple[str, str]:
    """``(mode, why)``: ``WANDB_MODE`` wins; else online when logged in (key or netrc), else offline."""
    env = os.environ.get("WANDB_MODE")
    if env:
        return env, "WANDB_MODE is set"
    if _logged_in():
        return "online", "logged in (WANDB_API_KEY or `wandb login`)"
    return "offline", "not logged in; runs are saved locally, upload later with `wandb sync <run dir>/wandb`"
