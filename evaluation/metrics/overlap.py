"""Verbatim overlap between generated and private text: word n-gram overlap and the longest
common substring with any private document.

The longest common substring of each query against a whole corpus is found with a suffix
automaton of the corpus (documents joined by a separator no text contains), built once in
O(corpus length), then one linear walk per query: no pairwise comparisons.
"""

from __future__ import annotations

import re

import numpy as np

_SEPARATOR = "\x00"  # never inside a document: text columns are read as strings, NUL is not in them


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def ngram_overlap(texts: list[str], reference: list[str], n: int = 8) -> float | None:
    """Share of the texts' word n-grams (each text's distinct ones, pooled) found in the reference
    corpus; None when the texts hold no n-gram at all (all shorter than n words)."""
    ref: set = set()
    for t in reference:
        ref |= word_ngrams(t, n)
    total = hits = 0
    for t in texts:
        grams = word_ngrams(t, n)
        total += len(grams)
        hits += sum(g in ref for g in grams)
    return hits / total if total else None


class SuffixAutomaton:
    """The suffix automaton of a string: every substring of it is a path from the root."""

    def __init__(self, text: str):
        self.next: list[dict[str, int]] = [{}]
        self.link = [-1]
        self.length = [0]
        last = 0
        for ch in text:
            cur = len(self.length)
            self.next.append({})
            self.length.append(self.length[last] + 1)
            self.link.append(0)
            p = last
            while p != -1 and ch not in self.next[p]:
                self.next[p][ch] = cur
                p = self.link[p]
            if p != -1:
                q = self.next[p][ch]
                if self.length[p] + 1 == self.length[q]:
                    self.link[cur] = q
                else:
                    clone = len(self.length)
                    self.next.append(dict(self.next[q]))
                    self.length.append(self.length[p] + 1)
                    self.link.append(self.link[q])
                    while p != -1 and self.next[p].get(ch) == q:
                        self.next[p][ch] = clone
                        p = self.link[p]
                    self.link[q] = self.link[cur] = clone
            last = cur

    def longest_common_substring(self, query: str) -> int:
        """Length of the longest substring of ``query`` that occurs in the automaton's text."""
        state = length = best = 0
        for ch in query:
            while state and ch not in self.next[state]:
                state = self.link[state]
                length = self.length[state]
            if ch in self.next[state]:
                state = self.next[state][ch]
                length += 1
            best = max(best, length)
        return best


def longest_common_substrings(texts: list[str], reference: list[str]) -> np.ndarray:
    """For each text, the length in characters of its longest substring found in any reference document."""
    automaton = SuffixAutomaton(_SEPARATOR.join(t.replace(_SEPARATOR, "") for t in reference))
    return np.array([automaton.longest_common_substring(t.replace(_SEPARATOR, "")) for t in texts], dtype=np.float64)
