"""smpsim/workloads/contend.py: every CPU allocates, frees, hands frees to the next CPU and
reclaims; everything is freed at the end and the machine checks clean."""

import pytest

import smpsim
from smpsim.workloads import contend

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("flags, magazine_size", [(0, 2), (smpsim.SLAB_CACHE_NOMAGAZINE, 4)])
def test_contend_hands_objects_on_reclaims_and_frees_everything(flags, magazine_size):
    with smpsim.Machine(3, "4M", magazine_size=magazine_size) as m:
        k = m.cpu(0)
        c = k.slab_cache_create("obj", 128, 0, flags)
        p = contend.prepare(k, {"cache": "obj", "ops": 300, "handoff": 0.5,
                                "reclaim_every": 25, "reclaim_all": 2}, 3)
        before = m.stats()["reclaim"]["calls"]
        out = m.run(contend.run, p, timeout=50)
        contend.finish(k, p)
        st = m.stats()
        assert st["caches"]["obj"]["allocated"] == 0
        assert sum(r["handed"] for r in out) == sum(r["remote_frees"] for r in out) > 0
        assert st["reclaim"]["calls"] - before == sum(r["reclaims"] for r in out) > 0
        assert all(r["allocs"] == r["frees"] - r["remote_frees"] + (
            sum(x["handed"] for x in out if x["cpu"] == r["cpu"])) for r in out)
        m.check()
        k.slab_cache_destroy(c)
        m.check()


def test_contend_needs_its_mailboxes():
    with smpsim.Machine(1, "4M") as m:
        with pytest.raises(ValueError, match="contend.run: no mailboxes"):
            contend.run(m.cpu(0), {})
