"""Worker processes: PianoWorker, an RQ worker that runs N piano-dist tasks at once."""
from .piano_worker import PianoWorker

__all__ = ["PianoWorker"]
