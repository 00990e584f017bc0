"""Package data: PASSL's SwAV configs (configs/), the override profiles (configs/profiles/) and the
reference baselines PASSL published (baselines/passl-a100/)."""
