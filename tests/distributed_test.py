"""Multi-process extraction: two processes joined by jax.distributed write the same store as one."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
from absl.testing import absltest

from tests import extract_worker as worker
from tests import test_util  # noqa: F401
from tests.extract_test import run, tree_bytes

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DistributedTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def test_two_processes_write_the_same_store_as_one(self):
        # 2 processes x 4 CPU devices form the same 8-device mesh as this process.
        self.assertEqual(jax.device_count(), 8)
        root = self.tmp / "two"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.extract_worker",
                    "--mode=distributed",
                    f"--store={root}",
                    f"--process_id={i}",
                    "--num_processes=2",
                    f"--port={port}",
                    "--devices=4",
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for i in range(2)
        ]
        outputs = []
        for proc in procs:
            try:
                outputs.append(proc.communicate(timeout=300)[0].decode())
            except subprocess.TimeoutExpired:
                for p in procs:
                    p.kill()
                self.fail("distributed workers timed out")
        for proc, out in zip(procs, outputs):
            self.assertEqual(proc.returncode, 0, out[-4000:])
        self.assertIn("worker 0/2 devices=8 done", outputs[0])
        self.assertIn("worker 1/2 devices=8 done", outputs[1])

        module, params, spec = worker.make_model()
        one_root = self.tmp / "one"
        single = run(module, params, spec, worker.make_images(), one_root)
        self.assertEqual(tree_bytes(root), tree_bytes(one_root))
        self.assertTrue(single.entry_dir.exists())


if __name__ == "__main__":
    absltest.main()
