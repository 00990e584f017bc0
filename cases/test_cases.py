"""One test per case: `pytest cases/ -k swav_pt_1n8c_fp16o1` runs, parses and judges that case.

The cases are PASSL's four CI jobs plus any the project home's swavbench.toml adds (swavbench.plugin's
`case_params`). Each launches `python -m paddle.distributed.launch` (one launcher per node) with the case's
topology, compares rank 0's log against `baselines/<this machine's profile>/<case>.json` in the project
home and fails with the verdict table and what to do. Cases that cannot run on this build are skipped with
their reason.
"""

import pytest

from swavbench.plugin import case_params


@pytest.mark.parametrize("case_id", case_params())
def test_case(case_id, swavbench):
    swavbench.check(case_id)
