#!/usr/bin/env python3
"""Read back the TensorBoard event files written by `flywheel train --tensorboard DIR`.

Uses the `tensorboard` package's own reader (EventAccumulator), so a file it cannot parse, a bad
CRC or a wrong protobuf field fails here. Prints every scalar series: run, tag, step, value.

    python3 -m venv /tmp/tbenv && /tmp/tbenv/bin/pip install tensorboard==2.21.0
    /tmp/tbenv/bin/python tools/read_tensorboard.py DIR

Exit status 1 when a run or an expected tag is missing or a record fails its CRC check.
"""

import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New

EXPECTED = {
    "train": ["epoch_loss", "epoch_accuracy", "epoch_learning_rate"],
    "validation": ["epoch_loss", "epoch_accuracy"],
}


def strict_records(path: str) -> int:
    """Reads every record with the package's TFRecord reader, which checks both masked CRC32Cs
    and raises on a bad one (EventAccumulator would skip it); parses each as an Event."""
    reader = PyRecordReader_New(path)
    n = 0
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            return n
        event_pb2.Event.FromString(reader.record())
        n += 1


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    logdir = sys.argv[1]
    ok = True
    for run, tags in EXPECTED.items():
        path = os.path.join(logdir, run)
        if not os.path.isdir(path):
            print(f"missing run directory {path}")
            ok = False
            continue
        for name in sorted(os.listdir(path)):
            if "tfevents" in name:
                try:
                    n = strict_records(os.path.join(path, name))
                    print(f"[{run}] {name}: {n} records, all CRCs valid")
                except errors.DataLossError as e:
                    print(f"[{run}] {name}: {e}")
                    ok = False
        acc = EventAccumulator(path, size_guidance={"scalars": 0})
        acc.Reload()
        found = acc.Tags()["scalars"]
        print(f"[{run}] file_version={acc.file_version!r} scalar tags={sorted(found)}")
        for tag in tags:
            if tag not in found:
                print(f"  missing tag {tag}")
                ok = False
                continue
            events = acc.Scalars(tag)
            values = " ".join(f"{e.step}:{e.value:.6g}" for e in events)
            print(f"  {tag:<22} {len(events)} steps  {values}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
