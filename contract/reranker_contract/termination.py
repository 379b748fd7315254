"""What a server says when it stops for good, which the operator reads back from the pod.

The server writes its last line to the container's termination log; the operator reports a crash
loop whose line carries ``MODEL_LOAD_FAILED`` as ``ModelLoadFailed``, any other as ``ServerCrashLoop``.
"""

from __future__ import annotations

MODEL_LOAD_FAILED = "the model failed to load"
TERMINATION_LOG = "/dev/termination-log"  # the kubelet's default terminationMessagePath
