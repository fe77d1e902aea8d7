"""The training child process: the only package that imports torch and the ML stack.

Started as `finetuneflow trainer probe|run …` (or `python -m finetuneflow.trainer …`); it
talks to its parent through `finetuneflow.core.child_protocol` only.
"""
