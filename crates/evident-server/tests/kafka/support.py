"""Shared helpers of the real-client conformance scripts (run by tests/kafka_clients.rs).

Each script takes the Kafka bootstrap address of a fresh evident server as its first argument,
prints diagnostics on stderr and one JSON object as its last stdout line, and exits non-zero
with a message when a check fails. Waits are bounded only so that a broken server fails the
script instead of hanging it; no result depends on how fast the machine is.
"""

import json
import signal
import sys
import time

# Longest any single wait may take (a hang guard, not a timing assumption).
PATIENCE = 60.0


def log(*args):
    """Prints a diagnostic line on stderr."""
    print(*args, file=sys.stderr, flush=True)


def check(condition, message):
    """Fails the script with `message` unless `condition` holds."""
    if not condition:
        fail(message)


def fail(message):
    """Fails the script with `message`."""
    print(f"CHECK FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def result(**values):
    """Prints the script's result, a JSON object, as the last stdout line."""
    print(json.dumps(values, sort_keys=True), flush=True)


def guard(seconds):
    """Kills the script (non-zero exit) if it runs longer than `seconds` in total."""

    def expired(_signum, _frame):
        print(f"CHECK FAILED: the script did not finish within {seconds} s", file=sys.stderr, flush=True)
        sys.exit(2)

    signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)


class Deadline:
    """A bounded wait: `while deadline.left(): ...`, failing with `what` when it runs out."""

    def __init__(self, what, seconds=PATIENCE):
        self.what = what
        self.end = time.monotonic() + seconds

    def left(self):
        """True while there is time left; fails the script once there is none."""
        if time.monotonic() > self.end:
            fail(f"timed out waiting for {self.what}")
        return True
