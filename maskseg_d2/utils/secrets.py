"""Secrets are never saved: credential values become ``***`` in every config, log and W&B run a run writes.

Which values are secret:

- the value of every environment variable whose name ends in ``_KEY``, ``_TOKEN``, ``_SECRET``,
  ``_PASSWORD`` or ``_PASSWD`` (``WANDB_API_KEY``, ``HF_TOKEN``, ``LABEL_STUDIO_API_KEY``,
  ``AWS_SECRET_ACCESS_KEY``...);
- values registered where they are made or read: a Label Studio token read from ``dataset.token_file`` and the
  access token a personal access token is exchanged for (:mod:`maskseg_d2.data.labelstudio_client`);
- every string under a config key named like a credential (``api_key``, ``*_token``, ``secret``, ``*_password``),
  e.g. ``+logger.api_key=...`` typed on the command line.

Dropping credential-named *keys* (:func:`maskseg_d2.tracking.wandb_writer.scrub_secrets`) misses a token that
reaches an innocent key through ``${oc.env:HF_TOKEN}``, a literal on the command line (Hydra saves it in
``.hydra/overrides.yaml``, ``run_info.json`` saves the command) or a log line, so the *values* are replaced
wherever text is written: :func:`redact` / :func:`redact_tree` before writing, :func:`redact_file` for files
that others write (Detectron2's ``config.yaml``, Hydra's ``.hydra/*.yaml``), and a log-record hook
(:func:`install_log_redaction`) for every logger and handler (the terminal, each tool's ``log.txt``).
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Any, Iterable, Mapping

import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf

from .fileio import atomic_write_text

__all__ = ["REDACTED", "MIN_SECRET_LEN", "SECRET_ENV_NAME", "SECRET_KEY_NAME", "env_secrets",
           "config_secrets", "register_secrets", "known_secrets", "contains_secret", "redact", "redact_tree",
           "redact_file", "redact_hydra_outputs", "SecretFilter", "install_log_redaction", "protect_run",
           "argv_has_secret"]

logger = logging.getLogger(__name__)

REDACTED = "***"
# Shorter values ("1", "true", "main", "cpu") occur everywhere: replacing them would garble logs and configs.
MIN_SECRET_LEN = 6
SECRET_ENV_NAME = re.compile(r"(?:^|_)(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD)$", re.IGNORECASE)
# Credential forms at the end of the name (``api_key``, ``wandbApiKey``, ``hf_token``, ``accessToken``,
# ``client_secret``, ``db_password``); ``tokenizer``, ``max_tokens``, ``image_key`` name settings, not secrets.
SECRET_KEY_NAME = re.compile(
    r"(?:(?:api|access|secret|private)_?key|(?:^|[_.-]|api|access|auth|refresh|bearer)token|secret|passw(?:or)?d)$",
    re.IGNORECASE)

_secrets: set[str] = set()


def _is_secret_value(value: Any) -> bool:
    # A path to a key file is not the key; redacting it would break dataset/weights paths saved with a run.
    return isinstance(value, str) and len(value.strip()) >= MIN_SECRET_LEN and not os.path.exists(value)


def env_secrets(environ: Mapping[str, str] | None = None) -> set[str]:
    """Values of the environment variables named like credentials (``*_KEY``, ``*_TOKEN``, ...)."""
    env = os.environ if environ is None else environ
    return {v.strip() for k, v in env.items() if SECRET_ENV_NAME.search(k) and _is_secret_value(v)}


def _strings(tree: Any) -> Iterable[str]:
    if isinstance(tree, Mapping):
        for v in tree.values():
            yield from _strings(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _strings(v)
    elif isinstance(tree, str):
        yield tree


def _secret_keyed(tree: Any) -> Iterable[str]:
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            yield from (_strings(v) if SECRET_KEY_NAME.search(str(k)) else _secret_keyed(v))
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _secret_keyed(v)


def config_secrets(cfg: Any) -> set[str]:
    """String values under credential-named keys of a DictConfig / dict (resolved where possible)."""
    if cfg is None:
        return set()
    if isinstance(cfg, (DictConfig, ListConfig)):
        try:
            cfg = OmegaConf.to_container(cfg, resolve=True)
        except Exception:  # e.g. ${hydra:...} outside a Hydra run: the unresolved values
            cfg = OmegaConf.to_container(cfg, resolve=False)
    return {v.strip() for v in _secret_keyed(cfg) if _is_secret_value(v)}


def register_secrets(values: Iterable[str]) -> None:
    """Add values to redact from now on (process-wide; the set only grows)."""
    _secrets.update(v.strip() for v in values if _is_secret_value(v))


def known_secrets() -> list[str]:
    """The registered secret values, longest first (a secret that contains another is replaced whole)."""
    return sorted(_secrets, key=len, reverse=True)


def contains_secret(text: str) -> bool:
    return any(s in text for s in _secrets)


def redact(text: str) -> str:
    """``text`` with every registered secret value replaced by ``***``."""
    if not _secrets or not isinstance(text, str):
        return text
    for s in known_secrets():
        if s in text:
            text = text.replace(s, REDACTED)
    return text


def redact_tree(tree: Any) -> Any:
    """A copy of a nested dict/list/tuple with secret values (and keys) redacted in every string."""
    if isinstance(tree, Mapping):
        return {redact(k) if isinstance(k, str) else k: redact_tree(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(redact_tree(v) for v in tree)
    return redact(tree) if isinstance(tree, str) else tree


def _redacted_text(path: str, text: str) -> str:
    # Parse and dump instead of replacing text: a secret that was a whole unquoted YAML scalar would become
    # `key: ***`, an alias, and the file could no longer be loaded (tools/eval.py re-reads these configs).
    if path.endswith((".yaml", ".yml")):
        try:
            return yaml.safe_dump(redact_tree(yaml.safe_load(text)), sort_keys=False, allow_unicode=True)
        except yaml.YAMLError:
            pass
    elif path.endswith(".json"):
        try:
            return json.dumps(redact_tree(json.loads(text)), indent=2)
        except ValueError:
            pass
    return redact(text)


def redact_file(path: str) -> bool:
    """Rewrite a text file (YAML/JSON structurally, anything else as text) if it holds a secret.

    Returns:
        bool: True when the file was rewritten.
    """
    if not _secrets or not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    if not contains_secret(text):
        return False
    atomic_write_text(path, _redacted_text(path, text), errors="surrogateescape")  # never a half-written config
    return True


def redact_hydra_outputs(output_dir: str) -> list[str]:
    """Redact what Hydra wrote before the task ran: ``<run dir>/.hydra/*.yaml``, a sweep's ``multirun.yaml``.

    Returns:
        list[str]: the files rewritten.
    """
    subdir, sweep_dir = ".hydra", None
    try:
        if HydraConfig.initialized():
            hc = HydraConfig.get()
            subdir = hc.output_subdir
            sweep_dir = str(hc.sweep.dir) if str(hc.mode) == "RunMode.MULTIRUN" else None
    except ValueError:
        pass
    paths = [os.path.join(output_dir, subdir, n) for n in ("config.yaml", "hydra.yaml", "overrides.yaml")] \
        if subdir else []
    if sweep_dir:
        paths.append(os.path.join(sweep_dir, "multirun.yaml"))
    return [p for p in paths if redact_file(p)]


class SecretFilter(logging.Filter):
    """Redacts a log record in place (message, arguments, formatted traceback); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        if contains_secret(message):
            record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            if contains_secret(text):
                record.exc_text = redact(text)  # Formatter.format uses exc_text when it is set
        return True


def install_log_redaction() -> None:
    """Redact every log record from now on, whichever logger or handler writes it. Idempotent.

    Installed as the log-record factory rather than as a filter on today's handlers: Detectron2's
    ``log.txt`` handler (``default_setup``) and W&B's ``debug.log`` are created later and are covered too.
    """
    old = logging.getLogRecordFactory()
    if getattr(old, "_maskseg_redacts", False):
        return
    flt = SecretFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = old(*args, **kwargs)
        flt.filter(record)
        return record

    factory._maskseg_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def protect_run(cfg: Any = None) -> list[str]:
    """Register the environment's and ``cfg``'s secrets and redact logs from now on.

    Args:
        cfg (DictConfig or dict or None): the run's config (credential-named keys).

    Returns:
        list[str]: every secret registered so far.
    """
    register_secrets(env_secrets() | config_secrets(cfg))
    install_log_redaction()
    return known_secrets()


def argv_has_secret() -> bool:
    """True when the command line holds a secret (W&B would record it with the run's metadata)."""
    return any(contains_secret(a) for a in sys.argv)
