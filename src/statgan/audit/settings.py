"""The invert/audit knobs, under their historical name: :mod:`statgan.audit_settings` holds them (a
light module outside this package, so the CLI can read them without importing torch)."""

from ..audit_settings import (AuditSettings, InvertSettings, LOSSES, MODE_WEIGHTS, PROPOSALS, flag_fields,  # noqa: F401
                              knob)

__all__ = ["AuditSettings", "InvertSettings", "LOSSES", "MODE_WEIGHTS", "PROPOSALS", "flag_fields", "knob"]
