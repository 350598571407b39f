#!/usr/bin/env python3
"""Runs the compatibility matrix (tests/registry/compat_cases.json) against a schema registry
speaking Confluent's REST API, and reports where the registry agrees with the expected outcomes.

  scripts/compat-cases.py <registry base url> [--known FILE] [--only PREFIX] [--verbose]

The base URL is the Confluent-compatible root: http://127.0.0.1:8081 for Confluent or evident,
http://127.0.0.1:8080/apis/ccompat/v7 for Apicurio.

For every case and each of the seven levels, a fresh subject is made: its level set to NONE,
the case's history registered oldest first, its level set to the one under test; then the
registry is asked (POST /compatibility/subjects/{s}/versions/latest?verbose=true, which compares
with the latest version only, in the level's directions) and the candidate is registered
(POST /subjects/{s}/versions: 409 means refused; registration covers every version a
transitive level names). Both answers are compared with their expectations.

--known FILE names a JSON file of pinned departures ({"departures": [{"case", "level",
"registry_says", "check_says", "reason"}]}: what the registry answers to registration and to the
check): a disagreement listed there, with those answers, is counted apart and does not fail the
run; a listed departure that no longer happens is reported (and fails: the pin is stale).
Exits non-zero on any unexpected disagreement or error.
"""
import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEVELS = ["NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"]
CT = "application/vnd.schemaregistry.v1+json"


def expected(case, level):
    n = len(case["history"])
    idx = range(n) if level.endswith("TRANSITIVE") else range(n - 1, n)
    back = level.startswith("BACKWARD") or level.startswith("FULL")
    fwd = level.startswith("FORWARD") or level.startswith("FULL")
    return all((not back or case["backward"][i]) and (not fwd or case["forward"][i]) for i in idx)


def expected_latest(case, level):
    """What the check against the latest version alone answers (`/versions/latest` compares
    with that one version, whatever the level's transitivity)."""
    return expected(dict(case, history=case["history"][-1:], backward=case["backward"][-1:],
                         forward=case["forward"][-1:]), level)


def text(case, schema):
    """Protobuf schemas are .proto text; Avro and JSON schemas are JSON (an Avro primitive is
    a JSON string, quoted)."""
    return schema if case["format"] == "PROTOBUF" else json.dumps(schema)


class Registry:
    def __init__(self, base):
        self.base = base.rstrip("/")

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": CT, "Accept": CT})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def payload(self, case, schema):
        body = {"schema": text(case, schema)}
        if case["format"] != "AVRO":
            body["schemaType"] = case["format"]
        return body

    def set_level(self, subject, level):
        status, body = self.call("PUT", f"/config/{subject}", {"compatibility": level})
        if status != 200:
            raise RuntimeError(f"PUT /config/{subject} {level}: {status} {body}")

    def run(self, case, level, subject):
        """(compatibility endpoint's answer, registration's answer), each True/False."""
        self.set_level(subject, "NONE")
        for schema in case["history"]:
            status, body = self.call("POST", f"/subjects/{subject}/versions", self.payload(case, schema))
            if status != 200:
                raise RuntimeError(f"registering history of {case['name']}: {status} {body}")
        self.set_level(subject, level)
        status, body = self.call("POST", f"/compatibility/subjects/{subject}/versions/latest?verbose=true",
                                 self.payload(case, case["candidate"]))
        if status != 200 or not isinstance(body, dict) or "is_compatible" not in body:
            raise RuntimeError(f"compatibility check of {case['name']} at {level}: {status} {body}")
        said = bool(body["is_compatible"])
        messages = body.get("messages") or []
        status, reg = self.call("POST", f"/subjects/{subject}/versions", self.payload(case, case["candidate"]))
        if status == 200:
            registered = True
        elif status == 409:
            registered = False
        else:
            raise RuntimeError(f"registering the candidate of {case['name']} at {level}: {status} {reg}")
        return said, registered, messages


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--known", help="JSON file of pinned departures")
    ap.add_argument("--only", default="", help="run only cases whose name starts with this")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    cases = json.load(open(os.path.join(ROOT, "tests/registry/compat_cases.json")))["cases"]
    known = {}
    if args.known:
        for d in json.load(open(args.known))["departures"]:
            known[(d["case"], d["level"])] = d
    reg = Registry(args.url)
    run_id = f"{int(time.time())}-{os.getpid()}"
    agree = disagree = pinned = errors = 0
    unexpected, seen_pins = [], set()
    for ci, case in enumerate(cases):
        if not case["name"].startswith(args.only):
            continue
        for level in LEVELS:
            subject = f"compat-{run_id}-{ci}-{level.lower()}"
            want = expected(case, level)
            try:
                said, registered, messages = reg.run(case, level, subject)
            except Exception as e:  # noqa: BLE001 - every failure is reported and counted
                errors += 1
                unexpected.append(f"ERROR {case['name']} at {level}: {e}")
                continue
            want_said = expected_latest(case, level)
            key = (case["name"], level)
            if said == want_said and registered == want:
                agree += 1
                if key in known:
                    unexpected.append(f"STALE PIN {case['name']} at {level}: the registry now agrees")
                continue
            pin = known.get(key)
            if pin and pin["registry_says"] == registered and pin.get("check_says", registered) == said:
                pinned += 1
                seen_pins.add(key)
                if args.verbose:
                    print(f"pinned   {case['name']} at {level}: {known[key]['reason']}")
                continue
            disagree += 1
            unexpected.append(
                f"DISAGREE {case['name']} at {level}: expected registration {'accepted' if want else 'refused'}"
                f" and check {want_said}; registry {'accepted' if registered else 'refused'}, check {said}"
                + (f" ({'; '.join(map(str, messages))[:400]})" if messages else "")
                + f"\n    rule: {case['why']}")
    for line in unexpected:
        print(line)
    print(f"compat-cases against {args.url}: {agree} agree, {pinned} pinned departures, "
          f"{disagree} unexpected disagreements, {errors} errors")
    sys.exit(1 if unexpected else 0)


if __name__ == "__main__":
    main()
