#!/usr/bin/env python3
"""A consumer that reads the token file as fast as it can until SIGTERM, then writes a summary.

    reader.py TOKEN_FILE SUMMARY_JSON

Every read must find a complete JSON document with a `ghs_` token, an `expires_at_unix` in
the future, an integer `generation`, and the file 0600. The summary counts reads and bad
reads (with the first few reasons), and which tokens and generations it saw, so the test can
tell "never saw a bad file" from "never read anything".
"""
import json
import os
import signal
import sys
import time

path, summary_path = sys.argv[1], sys.argv[2]
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)

reads = bad = 0
reasons = []
tokens = set()
generations = set()
started = time.time()
while not stop:
    reads += 1
    why = None
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode & 0o777
            doc = json.loads(f.read())
        token = doc.get("token")
        if not isinstance(token, str) or not token.startswith("ghs_"):
            why = "no ghs_ token"
        elif not isinstance(doc.get("expires_at_unix"), int) or doc["expires_at_unix"] <= time.time():
            why = "expired or no expires_at_unix"
        elif not isinstance(doc.get("generation"), int):
            why = "no generation"
        elif mode & 0o077:
            why = "mode %o" % mode
        else:
            tokens.add(token)
            generations.add(doc["generation"])
    except FileNotFoundError:
        why = "missing"
    except (ValueError, UnicodeDecodeError) as e:
        why = "not JSON: %s" % e
    except OSError as e:
        why = "unreadable: %s" % e
    if why:
        bad += 1
        if len(reasons) < 5:
            reasons.append("%.3fs: %s" % (time.time() - started, why))
    time.sleep(0.002)

tmp = summary_path + ".tmp"
with open(tmp, "w") as f:
    json.dump({"reads": reads, "bad": bad, "reasons": reasons, "tokens": len(tokens),
               "generations": sorted(generations)}, f)
os.rename(tmp, summary_path)
