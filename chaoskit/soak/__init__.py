"""``chaoskit soak``: the continuous-monitoring gate (the 72-hour monitor as a YAML file).

    cfg = load_soak_config("experiments/soak/ledger-soak.yaml", overrides={"api": "http://..."})
    result = run_soak(cfg, duration=300, out_dir=Path("reports/soak"), ui=SoakConsole())
    result.ok, result.exit_code, result.alerts, result.report_path
"""

from chaoskit.soak.config import SEVERITIES, AlertRule, SoakConfig, SoakSpec, load_soak_config
from chaoskit.soak.run import SoakResult, default_out_dir, run_soak
from chaoskit.soak.ui import SoakConsole

__all__ = [
    "SEVERITIES",
    "AlertRule",
    "SoakConfig",
    "SoakConsole",
    "SoakResult",
    "SoakSpec",
    "default_out_dir",
    "load_soak_config",
    "run_soak",
]
