"""smpsim/workloads/racy.py: the shared word's increments, the assertion of finish(), and a
failing finish() reported by a plain run as a failed check, not a traceback."""

import pytest

import smpsim
from smpsim.experiment import runner
from smpsim import workloads
from smpsim.workloads import racy

pytestmark = pytest.mark.timeout(60)


def test_one_cpu_loses_nothing_and_finish_passes():
    with smpsim.Machine(1, "4M") as m:
        k = m.cpu(0)
        p = racy.prepare(k, {"ops": 50}, 1)
        assert m.run(racy.run, p)[0]["ops"] == 50
        assert k.atomic_load(p["_block"][0]) == 50
        racy.finish(k, p)
        m.check()


def test_finish_asserts_the_sum_and_the_runner_reports_it():
    with smpsim.Machine(2, "4M") as m:
        k = m.cpu(0)
        p = racy.prepare(k, {"ops": 5, "atomic": True}, 2)
        m.run(racy.run, p)
        k.atomic_store(p["_block"][0], 9)                  # one update lost
        with pytest.raises(AssertionError, match=r"racy: the shared word holds 9, not 10 "
                                                 r"\(2 CPUs x 5 increments\): 1 lost"):
            racy.finish(k, p)
        m.check()                                           # finish freed the word first
        p = racy.prepare(k, {"ops": 5}, 2)
        got = runner._clean_up(m, k, workloads.find("racy"), p, [], None)
        assert got == ["the workload's finish() found: racy: the shared word holds 0, not 10 "
                       "(2 CPUs x 5 increments): 10 lost"]
