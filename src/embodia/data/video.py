"""H.264 mp4 encoding with PyAV, written atomically (temp name, then rename)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np


def encode_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float, crf: int = 23,
               gop: int | None = None) -> int:
    """Encode RGB uint8 frames (pts = frame number at `fps`, no B-frames); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    n = 0
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = None
        for f in frames:
            f = np.ascontiguousarray(f, dtype=np.uint8)
            if stream is None:
                h, w = f.shape[:2]
                if h % 2 or w % 2:
                    raise ValueError(f"H.264 needs even frame sizes, got {w}x{h}")
                stream = container.add_stream("libx264", rate=int(round(fps)))
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast", "bf": "0"}
                if gop is not None:
                    stream.options |= {"g": str(gop)}
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = n
            n += 1
            for packet in stream.encode(vf):
                container.mux(packet)
        if stream is None:
            raise ValueError(f"no frames to write to {path}")
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return n
