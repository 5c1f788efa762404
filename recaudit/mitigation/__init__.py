"""Mitigation rerankers (METRICS.md section 7): lists in, lists out, plus trade-off sweeps.

Each module holds one reranker family as vectorised numpy functions over many lists at once.
Conventions shared by every reranker function:

* a batch of ``L`` candidate lists is a 2-D array ``(L, n)``, position 0 the best-ranked
  candidate; lists shorter than ``n`` are padded and ``valid`` (bool ``(L, n)``, default all
  true) marks the real candidates;
* the output is an int array ``(L, k)`` of indices into the candidate axis, ``-1`` where a
  list has fewer than ``k`` valid candidates;
* bad parameters raise ``ValueError`` with a one-line message (the registry turns it into a
  config error, exit 2).
"""
