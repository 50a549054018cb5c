"""Entry point for tests/test_ddp_contract.py: the selfsup CLI with the test-only methods
registered (Lightning's DDP launcher re-runs this script in each process).  With
CRASH_AT_EPOCH=E the run fails at the start of epoch E."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import toy_methods  # noqa: E402
from selfsup.cli import main  # noqa: E402

toy_methods.register(lambda mapping, key, value: mapping.__setitem__(key, value))
crash_epoch = int(os.environ.get("CRASH_AT_EPOCH", "-1"))
recorder_start = toy_methods.IndexRecorder.on_epoch_start


def crash_or_start(self, epoch, embed):
    if epoch == crash_epoch:
        raise SystemExit(f"simulated crash at epoch {epoch}")
    return recorder_start(self, epoch, embed)


toy_methods.IndexRecorder.on_epoch_start = crash_or_start
sys.exit(main(sys.argv[1:]))
