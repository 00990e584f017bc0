"""One test per PASSL CI case: `pytest cases/ -k swav_pt_1n8c_fp16o1` runs, parses and judges that case.

Each case launches `python -m paddle.distributed.launch` (one launcher per node) with the case's
topology, compares rank 0's log against `baselines/<this machine's profile>/<case>.json` and fails with
the verdict table and what to do. Cases that cannot run on this build are skipped with their reason.
"""

import pytest

from swavbench.harness.cases import CASES


def _param(case):
    marks = [pytest.mark.slow] + ([pytest.mark.multinode] if case.multinode else [])
    return pytest.param(case.id, id=case.id, marks=marks)


@pytest.mark.parametrize("case_id", [_param(c) for c in CASES])
def test_case(case_id, swavbench):
    swavbench.check(case_id)
