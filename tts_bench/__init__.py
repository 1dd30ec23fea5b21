"""tts-bench: test-time-scaling benchmarks, from a Hydra config to curves.

Data flow (one package per stage):
    conf/ -> config -> dataset (tasks/) -> plan -> runner + engines -> store
          -> grading -> metrics -> report;  cli/ wires them to `tts-bench`.
"""

__version__ = "0.1.0"
