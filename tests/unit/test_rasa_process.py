"""jmt.rasa_process: Rasa's command line, with TensorFlow loaded without JAX."""

from __future__ import annotations

import subprocess
import sys

from jmt import launch


def test_rasa_runs_through_the_wrapper_and_tensorflow_loads_without_jax():
    script = (
        "import sys, runpy\n"
        "sys.argv = ['rasa', '--version']\n"
        "runpy.run_module('jmt.rasa_process', run_name='__main__')\n"
        "import tensorflow, rasa.utils.tensorflow.models\n"
        "assert sys.modules['jax'] is None, 'JAX was imported'\n"
        "print('tensorflow', tensorflow.__version__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Rasa Version      :         3.6.21" in done.stdout  # Rasa's own CLI answered
    assert "tensorflow 2." in done.stdout


def test_every_rasa_process_the_launcher_starts_goes_through_the_wrapper(tmp_path):
    command = launch.rasa_server(5005, token="t", model=tmp_path / "m.tar.gz")
    assert command[:4] == [sys.executable, "-m", "jmt.rasa_process", "run"]
