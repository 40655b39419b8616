"""The folders show the architecture: the engine (smpsim.engine) imports nothing of the
experiment layer (smpsim.experiment) or of the bundled workloads (smpsim.workloads)."""
import subprocess
import sys


def test_engine_imports_no_experiment_layer():
    code = ("import sys, smpsim, smpsim.engine.machine, smpsim.engine.check, smpsim.engine.debug\n"
            "m = smpsim.Machine(1, '4M'); k = m.cpu(0); k.slab_free(k.cache('malloc-64'),\n"
            "    k.slab_alloc(k.cache('malloc-64'))); m.check(); m.close()\n"
            "print(sorted(n for n in sys.modules if n.startswith(('smpsim.experiment',\n"
            "                                                      'smpsim.workloads'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
