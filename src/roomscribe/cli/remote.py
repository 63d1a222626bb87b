"""`roomscribe transcribe FILE --server URL`: a file transcribed by a running server, with
its progress shown as a bar."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..session.formats import render, segment_captions
from .progress import ProgressBar


def transcribe_remote(args) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"roomscribe: error: {path}: no such file", file=sys.stderr)
        return 2
    query = {"progress": "true"}
    if args.language:
        query["language"] = args.language
    if args.prompt:
        query["prompt"] = args.prompt
    url = f"{args.server.rstrip('/')}/transcribe?{urllib.parse.urlencode(query)}"
    headers = {"Content-Type": "application/octet-stream", "Accept": "application/x-ndjson"}
    if os.environ.get("ROOMSCRIBE_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['ROOMSCRIBE_API_KEY']}"
    request = urllib.request.Request(url, data=path.read_bytes(), headers=headers, method="POST")
    bar = ProgressBar(enabled=sys.stderr.isatty())
    result = None
    try:
        with urllib.request.urlopen(request) as response:
            for raw in response:
                line = json.loads(raw)
                if line["type"] == "progress":
                    bar.update(line["done"], line["total"])
                elif line["type"] == "error":
                    bar.close()
                    print(f"roomscribe: error: {line['error']['message']}", file=sys.stderr)
                    return 1
                else:
                    result = line
    except urllib.error.HTTPError as exc:
        bar.close()
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"{exc.code} {exc.reason}"
        print(f"roomscribe: error: the server said: {message}", file=sys.stderr)
        return 2 if exc.code < 500 else 1
    except (urllib.error.URLError, OSError) as exc:
        bar.close()
        print(f"roomscribe: error: cannot reach {args.server}: {exc}", file=sys.stderr)
        return 1
    bar.close()
    if result is None:
        print("roomscribe: error: the server closed the connection before the result", file=sys.stderr)
        return 1
    result.pop("type", None)
    sys.stdout.write(render(segment_captions(result["segments"]), args.format, result))
    print(
        f"roomscribe: {result['duration']:.1f} s of audio in {result['processing_time']:.1f} s on "
        f"{args.server}, language {result['language']}",
        file=sys.stderr,
    )
    return 0
